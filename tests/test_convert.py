"""llmjax.convert and init_from a Hugging Face directory: a tiny GPT-2 built here with
transformers goes into an llmjax workdir, samples as transformers generates, trains on through
the normal runner, and comes back out to transformers with the trained run's logits."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

transformers = pytest.importorskip("transformers", reason="the HF side is built with transformers")
torch = pytest.importorskip("torch", reason="transformers' GPT-2 runs on torch")

from llmjax import convert, sample, saved_run  # noqa: E402
from llmjax.config import ConfigError  # noqa: E402
from llmjax.experiment import resolve, train_and_evaluate  # noqa: E402
from llmjax.generation import generate  # noqa: E402
from llmjax.training.checkpoint import CheckpointError  # noqa: E402
from tests.helpers import tiny_config, truncate_checkpoint, write_corpus  # noqa: E402
from tests.interop.parity import perturb  # noqa: E402

PROMPT = "def parse(self, text):"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny GPT-2 (2 layers, 64 wide, its own 320-token byte-level BPE, 333 embedding rows) saved
    as transformers does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out = tmp_path_factory.mktemp("hf_gpt2")
    std = sysconfig.get_paths()["stdlib"]
    texts = [open(os.path.join(std, f), encoding="utf-8").read() for f in ("textwrap.py", "shlex.py")]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = transformers.GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                         bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.save_pretrained(out)
    # 13 embedding rows past the tokenizer's ids, as padded checkpoints have (GPT-NeoX, Llama 3):
    # the run's vocabulary must be the checkpoint's, not the tokenizer's.
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=len(tok) + 13,
                                  eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    perturb(model)
    model.save_pretrained(out)
    return out


def _hf_config(path, corpus, steps):
    """configs/hf.py for the checkpoint at path, shrunk to a few steps on a small corpus."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("hf_config", os.path.join(root, "configs", "hf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(str(path))
    c.data.dataset, c.data.seq_len, c.data.val_fraction = corpus, 32, 0.2
    c.train.num_steps, c.train.batch_size, c.train.eval_every, c.train.eval_steps = steps, 8, steps, 2
    c.train.progress, c.train.num_samples, c.checkpoint.every_steps = False, 0, steps
    return c


def _config(corpus, **overrides):
    """The tiny GPT-2's model keys, its tokenizer (hf), a few steps of LM training."""
    c = tiny_config(corpus, **overrides)
    c.model.update(num_layers=2, d_model=64, num_heads=4, mlp_dim=256, max_len=64, norm_epsilon=1e-5,
                   vocab_multiple=1, use_bias=True, tie_embeddings=True, position="learned", ffn="gelu")
    c.data.tokenizer = "hf"
    return c


def test_import_samples_trains_and_exports(hf_dir, tmp_path):
    run = tmp_path / "run"
    convert.import_hf(str(hf_dir), str(run), log=lambda _: None)
    assert (run / "model.json").exists() and (run / "pretrained" / "0").is_dir()

    # Sampling straight from the converted workdir: transformers' greedy tokens.
    cfg, tok = sample.model_config(str(run)), saved_run.load_tokenizer(str(run))
    loaded = sample.load_run(cfg, tok, saved_run.checkpoint_path(str(run), None))
    ids = tok.encode(PROMPT)
    ours = generate(loaded.model, loaded.params, [ids], max_new_tokens=10, rng=jax.random.key(0),
                    temperature=0.0)[0]
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        theirs = hf_model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                                   attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                   pad_token_id=tok.eos_id, eos_token_id=None)[0, len(ids):]
    np.testing.assert_array_equal(np.asarray(ours), theirs.numpy())

    # Training on through the normal runner starts from the converted weights (step 0's eval
    # loss is the HF model's), then exports back with the trained logits.
    corpus = write_corpus(tmp_path / "corpus", num_files=4)
    logs = []
    train_and_evaluate(resolve(_hf_config(run, corpus, 4), num_devices=8), str(run), log=logs.append)
    assert any("restored" in m and "100.0% of parameters" in m for m in logs), logs
    out = tmp_path / "exported"
    convert.export_hf(str(run), str(out), log=lambda _: None)
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    back = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    trained = sample.load_run(cfg, tok, saved_run.checkpoint_path(str(run), None))
    x = np.asarray([ids], np.int32)
    want = np.asarray(trained.model.apply({"params": trained.params}, x))
    with torch.no_grad():
        got = back(torch.tensor(x, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert not np.allclose(got, hf_model(torch.tensor(x, dtype=torch.long)).logits.detach().numpy(), atol=1e-3)
    # The exported directory carries the tokenizer, with the same ids.
    assert transformers.AutoTokenizer.from_pretrained(out)(PROMPT, add_special_tokens=False)["input_ids"] == ids


def test_init_from_a_hugging_face_directory(hf_dir, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", num_files=4)
    logs = []
    cfg = _hf_config(hf_dir, corpus, 2)
    assert cfg.init_from == str(hf_dir)
    train_and_evaluate(resolve(cfg, num_devices=8), str(tmp_path / "run"), log=logs.append)
    assert any(m.startswith("init_from") and "100.0% of parameters" in m for m in logs), logs
    assert json.loads((tmp_path / "run" / "tokenizer" / "tokenizer.json").read_text())["kind"] == "hf"


@pytest.mark.parametrize("flag", ["--help", "-h", "--helpfull"])
def test_help_prints_the_usage_and_exits_0(flag):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "llmjax.convert", flag], cwd=root, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert p.returncode == 0 and not p.stderr, p.stderr
    assert "--from_hf" in p.stdout and "--to_hf" in p.stdout and "python -m llmjax.convert" in p.stdout


def _run_with_steps(hf_dir, tmp_path, steps):
    """A converted workdir whose checkpoints/ holds its parameters at these steps."""
    run = tmp_path / "run"
    convert.import_hf(str(hf_dir), str(run), log=lambda _: None)
    for step in steps:
        shutil.copytree(run / "pretrained" / "0", run / "checkpoints" / str(step))
    return run


def test_to_hf_skips_a_corrupt_checkpoint_with_one_line_unless_asked_for(hf_dir, tmp_path):
    run = _run_with_steps(hf_dir, tmp_path, (1, 2))
    truncate_checkpoint(run / "checkpoints" / "2")
    logs = []
    convert.export_hf(str(run), str(tmp_path / "out"), log=logs.append)
    assert len(logs) == 2 and "checkpoint step 2" in logs[0] and "corrupt" in logs[0], logs
    assert logs[1].startswith(f"exported {run / 'checkpoints' / '1'} to "), logs
    with pytest.raises(CheckpointError) as e:
        convert.export_hf(str(run), str(tmp_path / "out2"), step=2, log=logs.append)
    assert "\n" not in str(e.value) and "checkpoint step 2" in str(e.value) and "--step" in str(e.value)


def test_to_hf_while_the_run_trains_reads_the_checkpoint_that_replaced_the_newest(hf_dir, tmp_path, monkeypatch):
    """Between the listing and the read, the run training there saves step 3 and rotates 1 and 2
    out (keep=1): the export reads step 3 instead of failing on the vanished step 2."""
    run = _run_with_steps(hf_dir, tmp_path, (1, 2))
    ck = run / "checkpoints"
    real_init = ocp.CheckpointManager.__init__

    def open_while_training(self, directory, *args, **kwargs):
        if not (ck / "3").exists():
            shutil.copytree(ck / "2", ck / "3")
            shutil.rmtree(ck / "1")
            shutil.rmtree(ck / "2")
        real_init(self, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "__init__", open_while_training)
    logs = []
    convert.export_hf(str(run), str(tmp_path / "out"), log=logs.append)
    assert len(logs) == 1 and logs[0].startswith(f"exported {ck / '3'} to "), logs


def test_one_line_errors(hf_dir, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", num_files=4)
    cfg = _config(corpus)
    cfg.init_from = str(hf_dir)
    cfg.model.vocab_multiple = 64
    with pytest.raises(ConfigError, match=r"config.model.vocab_multiple=64 .* trained with 1"):
        resolve(cfg, num_devices=8)
    run = tmp_path / "run"
    convert.import_hf(str(hf_dir), str(run), log=lambda _: None)
    with pytest.raises(ConfigError, match="already holds .*new workdir"):
        convert.import_hf(str(hf_dir), str(run), log=lambda _: None)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        convert.export_hf(str(run), str(tmp_path / "full"), log=lambda _: None)
    with pytest.raises(ConfigError, match="config.json"):
        convert.import_hf(str(tmp_path / "full"), str(tmp_path / "run2"), log=lambda _: None)
    from llmjax.training.workdir import WorkdirLock

    (tmp_path / "busy").mkdir()
    held = WorkdirLock(str(tmp_path / "busy"))
    held.acquire()
    try:
        with pytest.raises(ConfigError, match="another llmjax process .* is training"):
            convert.import_hf(str(hf_dir), str(tmp_path / "busy"), log=lambda _: None)
    finally:
        held.release()
    assert not (tmp_path / "busy" / "pretrained").exists()


@pytest.fixture(scope="module")
def hf_bert_dir(tmp_path_factory):
    """A tiny BertForMaskedLM with its own lowercase WordPiece vocab.txt, saved as transformers does."""
    from tokenizers.implementations import BertWordPieceTokenizer

    out = tmp_path_factory.mktemp("hf_bert")
    std = sysconfig.get_paths()["stdlib"]
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator([open(os.path.join(std, "textwrap.py"), encoding="utf-8").read()],
                           vocab_size=300, show_progress=False)
    wp.save_model(str(out))
    tok = transformers.BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    tok.save_pretrained(out)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=len(tok), max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(cfg).save_pretrained(out)
    return out


def test_finetune_a_classifier_from_a_hugging_face_bert(hf_bert_dir, tmp_path):
    """init_from a BertForMaskedLM directory: the encoder is restored exactly (lr 0), the
    classifier (and the pooler, which BertForMaskedLM lacks) start fresh, the tokenizer is its own."""
    cfg = tiny_config("stdlib", model="bert", task="classify", train__num_steps=1, data__seq_len=64,
                      task__max_examples=64, train__eval_steps=2, optim__lr=0.0)
    cfg.model.update(num_layers=2, d_model=64, num_heads=4, mlp_dim=128, max_len=64, vocab_multiple=1,
                     ffn="gelu_exact", norm_epsilon=1e-12)
    cfg.data.tokenizer = "hf"
    cfg.init_from = str(hf_bert_dir)
    logs = []
    train_and_evaluate(resolve(cfg, num_devices=8), str(tmp_path / "ft"), log=logs.append)
    line = next(m for m in logs if m.startswith("init_from") and "restored" in m)
    restored, new = line.split("new:")
    assert "classifier" in new and "pooler" in new  # BertForMaskedLM has no pooler
    assert "not used" in line and "mlm_head" in line.split("not used:")[1]
    cfg_run = saved_run.model_config(str(tmp_path / "ft"))
    assert cfg_run.num_labels > 1
    params = saved_run.load_params(_shapes(tmp_path / "ft"), saved_run.checkpoint_path(str(tmp_path / "ft"), None))
    hf_model = transformers.BertForMaskedLM.from_pretrained(hf_bert_dir)
    np.testing.assert_array_equal(np.asarray(params["embeddings"]["token"]["embedding"]),
                                  hf_model.bert.embeddings.word_embeddings.weight.detach().numpy())


def _shapes(workdir):
    """The saved parameter tree's shapes (from the checkpoint's metadata)."""
    import orbax.checkpoint as ocp

    from llmjax.training import warm_start

    directory, step = warm_start.locate(str(workdir))
    with ocp.CheckpointManager(directory, item_handlers={"state": ocp.PyTreeCheckpointHandler()}) as m:
        meta = m.item_metadata(step)["state"]["params"]
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), dict(meta))
