"""Fine-tuning: warm-starting from a pretraining run (BERT and GPT), the classification task
end to end, and the faults of init_from."""
import json
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from llmjax.config import ConfigError
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.training import warm_start
from llmjax.training.tree_paths import flat_paths
from tests.helpers import tiny_config, write_corpus


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """family -> the workdir of a 6-step pretraining run (made once per module)."""
    made = {}

    def get(family):
        if family not in made:
            made[family] = _pretrain(tmp_path_factory.mktemp(family), family)
        return made[family]
    return get


def _pretrain(tmp_path, family):
    spec = write_corpus(tmp_path / "corpus", num_files=30, max_chars=8000)
    task = "mlm" if family == "bert" else "lm"
    extra = {"task__passes": 1} if family == "bert" else {}
    cfg = resolve(tiny_config(spec, model=family, task=task, train__num_steps=6,
                                  data__seq_len=64, **extra), num_devices=8)
    workdir = tmp_path / f"{family}_pre"
    train_and_evaluate(cfg, str(workdir), log=lambda _: None)
    return workdir


def _finetune_config(family, init_from, **overrides):
    settings = dict(train__num_steps=4, data__seq_len=64, task__max_examples=64, train__eval_steps=2)
    c = tiny_config("stdlib", model=family, task="classify", **{**settings, **overrides})
    c.init_from = str(init_from)
    return c


def _saved_params(workdir):
    directory, step = warm_start.locate(str(workdir))
    with ocp.CheckpointManager(directory, item_handlers={"state": ocp.PyTreeCheckpointHandler()}) as m:
        return m.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))["state"]["params"]


# bert is slow (~36 s): a BERT classifier fine-tuned from pretrained weights is also
# tests/test_convert.py's test_finetune_a_classifier_from_a_hugging_face_bert.
@pytest.mark.parametrize("family", [pytest.param("bert", marks=pytest.mark.slow), "gpt"])
def test_finetune_restores_the_pretrained_encoder_and_adds_a_head(tmp_path, family, pretrained):
    pre = pretrained(family)
    cfg = resolve(_finetune_config(family, pre, train__num_steps=1, optim__lr=0.0), num_devices=8)
    msgs = []
    out = train_and_evaluate(cfg, str(tmp_path / "ft"), log=msgs.append)
    line = next(m for m in msgs if m.startswith("init_from") and "restored" in m)
    assert "restored" in line and "classifier" in line.split("new:")[1]
    # lr 0 (and no weight decay step): the encoder after one update is the pretrained one.
    saved = flat_paths(_saved_params(pre))
    tuned = flat_paths(_saved_params(tmp_path / "ft"))
    shared = [k for k in tuned if k in saved]
    assert len(shared) > 10 and any("classifier" in k for k in tuned if k not in saved)
    for k in shared:
        np.testing.assert_array_equal(np.asarray(tuned[k]), np.asarray(saved[k]), err_msg=k)
    assert (tmp_path / "ft" / "tokenizer").exists()  # the pretraining run's tokenizer came along
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    for k in ("accuracy", "f1_macro", "precision", "recall", "confusion", "majority_accuracy"):
        assert k in results, k
    assert 0.0 <= out["accuracy"] <= 1.0


def test_a_shape_mismatch_names_the_parameter(tmp_path, pretrained):
    pre = pretrained("gpt")
    # The run's recorded model config names the key at resolve, before any work.
    with pytest.raises(ConfigError, match=r"config.model.mlp_dim=48 but the weights .* trained with 64"):
        resolve(_finetune_config("gpt", pre, model__mlp_dim=48), num_devices=8)
    # A bare checkpoints/ directory (nothing records its model) is checked leaf by leaf on restore.
    shutil.copytree(pre / "checkpoints", tmp_path / "bare" / "checkpoints")
    cfg = resolve(_finetune_config("gpt", tmp_path / "bare", model__mlp_dim=48), num_devices=8)
    with pytest.raises(ConfigError, match=r"parameter layer_0/ffn/w1/\S+ is \([^)]*64,?\) in \S+ but \([^)]*48,?\) in this model"):
        train_and_evaluate(cfg, str(tmp_path / "ft"), log=lambda _: None)


def test_init_from_a_path_without_checkpoints_is_refused_at_resolve(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(_finetune_config("bert", tmp_path / "nowhere"), num_devices=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        resolve(_finetune_config("bert", tmp_path / "empty"), num_devices=8)


def test_a_model_key_that_changes_the_function_is_refused(tmp_path, pretrained):
    """norm_position changes no shape: only the recorded config can tell (caught at resolve)."""
    pre = tmp_path / "pre"
    shutil.copytree(pretrained("gpt"), pre)
    (pre / "config.json").write_text(json.dumps({"model": {"norm_position": "pre", "dropout": 0.0}}))
    resolve(_finetune_config("gpt", pre, model__dropout=0.1), num_devices=8)  # dropout may differ
    with pytest.raises(ConfigError, match=r"config.model.norm_position='post' but the weights in .* 'pre'"):
        resolve(_finetune_config("gpt", pre, model__norm_position="post"), num_devices=8)


# ---------------------------------------------------------------- batches from the example cache


def _prepared_task(workdir, family, **overrides):
    from llmjax.tasks import registry
    settings = dict(data__seq_len=48, task__max_examples=40)
    cfg = resolve(tiny_config("stdlib", model=family, task="classify", **{**settings, **overrides}),
                  num_devices=8)
    task = registry.build(cfg)
    msgs = []
    task.prepare(str(workdir), msgs.append, resuming=False)
    return task, msgs


@pytest.mark.parametrize("family, pairs", [("bert", False), ("gpt", False), ("bert", True), ("gpt", True)])
def test_cached_batches_equal_rows_encoded_up_front(tmp_path, request, family, pairs):
    """Rows built per batch from the memory-mapped cache are the rows encode_examples builds
    for the whole set (the layout before the cache), for train and padded eval batches; single
    texts (the embedded task) and text pairs (glue/mrpc)."""
    from llmjax.data.labelled import load_labelled
    from llmjax.tasks.classify import encode_examples

    data = dict(task__dataset="tfds:glue/mrpc", task__text_keys="sentence1,sentence2",
                data__tfds_data_dir=request.getfixturevalue("mocked_tfds")) if pairs else {}
    task, msgs = _prepared_task(tmp_path / "run", family, **data)
    lab = load_labelled("tfds:glue/mrpc", tfds_data_dir=data["data__tfds_data_dir"],
                        text_keys=("sentence1", "sentence2"), max_examples=40, log=lambda _: None
                        ) if pairs else load_labelled("stdlib_packages", max_examples=40, log=lambda _: None)
    L, bert = 48, family == "bert"
    whole = {split: {**encode_examples(task.tokenizer, getattr(lab, f"{split}_texts"),
                                       getattr(lab, f"{split}_pairs"), L, bert),
                     "labels": getattr(lab, f"{split}_labels")} for split in ("train", "eval")}
    assert pairs == bool(whole["train"]["token_types"].any())
    for split, batch_of, order in (("train", task.train_batch, task._train_order),
                                   ("eval", task.eval_batch, task._eval_order)):
        for step in sorted({0, 1, order.num_batches - 1, order.num_batches + 1}):
            idx = order.indices(step)
            real, safe = idx >= 0, np.where(idx >= 0, idx, 0)
            got = batch_of(step)
            for k, v in whole[split].items():
                want = v[safe] * (real[:, None] if k == "attention_mask" else 1)
                np.testing.assert_array_equal(got[k], want, err_msg=f"{split} {step} {k}")
                assert got[k].dtype == np.int32
            np.testing.assert_array_equal(got["weights"], real.astype(np.float32))
    cut = np.mean(whole["train"]["attention_mask"][:, -1])
    assert any(f"{cut:.1%} of train rows fill all 48 tokens" in m for m in msgs)
    assert task.label_names == lab.label_names
    n = min(len(lab.eval_labels), task.num_eval_batches * task.eval_batch_size)
    top = np.bincount(lab.train_labels).argmax()
    assert task.baselines()["majority_accuracy"] == float(np.mean(lab.eval_labels[:n] == top))
    again, msgs = _prepared_task(tmp_path / "run", family, **data)  # a second prepare reuses the cache
    assert any("reusing the tokenized examples" in m for m in msgs)
    np.testing.assert_array_equal(again.train_batch(3)["inputs"], task.train_batch(3)["inputs"])


def test_fit_lengths_is_truncate_seq_pair():
    from llmjax.tasks.classify import _fit_lengths

    def loop(a, b, room):  # BERT's truncate_seq_pair, one token at a time
        while a + (b or 0) > room:
            if b is not None and b > a:
                b -= 1
            else:
                a -= 1
        return a, b
    for a in range(14):
        for b in (None, *range(14)):
            for room in range(20):
                assert _fit_lengths(a, b, room) == loop(a, b, room), (a, b, room)
