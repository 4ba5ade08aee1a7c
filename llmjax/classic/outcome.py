"""What a baseline fit hands the entry point: the eval metrics and baselines in the shape the
neural task writes to results.json, the fit's own facts, and its one-line summary."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Outcome:
    metrics: dict[str, Any]  # the eval metrics, keyed as the neural task's
    baselines: dict[str, Any]  # the task's baselines (majority class, ...)
    step: int  # the regression's L-BFGS iterations (results.json's "step")
    train: dict[str, Any]  # the train split's loss and accuracy, the features, the fit's seconds
    line: str  # the eval's summary line
    params: int  # the regression's weights and biases (results.json's "params", as a network's)

    def results(self) -> dict[str, Any]:
        """results.json as the training loop writes it: eval metrics, baselines, step, params."""
        return {**self.metrics, **self.baselines, "step": self.step, "params": self.params}
