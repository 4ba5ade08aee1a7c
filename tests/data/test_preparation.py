"""Parallel, resumable preparation: duplicates, the cap, the tokenizer's sample, kills, workers."""
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from llmjax.config import DataConfig, UserError
from llmjax.data import pipeline, preparation, sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _scan(digests, chars, val=None):
    hashes = np.frombuffer(b"".join(d.ljust(16, b"\0") for d in digests), np.uint64).reshape(-1, 2)
    return {"hashes": hashes, "chars": np.asarray(chars, np.int64),
            "val": np.zeros(len(chars), bool) if val is None else np.asarray(val, bool)}


def test_duplicates_keep_their_first_occurrence_across_units():
    scans = [_scan([b"a", b"b", b"a"], [1, 2, 3]), _scan([b"c", b"b"], [4, 5]), _scan([b"a"], [6])]
    masks, stats = preparation.keep_masks(scans, max_train_chars=0)
    assert [m.tolist() for m, _ in masks] == [[True, True, False], [True, False], [False]]
    assert [cut for _, cut in masks] == [None, None, None]
    assert stats == {"duplicates_dropped": 3, "train_capped": False}


def test_the_cap_counts_train_characters_in_corpus_order_and_keeps_val():
    scans = [_scan([b"a", b"b"], [40, 50], val=[False, True]), _scan([b"c", b"d", b"e"], [30, 10, 5])]
    masks, stats = preparation.keep_masks(scans, max_train_chars=60)
    assert [m.tolist() for m, _ in masks] == [[True, True], [True, False, False]]
    assert [cut for _, cut in masks] == [None, (0, 20)]  # 40 + 20 of the next: exactly the cap
    assert stats["train_capped"]


def _jsonl_corpus(directory, files=6, docs=150, seed=0):
    """JSON Lines of stdlib-like text with some exact duplicates (within and across files)."""
    rng = np.random.default_rng(seed)
    words = "def class return import self value lambda yield print for while if else".split()
    directory.mkdir(parents=True, exist_ok=True)
    texts = [" ".join(rng.choice(words, int(rng.integers(20, 200)))) + "\n" for _ in range(files * docs)]
    for f in range(files):
        chunk = texts[f * docs:(f + 1) * docs] + texts[:3]  # the first three repeat in every file
        with open(directory / f"part-{f}.jsonl", "w") as out:
            out.writelines(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(chunk))
    return f"jsonl:{directory}/*.jsonl"


def _build(spec, directory, workers=1, **kw):
    cfg = DataConfig(**{"dataset": spec, "tokenizer": "sentencepiece", "vocab_size": 320,
                        "spm_train_chars": 20_000, "val_fraction": 0.1, **kw})
    key = pipeline.source_key(cfg)
    return preparation.build(cfg, str(directory), key, lambda t: pipeline.fingerprint(key, t),
                             log=lambda m: None, workers=workers)


def _summary(manifest):
    return ([(s["tokens"], s["sha1"]) for split in ("train", "val") for s in manifest["shards"][split]],
            manifest["fingerprint"], manifest["unigram_loss"])


def test_two_workers_prepare_exactly_what_one_does(tmp_path):
    spec = _jsonl_corpus(tmp_path / "corpus")
    one = _build(spec, tmp_path / "one", workers=1)
    two = _build(spec, tmp_path / "two", workers=2)
    assert _summary(one) == _summary(two)
    s = one["stats"]
    assert s["duplicates_dropped"] == 3 * 6 and s["units"] == 6  # file 0 repeats its own three too
    assert s["train_documents"] + s["val_documents"] == 6 * 150 and s["val_documents"] > 50


def test_the_tokenizer_sample_and_the_tokens_do_not_depend_on_the_units(tmp_path, monkeypatch):
    """The tokenizer trains on the documents of smallest hash (a uniform random sample, not a
    prefix), merged over units: cut the corpus into 6 units or into 60, the same tokenizer and
    the same tokens come out (shards differ only in where they are cut)."""
    spec = _jsonl_corpus(tmp_path / "corpus")
    whole = _build(spec, tmp_path / "whole")
    list_units = sources.list_units
    monkeypatch.setattr(sources, "list_units", lambda cfg: list_units(cfg, target_bytes=8 << 10))
    cut = _build(spec, tmp_path / "cut")
    assert cut["stats"]["units"] > 30 and cut["fingerprint"] == whole["fingerprint"]
    for split in ("train", "val"):
        streams = [np.fromfile(tmp_path / d / "tokens" / f"{split}-{{:06d}}.bin".format(i), np.uint16)
                   for d, m in (("whole", whole), ("cut", cut))
                   for i in range(m["stats"]["units"])]
        n = whole["stats"]["units"]
        np.testing.assert_array_equal(np.concatenate(streams[:n]), np.concatenate(streams[n:]))


def test_a_preparation_killed_mid_encoding_resumes_to_the_same_corpus(tmp_path):
    """kill -9 while units are being encoded: no manifest, so nothing is served; the same
    command finishes the rest (the finished units are not encoded again) and the corpus equals
    an uninterrupted preparation's."""
    spec = _jsonl_corpus(tmp_path / "corpus", files=12, docs=400)
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "llmjax.prepare", "--config=configs/gpt_small.py", f"--out={out}",
            "--workers=1", f"--config.data.dataset={spec}", "--config.data.vocab_size=320",
            "--config.data.spm_train_chars=20000", "--config.data.val_fraction=0.1"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "work" / "done-000002.json").exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.005)
    p.kill()
    p.wait()
    assert not (out / "manifest.json").exists()
    finished = {n: os.stat(out / "work" / n).st_mtime_ns for n in os.listdir(out / "work")
                if n.startswith("done-")}
    assert 3 <= len(finished) < 12
    shards = {n: os.stat(out / "tokens" / n.replace("done-", "train-").replace(".json", ".bin")).st_mtime_ns
              for n in finished}
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = json.loads((out / "manifest.json").read_text())
    whole = _build(spec, tmp_path / "whole")
    assert _summary(resumed) == _summary(whole)
    assert not any(".tmp" in n for n in os.listdir(out / "tokens"))  # the kill's leftovers went
    assert shards == {n: os.stat(out / "tokens" / n.replace("done-", "train-").replace(".json", ".bin"))
                      .st_mtime_ns for n in finished}  # finished units were not encoded again




def test_a_worker_that_dies_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch):
    spec = _jsonl_corpus(tmp_path / "corpus", files=4, docs=40)
    real = preparation.Workers.imap

    def dying(self, fn, jobs):
        if fn is preparation.encode_unit:
            raise concurrent.futures.process.BrokenProcessPool("a child process terminated abruptly")
        return real(self, fn, jobs)

    monkeypatch.setattr(preparation.Workers, "imap", dying)
    with pytest.raises(UserError, match="a preparation worker died.*run the same command again") as e:
        _build(spec, tmp_path / "prep", workers=2)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(preparation.Workers, "imap", real)
    assert _build(spec, tmp_path / "prep", workers=2)["stats"]["units"] == 4


def test_a_document_repeated_in_a_unit_fills_the_sample_once(tmp_path, monkeypatch):
    """A repeated document with a small hash must not crowd the others out of a unit's sample
    (copies counted against the budget would leave a sample of one document)."""
    words = [f"w{i} " * 30 for i in range(300)]
    smallest = min(words, key=lambda t: int.from_bytes(preparation.content_hash(t + "\n")[:8], "little"))
    docs = words + [smallest] * 200
    (tmp_path / "c").mkdir()
    with open(tmp_path / "c" / "a.jsonl", "w") as f:
        f.writelines(json.dumps({"text": t + "\n"}) + "\n" for t in docs)
    cfg = DataConfig(dataset=f"jsonl:{tmp_path}/c/*.jsonl", tokenizer="byte", val_fraction=0.01,
                     spm_train_chars=2000)
    unit = sources.list_units(cfg)[0]
    (tmp_path / "prep" / "work").mkdir(parents=True)
    preparation.scan_unit(unit, cfg, str(tmp_path / "prep"), sample=True)
    sample = preparation.merged_sample(str(tmp_path / "prep"), [unit], 2000)
    assert sample.count(smallest + "\n") == 1 and sum(map(len, sample)) >= 2000


def test_merging_the_samples_holds_one_unit_at_a_time(tmp_path):
    """Each unit's sample is up to the budget: holding all of them at once grew with the corpus."""
    import tracemalloc
    budget, units = 50_000, []
    (tmp_path / "work").mkdir()
    rng = np.random.default_rng(0)
    for u in range(40):
        picked = sorted([int(p), f"{u}-{i} " + "x" * 1000] for i, p in enumerate(rng.integers(0, 2**62, 50)))
        (tmp_path / "work" / f"sample-{u:06d}.json").write_text(json.dumps(picked))
        units.append(type("U", (), {"index": u})())
    tracemalloc.start()
    sample = preparation.merged_sample(str(tmp_path), units, budget)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert budget <= sum(map(len, sample)) < budget + 1100
    assert peak < 6 * budget * 2, peak  # all 40 units' samples would be 40 budgets
