"""The token-labelling baseline end to end on created JSON Lines data: the window features
learn what a word's neighbours say (the most frequent tag of the word cannot), results.json
keyed exactly as the tag task's, and a tag set that disagrees between splits as one line."""
import json

import jax
import numpy as np
import pytest

from llmjax.classic.config import base_config, resolve
from llmjax.classic.run import run_baseline
from llmjax.config import UserError
from llmjax.data.embeddings_file import save_embeddings
from llmjax.data.tokenizers import ByteTokenizer
from llmjax.experiment import resolve as resolve_experiment
from llmjax.models import registry as models
from llmjax.tasks import registry as tasks
from tests.helpers import tiny_config


def _lines(n, seed, names):
    """Each name is a def, a call or a read, said only by its neighbours: "def NAME (",
    "x = NAME (", "y = NAME +"."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        name = str(rng.choice(names))
        kind = int(rng.integers(3))
        tokens, tags = ([["def", name, "(", ")", ":"], ["O", "B-def", "O", "O", "O"]],
                        [["x", "=", name, "(", ")"], ["B-assign", "O", "B-call", "O", "O"]],
                        [["y", "=", name, "+", "1"], ["B-assign", "O", "O", "O", "O"]])[kind]
        out.append(json.dumps({"tokens": tokens, "tags": tags}))
    return "\n".join(out) + "\n"


@pytest.fixture()
def tagged(tmp_path):
    names = [f"name{i}" for i in range(30)]
    (tmp_path / "train.jsonl").write_text(_lines(120, 0, names))
    (tmp_path / "eval.jsonl").write_text(_lines(40, 1, names))
    return f"jsonl:{tmp_path / 'train.jsonl'},{tmp_path / 'eval.jsonl'}"


def _tag_task_keys(spec, workdir):
    """The keys the tag task's run writes to results.json (its eval metrics, decoded metrics
    and baselines, and the step), from a tiny model on the same data."""
    run = resolve_experiment(tiny_config("stdlib", task="tag", task__dataset=spec), num_devices=1)
    task = tasks.build(run)
    task.prepare(str(workdir), lambda _: None, resuming=False)
    model = models.build(task.model_config("cpu"))
    params = task.init_params(model, jax.random.PRNGKey(0))
    totals = {"nll_sum": 1.0, "labelled": 1.0, "hits": 1.0}
    return {*task.eval_metrics(totals), *task.decoded_metrics(model, params), *task.baselines(), "step", "params"}


def test_window_features_beat_the_most_frequent_tag(tmp_path, tagged):
    c = base_config("tag", "tfidf")
    c.task.dataset = tagged
    c.features.window, c.features.min_df = 1, 1
    msgs = []
    results = run_baseline(resolve(c), str(tmp_path / "run"), log=msgs.append)
    assert results["span_f1"] > 0.95 and results["accuracy"] > 0.95
    assert results["baseline_span_f1"] < 0.8  # a name is a def, a call or nothing by context
    assert set(results) == _tag_task_keys(tagged, tmp_path / "task")
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train", "eval"] and rows[1]["span_f1"] == results["span_f1"]
    assert any(f"span P/R/F1 {results['span_precision']:.4f}/" in m for m in msgs)


def test_an_eval_tag_train_lacks_is_one_line_before_fitting(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"tokens": ["x", "y"], "tags": ["B-a", "O"]}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"tokens": ["x", "z"], "tags": ["B-a", "B-b"]}) + "\n")
    c = base_config("tag", "bow")
    c.task.dataset = f"jsonl:{tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}"
    msgs = []
    with pytest.raises(UserError, match="B-b never occur in train"):
        run_baseline(resolve(c), str(tmp_path / "run"), log=msgs.append)
    assert not (tmp_path / "run").exists()


def test_pieces_are_refused_for_tagging():
    c = base_config("tag", "tfidf")
    c.features.units = "pieces"
    with pytest.raises(UserError, match="config.features.units='pieces': the tag task's features"):
        resolve(c)


def _embedding_config(dataset, path):
    c = base_config("tag", "embedding")
    c.task.dataset = dataset
    c.features.embeddings = str(path)
    c.features.window = 1
    return resolve(c)


def test_word2vec_window_vectors_tag_by_context(tmp_path, tagged):
    """The names are not in the file: their tags come from their neighbours' vectors alone."""
    words = ["def", "(", ")", ":", "x", "=", "y", "+", "1"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32)
    save_embeddings(str(tmp_path / "w.npy"), vectors, words, None)
    msgs = []
    results = run_baseline(_embedding_config(tagged, tmp_path / "w.npy"), str(tmp_path / "run"),
                           log=msgs.append)
    assert results["span_f1"] > 0.95 and results["accuracy"] > 0.95
    assert results["baseline_span_f1"] < 0.8
    line = next(m for m in msgs if m.startswith("features: "))
    assert line.startswith("features: the 8-dimensional vectors of the words at -1..+1 side by side "
                           "and 3 missing-word indicators: 27 features (80.0% of train words, ")
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["features"] == 27


def test_a_file_that_cannot_be_the_words_is_one_line_before_the_data(tmp_path, tagged):
    tok = ByteTokenizer()
    save_embeddings(str(tmp_path / "p.npy"), np.ones((tok.vocab_size, 2), np.float32), tok.pieces(),
                    tok.fingerprint())
    msgs = []
    with pytest.raises(UserError, match=r"holds the vectors of a tokenizer's pieces .* the tag task "
                                        r"looks up the dataset's words: use the embeddings of a Word2Vec "
                                        r"run over words"):
        run_baseline(_embedding_config(tagged, tmp_path / "p.npy"), str(tmp_path / "run"), log=msgs.append)
    assert not msgs  # before any data is read
    save_embeddings(str(tmp_path / "o.npy"), np.ones((2, 3), np.float32), ["zzqx", "qqzx"], None)
    with pytest.raises(UserError, match=r"none of the train words is among its 2 tokens: use vectors "
                                        r"trained on this corpus"):
        run_baseline(_embedding_config(tagged, tmp_path / "o.npy"), str(tmp_path / "run"), log=msgs.append)
    assert not any(m.startswith(("features", "done")) for m in msgs)
    (tmp_path / "o.json").write_text("{}")
    with pytest.raises(UserError, match="is not format 1 of llmjax.data.embeddings_file"):
        run_baseline(_embedding_config(tagged, tmp_path / "o.npy"), str(tmp_path / "run"), log=msgs.append)
    assert not (tmp_path / "run").exists()
