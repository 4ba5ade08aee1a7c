"""The LM task: per-position eval sums and the per-position loss file, and the batch inputs a
model gets (those its config declares)."""
import json
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np

from llmjax.experiment import resolve, train_and_evaluate
from llmjax.models.gpt import GPTConfig
from llmjax.models.lstm import LSTMConfig
from llmjax.tasks.lm import LMTask, position_sums
from tests.helpers import tiny_config, write_corpus


def test_position_sums_by_column_and_by_document_position():
    nll = jnp.asarray([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    w = jnp.asarray([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    by_column = position_sums(nll, w)
    np.testing.assert_allclose(by_column["position_nll"], [11, 22, 33, 40])
    np.testing.assert_allclose(by_column["position_weight"], [2, 2, 2, 1])
    positions = jnp.asarray([[0, 1, 0, 1], [0, 1, 2, 0]])  # documents restart the count
    by_doc = position_sums(nll, w, positions)
    np.testing.assert_allclose(by_doc["position_nll"], [1 + 3 + 10 + 40, 2 + 20, 30, 0])
    np.testing.assert_allclose(by_doc["position_weight"], [4, 2, 1, 0])


def test_eval_details_null_where_nothing_was_scored():
    task = LMTask(SimpleNamespace())
    out = task.eval_details({"position_nll": np.array([6.0, 3.0, 0.0]),
                             "position_weight": np.array([3.0, 2.0, 0.0])})
    assert out == {"per_position_loss": [2.0, 1.5, None], "per_position_tokens": [3.0, 2.0, 0.0]}


def test_model_gets_the_inputs_its_config_declares():
    batch = {"inputs": 0, "positions": 1, "segment_ids": 2}
    lstm = LMTask(SimpleNamespace(model=LSTMConfig()))
    assert lstm._model_kwargs(batch) == {"segment_ids": 2}
    gpt = LMTask(SimpleNamespace(model=GPTConfig()))
    assert gpt._model_kwargs({"inputs": 0, "segment_ids": 2}) == {"segment_ids": 2}


def test_gpt_run_writes_per_position_loss_whose_mean_is_the_eval_loss(tmp_path):
    run = resolve(tiny_config(write_corpus(tmp_path / "corpus"), train__num_steps=4, train__eval_every=4,
                              checkpoint__every_steps=4), num_devices=8)
    train_and_evaluate(run, str(tmp_path / "run"), log=lambda _: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if r["split"] == "eval"][-1]
    loss = json.loads((tmp_path / "run" / "eval" / "per_position_loss.json").read_text())
    tokens = json.loads((tmp_path / "run" / "eval" / "per_position_tokens.json").read_text())
    per, w = np.asarray(loss["per_position_loss"]), np.asarray(tokens["per_position_tokens"])
    assert loss["step"] == final["step"] == 4 and per.shape == w.shape == (32,)
    assert np.all(w == w[0]) and w.sum() == final["tokens"]  # every column of every eval row
    np.testing.assert_allclose(np.sum(per * w) / np.sum(w), final["loss"], rtol=1e-5)
    assert np.std(per) > 0  # positions differ (a broadcast of the mean would not)


def _parquet(directory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers import write_corpus
    spec = write_corpus(directory / "text", num_files=8, max_chars=4000)
    texts = [open(f).read() for f in sorted((directory / "text").glob("*.txt"))]
    pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), directory / "c.parquet",
                   row_group_size=3)
    assert spec
    return f"parquet:{directory}/*.parquet"


def test_an_lm_trains_on_a_parquet_corpus_and_on_a_tfds_dataset(tmp_path):
    """The source kinds meet the same preparation and loop: one short run on Parquet, one on
    the stdlib corpus (a tfds builder prepared here, read from its ArrayRecord files)."""
    for name, dataset, extra in (("parquet", _parquet(tmp_path / "pq"), {}),
                                 ("tfds", "stdlib", {"data__tfds_data_dir": str(tmp_path / "tfds"),
                                                     "data__max_train_chars": 50_000})):
        run = resolve(tiny_config(dataset, train__num_steps=2, train__eval_every=2, train__eval_steps=1,
                                  checkpoint__every_steps=2, data__val_fraction=0.3, **extra),
                      num_devices=8)
        out = train_and_evaluate(run, str(tmp_path / name), log=lambda _: None)
        assert np.isfinite(out["loss"]) and out["tokens"] > 0, name
        manifest = json.loads((tmp_path / name / "data" / "manifest.json").read_text())
        assert manifest["stats"]["train_tokens"] > 0 and manifest["stats"]["val_tokens"] > 0
