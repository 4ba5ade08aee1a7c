"""Every shipped config file resolves (no stale key survives a config change)."""
import glob
import importlib.util
import os

import pytest

from llmjax import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
def test_config_file_resolves(path):
    spec = importlib.util.spec_from_file_location("config_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    if cfg.data.dataset.startswith("text:"):  # shakespeare_char's text is not shipped
        cfg.data.dataset = "stdlib"
    cfg.init_from = ""  # fine-tuning configs name a pretraining run's workdir, made by another config
    run = experiment.resolve(cfg, num_devices=1)
    assert run.model.name in experiment.models.names()
    assert run.task.name in experiment.tasks.names()
