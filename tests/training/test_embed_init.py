"""model.embed_init: a Word2Vec file's rows put in place in a real model's token table, and the
one-line refusals (width, words, another tokenizer, another vocabulary) before training."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.data.embeddings_file import check_token_vectors, save_embeddings
from llmjax.data.tokenizers import ByteTokenizer, CharTokenizer
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.models import registry
from llmjax.models.bert import BertConfig
from llmjax.models.gpt import GPTConfig
from llmjax.models.lstm import LSTMConfig
from llmjax.tasks.base import Task
from llmjax.training import embed_init
from llmjax.training.state import values
from llmjax.training.tree_paths import flat_paths
from tests.helpers import tiny_config, write_corpus

BYTES = ByteTokenizer()


def _gpt(path: str = "", d_model: int = 16):
    cfg = GPTConfig(num_layers=1, d_model=d_model, num_heads=2, mlp_dim=32, embed_init=path)
    cfg = cfg.finalize(BYTES.vocab_size, 16, "cpu", "float32")
    params = values(registry.build(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32),
                                             deterministic=True)["params"])
    return cfg, params


def _file(tmp_path, rows=BYTES.vocab_size, dim=16, fingerprint=BYTES.fingerprint(), name="emb"):
    vectors = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
    path = str(tmp_path / f"{name}.npy")
    save_embeddings(path, vectors, [str(i) for i in range(rows)], fingerprint)
    return path, vectors


def _workdir_with(tmp_path, tok) -> str:
    workdir = str(tmp_path / "run")
    tok.save(os.path.join(workdir, "tokenizer"))
    return workdir


def _rows(cfg, workdir):
    """What the loop asks the task for: Task.token_vectors (no abstract method is called)."""
    return Task.token_vectors(None, cfg, workdir)


def test_the_rows_go_into_the_gpt_token_table(tmp_path):
    path, vectors = _file(tmp_path)
    cfg, params = _gpt(path)
    lines = []
    rows = _rows(cfg, _workdir_with(tmp_path, BYTES))
    np.testing.assert_array_equal(rows, vectors)
    new = embed_init.apply(params, rows, cfg, lines.append)
    table, old = np.asarray(new["embed"]["embedding"]), np.asarray(params["embed"]["embedding"])
    V = BYTES.vocab_size
    assert table.shape == (cfg.vocab_size, 16) and cfg.vocab_size > V
    scale = np.sqrt(np.mean(old[:V].astype(np.float64) ** 2)) / np.sqrt(np.mean(vectors.astype(np.float64) ** 2))
    np.testing.assert_allclose(table[:V], vectors * scale, rtol=1e-5)
    np.testing.assert_array_equal(table[V:], old[V:])  # padded rows stay as initialised
    for key, leaf in flat_paths(params).items():  # nothing else moves
        if key != "embed/embedding":
            np.testing.assert_array_equal(np.asarray(flat_paths(new)[key]), np.asarray(leaf))
    assert lines and lines[0].startswith(f"embed_init: {V} rows of embed/embedding")


@pytest.mark.parametrize("cfg", [
    BertConfig(num_layers=1, d_model=16, num_heads=2, mlp_dim=32, max_len=16),
    LSTMConfig(num_layers=1, d_model=16)])
def test_bert_and_lstm_token_tables_are_found(cfg):
    cfg = cfg.finalize(BYTES.vocab_size, 16, "cpu", "float32")
    kwargs = {"token_types": jnp.zeros((1, 8), jnp.int32)} if cfg.name == "bert" else {}
    shapes = jax.eval_shape(lambda: values(registry.build(cfg).init(
        jax.random.key(0), jnp.zeros((1, 8), jnp.int32), deterministic=True, **kwargs)["params"]))
    want = "embeddings/token/embedding" if cfg.name == "bert" else "embed/embedding"
    assert embed_init.token_table_path(shapes, cfg.vocab_size, 16) == want


def test_another_width_words_another_tokenizer_or_vocabulary_are_one_line(tmp_path):
    key = "config.model.embed_init"
    wide, _ = _file(tmp_path, dim=24, name="wide")
    with pytest.raises(ConfigError, match="dimension 24 but the model's token table is 16 wide"):
        check_token_vectors(wide, key, 16)
    words, _ = _file(tmp_path, fingerprint=None, name="words")
    with pytest.raises(ConfigError, match="vectors of words"):
        check_token_vectors(words, key, 16)
    short, _ = _file(tmp_path, rows=100, name="short")
    with pytest.raises(ConfigError, match="100 rows but the tokenizer has 262"):
        check_token_vectors(short, key, 16, BYTES.fingerprint(), BYTES.vocab_size)
    path, _ = _file(tmp_path)
    cfg, _ = _gpt(path)
    with pytest.raises(ConfigError, match="another tokenizer") as e:
        _rows(cfg, _workdir_with(tmp_path, CharTokenizer("abc")))
    assert "\n" not in str(e.value) and str(e.value).startswith(key)


def test_resolve_refuses_a_file_of_another_width_and_a_run_starts_from_the_file(tmp_path):
    c = tiny_config(write_corpus(str(tmp_path / "corpus"), num_files=2, max_chars=4000))
    c.model.embed_init, _ = _file(tmp_path, dim=24, name="wide")
    with pytest.raises(ConfigError, match="config.model.embed_init"):
        resolve(c)
    c.model.embed_init, _ = _file(tmp_path, dim=32)  # tiny_config's d_model, the byte tokenizer's ids
    c.model.num_layers, c.train.num_steps, c.train.eval_every, c.checkpoint.every_steps = 1, 1, 1, 1
    lines = []
    train_and_evaluate(resolve(c), str(tmp_path / "run"), log=lines.append)
    assert any(line.startswith("embed_init: 262 rows of embed/embedding") for line in lines)


def test_a_run_resumes_without_its_embeddings_file():
    from llmjax.experiment import base_config, check_resumable
    saved, current = base_config("gpt").to_dict(), base_config("gpt").to_dict()
    saved["model"]["embed_init"] = "/gone/embeddings.npy"
    check_resumable(saved, current, "run")  # unset: resumes (a resumed run never reads the file)
    current["model"]["d_model"] = 64
    with pytest.raises(ConfigError, match="config.model.d_model"):
        check_resumable(saved, current, "run")
