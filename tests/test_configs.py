"""Every shipped config file resolves (no stale key survives a config change)."""
import glob
import importlib.util
import os

import pytest

from llmjax import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TAKES_A_CHECKPOINT = ("hf.py",)  # resolved on a converted tiny GPT-2 in tests/test_convert.py


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                                        if os.path.basename(p) not in TAKES_A_CHECKPOINT))
def test_config_file_resolves(path):
    spec = importlib.util.spec_from_file_location("config_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    if "features" in cfg:  # a classic baseline's (python -m llmjax.baseline)
        from llmjax.classic.config import resolve
        assert resolve(cfg).task.name in ("classify", "tag")
        return
    if cfg.data.dataset.startswith("text:"):  # shakespeare_char's text is not shipped
        cfg.data.dataset = "stdlib"
    cfg.init_from = ""  # fine-tuning configs name a pretraining run's workdir, made by another config
    run = experiment.resolve(cfg, num_devices=1)
    assert run.model.name in experiment.models.names()
    assert run.task.name in experiment.tasks.names()


@pytest.mark.parametrize("name", ["bert_sst2", "bert_imdb"])
def test_tfds_finetuning_configs_train_on_mock_data(name, mocked_tfds, tmp_path):
    """The shipped SST-2 / IMDB configs, as they are but for size, end to end on tfds's mock data
    (nothing can be downloaded here): data, encoding, training, eval metrics, results.json."""
    import json

    spec = importlib.util.spec_from_file_location("config_under_test", os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    cfg.init_from = ""
    cfg.data.tfds_data_dir = mocked_tfds
    cfg.data.tokenizer = "byte"  # 9 mock texts are too few to train sentencepiece
    cfg.model.num_layers, cfg.model.d_model, cfg.model.mlp_dim = 1, 32, 64
    cfg.train.num_steps, cfg.train.batch_size, cfg.train.eval_steps = 2, 8, 0
    cfg.train.progress = False
    out = experiment.train_and_evaluate(experiment.resolve(cfg, num_devices=8), str(tmp_path), log=lambda _: None)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["examples"] == 9 and 0.0 <= out["accuracy"] <= 1.0
    assert sorted(results["recall"]) == (["neg", "pos"] if name == "bert_imdb" else ["negative", "positive"])


def test_wmt14_base_trains_on_mock_data(mocked_tfds, tmp_path):
    """configs/wmt14_base.py, as it is but for size, end to end on tfds's mock wmt14_translate/de-en
    (nothing can be downloaded here): the shared sentencepiece vocabulary trained on both sides,
    packed pairs, the rsqrt schedule, eval loss and beam-search BLEU on the test split."""
    import json

    spec = importlib.util.spec_from_file_location("config_under_test", os.path.join(ROOT, "configs", "wmt14_base.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    cfg.data.tfds_data_dir = mocked_tfds
    cfg.data.vocab_size = 300  # the least sentencepiece takes (byte fallback)
    cfg.model.num_layers, cfg.model.num_decoder_layers = 1, 1
    cfg.model.d_model, cfg.model.num_heads, cfg.model.mlp_dim = 32, 4, 64
    cfg.data.seq_len, cfg.task.target_len, cfg.task.decode_examples = 32, 16, 3
    cfg.train.num_steps, cfg.train.batch_size, cfg.train.eval_every, cfg.train.eval_steps = 2, 8, 2, 0
    cfg.optim.warmup_steps = 1
    cfg.train.dtype, cfg.train.progress, cfg.checkpoint.every_steps = "float32", False, 2
    run = experiment.resolve(cfg, num_devices=8)
    assert (run.task.eval_split, run.optim.schedule, run.task.beam_size) == ("test", "rsqrt", 4)
    out = experiment.train_and_evaluate(run, str(tmp_path), log=lambda _: None)
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0.0 <= out["bleu"] <= 100.0 and results["bleu"] == out["bleu"]
    assert out["loss"] > 0.0
