"""The seq2seq task end to end on the encoder-decoder: packed pairs train, eval reports loss,
BLEU, chrF and ROUGE of beam-search decodes of the whole eval split (batched in order of length)
beside the baselines and sacreBLEU's signatures, resume is exact, bad configs are refused in one
line before any work."""
import json
import shutil

import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.experiment import resolve, train_and_evaluate
from tests.helpers import tiny_config

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
         "tau upsilon phi chi psi omega").split()


def write_pairs(directory, n: int = 400) -> str:
    """A learnable task: the target is the source's words in reverse order (tab-separated lines)."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=rng.integers(2, 5)))
        lines.append(" ".join(words) + "\t" + " ".join(reversed(words)))
    (directory / "pairs.tsv").write_text("\n".join(lines) + "\n")
    return f"pairs:{directory}/*.tsv"


def _config(spec, **overrides):
    settings = dict(task__dataset=spec, task__target_len=24, task__decode_examples=6, task__beam_size=2,
                    data__seq_len=32, model__num_decoder_layers=2, model__max_len=32)
    c = tiny_config("stdlib", model="encdec", task="seq2seq", **{**settings, **overrides})
    return c


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("options", [pytest.param({}, marks=pytest.mark.slow),  # the options off: covered by the models' tests
                                     dict(model__copy_attention=True, task__decoder_input_dropout=0.2,
                                          task__split_identifiers=True, task__no_repeat_ngram=2,
                                          task__memory_input=0.5)])
def test_trains_decodes_scores_and_resumes_exactly(tmp_path, options):
    spec = write_pairs(tmp_path / "data")
    cfg = resolve(_config(spec, **options), num_devices=8)
    a, b = tmp_path / "a", tmp_path / "b"
    msgs = []
    out = train_and_evaluate(cfg, str(a), log=msgs.append)
    evals = [r for r in _rows(a) if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [6, 12]
    for key in ("loss", "perplexity", "token_accuracy", "bleu", "chrf", "rouge1", "rouge2", "rougeL"):
        assert np.isfinite(evals[-1][key]), key
    train_rows = [r for r in _rows(a) if r["split"] == "train"]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert train_rows[0]["smoothed_loss"] > train_rows[0]["loss"]  # label smoothing 0.1 is trained
    results = json.loads((a / "results.json").read_text())
    for key in ("bleu", "chrf", "copy_bleu", "copy_chrf", "copy_rougeL", "frequent_bleu", "frequent_chrf",
                "memory_bleu", "memory_chrf", "memory_rougeL"):
        assert key in results
    assert "tok:13a" in results["bleu_signature"] and "nc:6" in results["chrf_signature"]
    assert any("baselines over the 6 decoded examples" in m and "memory, the translation memory" in m
               for m in msgs)
    assert sum(m.startswith("sacreBLEU signatures: bleu nrefs:1") for m in msgs) == 1  # once a run
    assert any("baselines BLEU/chrF: copy " in m for m in msgs)  # beside each eval's scores
    assert any(m.startswith("decoded eval examples") for m in msgs)
    assert any("reference:" in m for m in msgs)
    assert json.loads((a / "model.json").read_text())["name"] == "encdec"

    # b: the state of a when step 6 was saved; it resumes to the same numbers.
    b.mkdir()
    shutil.copytree(a / "tokenizer", b / "tokenizer")
    shutil.copytree(a / "checkpoints" / "6", b / "checkpoints" / "6")
    out_b = train_and_evaluate(cfg, str(b), log=lambda _: None)
    assert out_b["loss"] == out["loss"] and out_b["bleu"] == out["bleu"]


def test_bad_configs_are_refused_in_one_line(tmp_path):
    spec = write_pairs(tmp_path / "data", n=40)
    with pytest.raises(ConfigError, match="task.dataset"):
        resolve(_config("pairs:/nonexistent/*.tsv"))
    with pytest.raises(ConfigError, match=r"config.task.name='seq2seq'.*'lstm' is trained on the tasks lm, "):
        resolve(tiny_config("stdlib", model="lstm", task="lm", task__name="seq2seq"))
    with pytest.raises(ConfigError, match="task.length_reward=0.4 is a beam search option"):
        resolve(_config(spec, task__beam_size=1, task__length_reward=0.4))
    cfg = resolve(_config(spec, task__target_len=40))
    with pytest.raises(ConfigError, match="target_len=40 exceeds config.model.max_len=32"):
        train_and_evaluate(cfg, str(tmp_path / "w"), log=lambda _: None)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_the_whole_eval_split_is_decoded_by_default_beside_the_translation_memory(tmp_path):
    """decode_examples -1 (the default) decodes every eval pair; the memory proposes, for each in
    order, the target of the most similar train source with its similarity; 0 decodes none."""
    from llmjax.data.pairs import load_pairs
    from llmjax.tasks import registry
    from llmjax.tasks.seq2seq import Seq2SeqTaskConfig

    assert Seq2SeqTaskConfig().decode_examples == -1
    spec = write_pairs(tmp_path / "data", n=300)
    p = load_pairs(spec, val_fraction=0.2, log=lambda _: None)
    cfg = resolve(_config(spec, task__decode_examples=-1), num_devices=8)
    task = registry.build(cfg)
    msgs = []
    task.prepare(str(tmp_path / "run"), msgs.append, resuming=False)
    assert len(p.eval_targets) > 40 and task._references == p.eval_targets and task._sources == p.eval_sources
    assert len(task._decode_sources) == len(p.eval_sources)
    assert any("the whole eval split decoded at each eval (beam 2, 128 sources at a time)" in m for m in msgs)
    proposals, sim_N = task.eval_memory
    assert len(proposals) == len(p.eval_sources) and set(proposals) <= set(p.train_targets)
    assert sim_N.shape == (len(p.eval_sources),) and ((sim_N > 0) & (sim_N <= 1)).all()
    assert set(task.baselines()) >= {"memory_bleu", "copy_chrf", "frequent_rougeL", "bleu_signature"}

    task = registry.build(resolve(_config(spec, task__decode_examples=0), num_devices=8))
    msgs = []
    task.prepare(str(tmp_path / "run"), msgs.append, resuming=False)
    task.describe(msgs.append)
    assert task._decode_sources == [] and task.baselines() == {}
    assert any("none decoded (task.decode_examples=0)" in m for m in msgs)


def test_memory_fallback_reports_the_memorys_target_above_the_threshold(tmp_path, monkeypatch):
    """With task.memory_fallback the scored output takes the memory's target where its similarity
    reaches the threshold and the decode elsewhere; the model alone is reported beside."""
    from llmjax.evaluation.text_scores import text_scores
    from llmjax.tasks import registry

    spec = write_pairs(tmp_path / "data", n=300)
    task = registry.build(resolve(_config(spec, task__memory_fallback=0.75), num_devices=8))
    task.prepare(str(tmp_path / "run"), lambda _: None, resuming=False)
    proposals, sim_N = task.eval_memory
    assert 0 < (sim_N >= 0.75).sum() < len(sim_N)  # both kinds of source
    decodes = [f"decoded {i}" for i in range(len(task._decode_sources))]
    monkeypatch.setattr(task, "decode", lambda model, params, sources: decodes)
    m = task.decoded_metrics(None, None)
    output = [p if s >= 0.75 else d for d, p, s in zip(decodes, proposals, sim_N)]
    assert m["bleu"] == text_scores(output, task._references)["bleu"]
    assert m["model_bleu"] == text_scores(decodes, task._references)["bleu"]
    assert m["memory_share"] == pytest.approx(float((sim_N >= 0.75).mean()))
    assert "the model alone: BLEU" in task.eval_line({"loss": 1.0, "perplexity": 2.7, "token_accuracy": 0.5, **m})
    with pytest.raises(ConfigError, match="memory_fallback"):
        resolve(_config(spec, task__memory_fallback=1.5))


def test_decode_texts_batches_by_length_and_keeps_the_order(monkeypatch):
    """Sources are beam-searched batch_size at a time in order of length, each batch padded to a
    power-of-two width (at most the longest source), and come back in their own order: the
    hypotheses of one batch of all the sources as given."""
    import dataclasses

    import jax

    from llmjax.data.tokenizers import ByteTokenizer
    from llmjax.generation.beam import beam_search
    from llmjax.models.encdec import EncDecConfig
    from llmjax.models.registry import build
    from llmjax.tasks import seq2seq

    model = build(EncDecConfig(vocab_size=262, num_layers=1, num_decoder_layers=1, d_model=32, num_heads=4,
                               mlp_dim=64, max_len=16, init_std=0.5, position="learned", start_id=256))
    params = model.init(jax.random.key(0), np.zeros((1, 4), np.int32), np.zeros((1, 4), np.int32))["params"]
    tok = ByteTokenizer()
    rng = np.random.default_rng(0)
    sources = [np.r_[rng.integers(97, 123, n), tok.eos_id] for n in (3, 12, 5, 2)]  # 4, 13, 6, 3 tokens
    cfg = dataclasses.replace(seq2seq.Seq2SeqTaskConfig(), beam_size=2, target_len=5)
    # The reference: the sources as given, two at a time at the longest's width (the shape of
    # decode_texts's second batch: no third compilation).
    ids = np.concatenate([beam_search(model, params, sources[i:i + 2], beam_size=2, max_new_tokens=5,
                                      eos_id=tok.eos_id, pad_to=13)[0][:, 0] for i in (0, 2)])
    want = [tok.decode(row[:row.index(tok.eos_id)] if tok.eos_id in row else row).strip()
            for row in ids.tolist()]
    calls = []

    def spy(model, params, chunk, **kw):
        calls.append(([len(s) for s in chunk], kw["pad_to"]))
        return beam_search(model, params, chunk, **kw)

    monkeypatch.setattr(seq2seq, "beam_search", spy)
    got = seq2seq.decode_texts(model, params, sources, tok, cfg, batch_size=2)
    assert calls == [([3, 4], 8), ([6, 13], 13)]
    assert got == want and len(set(want)) > 1


def test_decoder_input_dropout_replaces_inputs_after_the_start_token():
    from types import SimpleNamespace

    import jax

    from llmjax.tasks.seq2seq import Seq2SeqTask

    positions_BxT = np.tile(np.r_[0:20, 0:12, 0, 0], (64, 1)).astype(np.int32)  # two targets + padding
    batch = {"decoder_inputs": np.full((64, 34), 7, np.int32), "target_positions": positions_BxT}
    task = SimpleNamespace(run=SimpleNamespace(task=SimpleNamespace(decoder_input_dropout=0.25)),
                           tokenizer=SimpleNamespace(unk_id=3))
    out = np.asarray(Seq2SeqTask._drop_words(task, batch, jax.random.key(0))["decoder_inputs"])
    dropped = out == 3
    assert not dropped[positions_BxT == 0].any()  # start tokens and padding stay
    assert abs(dropped[positions_BxT > 0].mean() - 0.25) < 0.02
    assert set(np.unique(out)) == {3, 7}


def test_memory_input_joins_the_memorys_target_to_train_and_eval_sources(tmp_path):
    """With task.memory_input each source reads source + [SEP] + the target of its memory match
    where the similarity reaches the threshold: train pairs another train pair (never their own),
    eval pairs a train pair (the memory baseline's); what is packed and decoded is that join."""
    from llmjax.data import retrieval
    from llmjax.data.packed_pairs import PackedPairs
    from llmjax.tasks import registry

    spec = write_pairs(tmp_path / "data", n=300)
    cfg = resolve(_config(spec, task__memory_input=0.6, task__decode_examples=-1), num_devices=8)
    task = registry.build(cfg)
    msgs = []
    task.prepare(str(tmp_path / "run"), msgs.append, resuming=False)
    tok, cache = task.tokenizer, task._cache
    train_src, train_tgt = (cache.texts("train", f, 10**9) for f in ("source", "target"))
    train_best, train_sim = retrieval.memory_matches(train_src)
    eval_best, eval_sim = retrieval.memory_matches(train_src, task._sources)
    assert (train_best != np.arange(len(train_src))).all()
    for sims in (train_sim, eval_sim):
        assert 0 < (sims >= 0.6).sum() < len(sims)  # joined and alone
    join = lambda text, best, sim: tok.encode(text) + ([tok.sep_id] + tok.encode(train_tgt[best]) if sim >= 0.6 else [])  # noqa: E731
    want = [join(*x) for x in zip(train_src, train_best, train_sim)]
    packed = PackedPairs(want, tok.encode_batch(train_tgt), source_len=32, target_len=24, seed=cfg.train.seed,
                         batch_size=cfg.train.batch_size, shuffle=True, eos_id=tok.eos_id, pad_id=tok.pad_id,
                         start_id=tok.eos_id)
    for step in (0, 3):
        for k, v in packed.batch(step).items():
            np.testing.assert_array_equal(task.train_batch(step)[k], v, err_msg=k)
    assert [s.tolist() for s in task._decode_sources] == [
        (join(*x) + [tok.eos_id])[:32] for x in zip(task._sources, eval_best, eval_sim)]
    assert any(m.startswith("data: the memory's target joined to ") for m in msgs)
    # llmjax.sample reads a prompt as the eval read its source: the run's cache is the memory.
    from llmjax.tasks.seq2seq import Seq2SeqTask
    got = Seq2SeqTask.prompt_ids(cfg.task, cfg.data, tok, task._sources, str(tmp_path / "run"))
    assert got == [s.tolist() for s in task._decode_sources]
    with pytest.raises(ConfigError, match="holds no finished example cache"):
        Seq2SeqTask.prompt_ids(cfg.task, cfg.data, tok, ["x"], str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="memory_input"):
        resolve(_config(spec, task__memory_input=-0.1))


@pytest.mark.parametrize("tokenizer", ["byte", "sentencepiece"])
def test_batches_from_the_cache_equal_packing_the_whole_set(tmp_path, tokenizer):
    """The task's batches (examples gathered from the memory-mapped cache) are those of packing
    every pair tokenized in memory (the path before the cache); a dataset under
    data.spm_train_chars trains the tokenizer it trained before (all its texts, in order)."""
    from llmjax.data.packed_pairs import PackedPairs
    from llmjax.data.pairs import load_pairs, split_identifiers
    from llmjax.data.tokenizers import train_tokenizer
    from llmjax.tasks import registry

    spec = write_pairs(tmp_path / "data", n=300)
    cfg = resolve(_config(spec, task__split_identifiers=True, data__tokenizer=tokenizer,
                          data__vocab_size=320), num_devices=8)
    task = registry.build(cfg)
    msgs = []
    task.prepare(str(tmp_path / "run"), msgs.append, resuming=False)
    p = load_pairs(spec, val_fraction=cfg.data.val_fraction, log=lambda _: None)
    train_texts = [split_identifiers(s) for s in p.train_sources] + p.train_targets
    tok = train_tokenizer(cfg.data, train_texts)
    assert tok.fingerprint() == task.tokenizer.fingerprint()
    pack = lambda srcs, tgts, **kw: PackedPairs(  # noqa: E731
        tok.encode_batch([split_identifiers(s) for s in srcs]), tok.encode_batch(tgts), source_len=32,
        target_len=24, seed=cfg.train.seed, eos_id=tok.eos_id, pad_id=tok.pad_id, start_id=tok.eos_id, **kw)
    before = {"train": pack(p.train_sources, p.train_targets, batch_size=cfg.train.batch_size, shuffle=True),
              "eval": pack(p.eval_sources, p.eval_targets, batch_size=task.eval_batch_size, shuffle=False)}
    for split, batch_of in (("train", task.train_batch), ("eval", task.eval_batch)):
        for step in sorted({0, 1, before[split].num_batches - 1, before[split].num_batches + 1}):
            want, got = before[split].batch(step), batch_of(step)
            assert want.keys() == got.keys()
            for k in want:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"{split} {step} {k}")
    assert task._references == p.eval_targets[:6] and task._sources == p.eval_sources[:6]
    assert [s.tolist() for s in task._decode_sources] == [
        list(tok.encode(split_identifiers(s))) + [tok.eos_id] for s in p.eval_sources[:6]]
    assert any(m.startswith(f"data {spec}: train ") for m in msgs)
