"""train.budget_flops: the number of steps a compute budget buys, by the task's exact count or 6N."""
import dataclasses
import json

import pytest

from llmjax.config import ConfigError, TrainConfig
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.models.registry import config_from_dict
from llmjax.tasks import registry as tasks
from llmjax.training.budget import with_budget
from tests.helpers import tiny_config, write_corpus


def test_no_budget_keeps_num_steps():
    t = TrainConfig(num_steps=123)
    assert with_budget(t, 1e9, 10, 100) is t


def test_exact_and_6n_rules():
    t = TrainConfig(budget_flops=1e12)
    assert with_budget(t, flops_per_step=3e9, n_params=10, tokens_per_step=100).num_steps == 333
    t6 = TrainConfig(budget_flops=1e12, budget_rule="6N")
    assert with_budget(t6, flops_per_step=3e9, n_params=1_000_000, tokens_per_step=1000).num_steps == 167


def test_a_budget_too_small_for_one_step_is_one_line():
    with pytest.raises(ConfigError, match=r"budget_flops=1e\+06 buys 0.00 steps.*raise the budget"):
        with_budget(TrainConfig(budget_flops=1e6), 1e9, 10, 100)


def test_bad_rule_is_refused():
    with pytest.raises(ConfigError, match="train.budget_rule"):
        TrainConfig(budget_rule="6ND").validate()


def test_a_run_trains_for_its_budget(tmp_path):
    """The loop resolves the steps from the run's own model (vocabulary known only after the
    data): the run trains for budget / its FLOPs per step, and a wider model at the same budget
    gets fewer (with_budget on the same finalized config, one training run instead of two)."""
    spec = write_corpus(tmp_path / "corpus", num_files=4)
    c = tiny_config(spec, model__d_model=32)
    task = tasks.build(resolve(c))
    c.train.budget_flops = 6e8
    out = train_and_evaluate(resolve(c), str(tmp_path / "run"), log=lambda _: None)
    model_cfg = config_from_dict(json.loads((tmp_path / "run" / "model.json").read_text()))
    assert out["step"] == round(6e8 / task.flops_per_step(model_cfg))
    wider = dataclasses.replace(model_cfg, d_model=64)
    t = resolve(c).train
    assert 0 < with_budget(t, task.flops_per_step(wider), 0, 0).num_steps < out["step"]
