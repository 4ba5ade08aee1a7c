"""One baseline run: fit the task's baseline, then record it in the workdir as a training run
records itself: results.json (llmjax.training.metrics.write_results: the eval metrics, the
task's baselines and "step", here the L-BFGS iterations) and metrics.jsonl (a train row: the
fit's loss, accuracy, feature count and seconds; an eval row: the eval metrics)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from llmjax.classic.config import BaselineConfig
from llmjax.training.metrics import MetricsWriter, write_results


def run_baseline(run: BaselineConfig, workdir: str, log: Callable[[str], None] = print
                 ) -> dict[str, Any]:
    """Fit, score and record the baseline run names; its results.json as a dict."""
    t0 = time.time()
    if run.task.name == "tag":
        from llmjax.classic import tag as fitter
    else:
        from llmjax.classic import classify as fitter
    outcome = fitter.fit(run, workdir, log)
    os.makedirs(workdir, exist_ok=True)
    writer = MetricsWriter(workdir, resume_step=0, tensorboard=False)  # an earlier fit's rows move aside
    writer.write({"step": outcome.step, "split": "train", **outcome.train})
    writer.write({"step": outcome.step, "split": "eval", **outcome.metrics})
    writer.close()
    results = outcome.results()
    write_results(workdir, results)
    log(f"done in {time.time() - t0:.1f}s: {outcome.line}")
    return results
