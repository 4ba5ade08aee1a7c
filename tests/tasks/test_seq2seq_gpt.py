"""The seq2seq task on GPT (prompt -> completion): rows source + [SEP] + target + EOS with the loss
on the completion only, normalised by the completion tokens of the whole batch; one short run
trains, decodes with beam search and reports the encoder-decoder's metrics and baselines;
llmjax.sample builds its prompts as the eval does; families that cannot serve are refused."""
import json
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.experiment import resolve, train_and_evaluate
from tests.helpers import tiny_config
from tests.tasks.test_seq2seq import write_pairs

L, T = 48, 16


def _config(spec, **overrides):
    settings = dict(task__dataset=spec, task__target_len=T, task__decode_examples=6, task__beam_size=2,
                    data__seq_len=L)
    return tiny_config("stdlib", model="gpt", task="seq2seq", **{**settings, **overrides})


def _prepared(tmp_path, n=120, **overrides):
    from llmjax.tasks import registry

    cfg = resolve(_config(write_pairs(tmp_path / "data", n=n), **overrides), num_devices=8)
    task = registry.build(cfg)
    task.prepare(str(tmp_path / "run"), lambda _: None, resuming=False)
    return cfg, task


def test_rows_are_source_sep_target_eos_with_the_loss_on_the_completion(tmp_path):
    """Eval rows, in order, hold each pair as the tokenizer reads it; the weights mark exactly the
    predictions of target + EOS; the denominator is the batch's completion tokens."""
    _, task = _prepared(tmp_path)
    tok, cache = task.tokenizer, task._cache
    pairs = [(tok.encode(s), tok.encode(t)) for s, t in zip(task._sources, task._references)]
    assert len(pairs) == 6
    batch = task.eval_batch(0)
    assert set(batch) == {"inputs", "targets", "weights", "positions", "segment_ids"}
    segments = [(r, k) for r in range(len(batch["inputs"])) for k in range(1, batch["segment_ids"][r].max() + 1)]
    for i, (source, target) in enumerate(pairs):  # the rows' segments in order: eval pairs 0, 1, ...
        r, k = segments[i]
        at = batch["segment_ids"][r] == k
        seq = batch["inputs"][r][at].tolist() + [int(batch["targets"][r][at][-1])]
        prompt = list(source[:L - T - 1]) + [tok.sep_id]
        assert seq == prompt + (list(target) + [tok.eos_id])[:T]
        assert batch["positions"][r][at].tolist() == list(range(len(seq) - 1))
        assert batch["weights"][r][at].tolist() == [0.0] * (len(prompt) - 1) + [1.0] * (len(seq) - len(prompt))
        assert task._decode_sources[i].tolist() == prompt  # what decoding continues
    completions = sum(min(n + 1, T) for n in cache.field("eval", "target").lengths())
    denominators = [float(task.denominators(task.eval_batch(i))["tokens"]) for i in range(task._eval.num_batches)]
    assert sum(denominators) == completions
    assert task.flops_per_step(task.model_config("cpu")) > 0 and task.tokens_per_step() == 8 * L


def test_decoder_input_dropout_replaces_only_the_target_tokens_read(tmp_path):
    _, task = _prepared(tmp_path, task__decoder_input_dropout=0.5)
    batch = {k: np.asarray(v) for k, v in task.train_batch(0).items()}
    out = np.asarray(task._drop_completion_words(batch, jax.random.key(0))["inputs"])
    changed = out != batch["inputs"]
    read_target = np.zeros_like(changed)  # inputs after [SEP] in their own example
    for r, (w, s) in enumerate(zip(batch["weights"], batch["segment_ids"])):
        read_target[r, 1:] = (w[:-1] > 0) & (s[1:] == s[:-1])
    assert (out[changed] == task.tokenizer.unk_id).all()
    assert not changed[~read_target].any()
    assert 0.3 < changed[read_target].mean() < 0.7


def test_a_short_run_trains_decodes_and_sample_reads_prompts_as_the_eval(tmp_path):
    from llmjax import saved_run
    from llmjax.sample import encode
    from llmjax.tasks import registry

    spec = write_pairs(tmp_path / "data")
    config = _config(spec, task__memory_input=0.5, task__no_repeat_ngram=2, train__eval_every=12)
    cfg = resolve(config, num_devices=8)
    workdir = tmp_path / "run"
    msgs = []
    out = train_and_evaluate(cfg, str(workdir), log=msgs.append)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"] and train[0]["smoothed_loss"] > train[0]["loss"]
    results = json.loads((workdir / "results.json").read_text())
    for key in ("bleu", "chrf", "rougeL", "copy_bleu", "memory_chrf", "frequent_rougeL", "bleu_signature"):
        assert key in results, key
    assert np.isfinite(out["bleu"]) and out["bleu"] == results["bleu"]
    assert any("baselines BLEU/chrF: copy " in m for m in msgs) and any("reference:" in m for m in msgs)
    assert json.loads((workdir / "model.json").read_text())["name"] == "gpt"

    task = registry.build(cfg)  # the eval's decode prompts, from the run's cache
    task.prepare(str(workdir), lambda _: None, resuming=True)
    (workdir / "config.json").write_text(json.dumps(config.to_dict()))  # as llmjax.main records it
    trained = saved_run.task(str(workdir))
    model_cfg = saved_run.model_config(str(workdir))
    got = encode(task.tokenizer, task._sources, model_cfg, cfg.task.target_len, trained)
    assert got == [s.tolist() for s in task._decode_sources]
    assert all(ids[-1] == task.tokenizer.sep_id for ids in got)


def test_families_that_cannot_serve_are_refused_in_one_line(tmp_path):
    from llmjax.models.bert import BertConfig
    from llmjax.tasks.seq2seq import Seq2SeqTask

    spec = write_pairs(tmp_path / "data", n=40)
    with pytest.raises(ConfigError, match=r"config.model.name='bert' is trained on the tasks"):
        resolve(tiny_config("stdlib", model="bert", task="seq2seq", task__dataset=spec))
    run = SimpleNamespace(model=BertConfig(), task=SimpleNamespace(target_len=T), data=SimpleNamespace(seq_len=L))
    with pytest.raises(ConfigError, match="'bert' does not generate"):
        Seq2SeqTask(run)
    cfg = resolve(_config(spec, task__target_len=L - 1), num_devices=8)
    with pytest.raises(ConfigError, match=f"target_len={L - 1} leaves no room for a source"):
        train_and_evaluate(cfg, str(tmp_path / "w"), log=lambda _: None)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
