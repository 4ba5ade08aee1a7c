"""The data path at scale (issue 28): preparation against the tokenizer's own speed, peak memory
of preparation and training at two corpus sizes, time to the first step, and the loader's cost.

  python experiments/bench_data.py                                  # 0.5 and 2 GB: 20+ minutes on 2 cores
  python experiments/bench_data.py --sizes=0.01 --workers=1,2       # CI-sized

It generates JSON Lines corpora of --sizes GB from the Python standard library's sources (the
embedded corpus's documents, llmjax.data.stdlib_corpus.iter_documents), each document a file's
paragraphs in a shuffled choice under a header naming the copy, so no two are exact duplicates
(deterministic given --seed). Then, each as a subprocess run the way a user runs it:

  limit     the prepared tokenizer's single-core speed (encode_batch, one thread) on a sample of
            the same text, times the cores this process may use: what preparation could reach
  prepare   `python -m llmjax.prepare` with each --workers on the smallest corpus (tokens/s end
            to end, and of the encoding pass from its "data: scan ..., encoding Zs" line), and
            with the most workers on every other size; its peak RSS
  train     `python -m llmjax.main` for --train_steps on each prepared corpus: peak RSS, and
            the seconds from launch to the first train row of metrics.jsonl (the loop's own
            startup_sec, compile included, beside it)
  loader    experiments/bench_step.py --real_data on the largest prepared corpus: tokens/s of
            the step alone and fed by the prepared shards (one after the other, so other load
            on the machine moves it); and, in this process, the milliseconds the host takes
            for a training batch from those shards beside that step's time

Peak RSS is the process tree's (the subprocess and every descendant, summed, sampled every
--poll_s; at least the largest single process's maxrss from wait4): resident pages shared
between processes count once per process, so the figure is an upper bound. It also counts the
page cache mapped around each read of the memory-mapped shards (on kernels with large folios,
up to 2 MB a read: reclaimable, and growing with the distinct pages read, not the corpus), so
training also reports the anonymous part, what the processes themselves hold. Config overrides
(--config.KEY=VALUE) go to every subprocess. Like `python -m llmjax.main`, the script first
re-executes itself with malloc on transparent huge pages (llmjax.allocator; LLMJAX_NO_REEXEC=1
opts out); the subprocesses get the environment it started with, as a user's commands would.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmjax import allocator  # noqa: E402

if __name__ == "__main__":
    allocator.reexec_with_huge_pages()  # before anything large is imported: glibc reads it at start

import psutil  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from llmjax.training.metrics import cpu_name  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gpt_small.py",
                                          "Config to prepare and train (overrides reach every run).")
_SIZES = flags.DEFINE_list("sizes", ["0.5", "2"], "Corpus sizes to generate, GB of JSON Lines (1e9 bytes).")
_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "Preparation workers timed on the smallest corpus; "
                             "the other sizes are prepared with the most.")
_WORK_DIR = flags.DEFINE_string("work_dir", "", "Where corpora and runs go ('' = a new temporary "
                                "directory, removed at the end unless --keep); a given one is kept, "
                                "and the corpora it holds are reused.")
_KEEP = flags.DEFINE_bool("keep", False, "Keep --work_dir (corpora, prepared directories, logs).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated corpora.")
_FILE_MB = flags.DEFINE_integer("file_mb", 64, "Largest generated .jsonl file, MB (a corpus has at least 4).")
_SAMPLE = flags.DEFINE_integer("sample_chars", 8_000_000, "Characters of the corpus the limit is measured on.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 20, "Training steps on each prepared corpus.")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 20, "Eval batches of the training runs' final evaluation.")
_LOADER_STEPS = flags.DEFINE_integer("loader_steps", 20, "bench_step's timed steps (0: no loader row).")
_POLL = flags.DEFINE_float("poll_s", 0.05, "Seconds between samples of a subprocess tree's memory.")
_JSON = flags.DEFINE_string("json", "", "Also write the figures to this JSON file.")

_FILE_MIN = 4  # files a corpus is cut into at least, so every size has units for several workers
_ENCODE_CHARS = 4 << 20  # the limit encodes batches of about this many characters, as preparation does
_GB = 1e9
_RECIPE = "corpus.json"  # beside the .jsonl files (not matched by their glob)


# ---------------------------------------------------------------- the corpora


def _stdlib_paragraphs() -> list[tuple[str, list[str]]]:
    """(relative path, paragraphs) of every document of the embedded stdlib corpus."""
    from llmjax.data.stdlib_corpus import iter_documents
    return [(path, [p for p in text.split("\n\n") if p.strip()]) for path, text in iter_documents()]


def generate(directory: str, size_bytes: int, seed: int, file_bytes: int,
             docs: list[tuple[str, list[str]]]) -> dict:
    """directory/part-NNNNN.jsonl holding about size_bytes of {"text": ...} lines: copy c of
    each stdlib document is a header line and a shuffled choice of at least half its paragraphs."""
    os.makedirs(directory, exist_ok=True)
    n_files = max(_FILE_MIN, math.ceil(size_bytes / file_bytes))
    per_file = size_bytes / n_files
    written = documents = chars = 0
    part, f, in_file = 0, None, 0
    copy = 0
    try:
        while written < size_bytes:
            rng = random.Random(f"{seed}:{copy}")
            for path, paragraphs in docs:
                if written >= size_bytes:
                    break
                if not paragraphs:
                    continue
                k = rng.randint((len(paragraphs) + 1) // 2, len(paragraphs))
                text = f"# copy {copy} of {path}\n" + "\n\n".join(rng.sample(paragraphs, k))
                line = (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode("utf-8")
                if f is None or (in_file >= per_file and part < n_files):
                    if f is not None:
                        f.close()
                    f = open(os.path.join(directory, f"part-{part:05d}.jsonl"), "wb")
                    part, in_file = part + 1, 0
                f.write(line)
                in_file += len(line)
                written += len(line)
                documents += 1
                chars += len(text)
            copy += 1
    finally:
        if f is not None:
            f.close()
    return {"bytes": written, "documents": documents, "chars": chars, "files": part, "copies": copy}


def _made(directory: str, recipe: dict) -> dict | None:
    """The stats of a whole corpus generated before in directory by the same recipe, else None."""
    try:
        with open(os.path.join(directory, _RECIPE)) as f:
            made = json.load(f)
    except (OSError, ValueError):
        return None
    return made["info"] if made.get("recipe") == recipe else None


def _sample_texts(directory: str, max_chars: int) -> list[str]:
    """The corpus's first documents, up to max_chars characters (the limit's sample)."""
    texts, held = [], 0
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".jsonl")):
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            for line in f:
                texts.append(json.loads(line)["text"])
                held += len(texts[-1])
                if held >= max_chars:
                    return texts
    return texts


# ---------------------------------------------------------------- measuring


def _user_env() -> dict:
    """This process's environment as it started, before the huge-page re-exec."""
    env = dict(os.environ)
    if env.pop(allocator._DONE, None) is not None:
        kept = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and t != f"{allocator.TUNABLE}=1"]
        if kept:
            env["GLIBC_TUNABLES"] = ":".join(kept)
        else:
            env.pop("GLIBC_TUNABLES", None)
    return env


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(RSS, anonymous RSS) of proc and its descendants, summed. RSS also counts the page-cache
    pages mapped around each read of a memory-mapped file (on kernels with large folios up to
    2 MB a read, reclaimable at any time); the anonymous part is what the processes hold."""
    total = anon = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            m = p.memory_info()
            total += m.rss
            anon += m.rss - m.shared  # shared = file-backed resident pages (RssFile + RssShmem)
    return total, anon


def run_measured(cmd: list[str], log_path: str, first_row: str | None = None) -> dict:
    """Run cmd to the end: wall seconds, peak RSS of its process tree (bytes) and, given a
    metrics.jsonl path, the seconds from launch to its first train row (and that row)."""
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=ROOT, env=_user_env(), stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(p.pid)  # still ours until reaped below, whatever it does
        peak, peak_anon, first_s, row = 0, 0, None, None
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            rss, anon = _tree_rss(proc)
            peak, peak_anon = max(peak, rss), max(peak_anon, anon)
            if first_row is not None and first_s is None:
                row = _first_train_row(first_row)
                if row is not None:
                    first_s = time.perf_counter() - t0
            time.sleep(_POLL.value)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if p.returncode:
        with open(log_path, errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode}); its log "
                           f"{log_path} ends:\n{tail}")
    if first_row is not None and row is None:  # finished between two samples
        row = _first_train_row(first_row)
        first_s = wall
    return {"wall_s": wall, "peak_rss": max(peak, usage.ru_maxrss * 1024), "peak_anon": peak_anon,
            "first_step_s": first_s,
            "first_row": row}


def _first_train_row(path: str) -> dict | None:
    try:
        with open(path) as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    r = json.loads(line)
                    if r.get("split") == "train":
                        return r
    except OSError:
        pass
    return None


def encode_speed(tok_dir: str, texts: list[str], repeats: int = 3) -> dict:
    """The tokenizer's single-thread speed on texts, the best of repeats passes: chars/s and
    tokens/s (EOS counted per document, as preparation's token counts do), encoded in batches
    of about the size preparation encodes."""
    from llmjax.data.tokenizers import load_tokenizer
    tok = load_tokenizer(tok_dir)
    batches, batch, held = [], [], 0
    for t in texts:
        batch.append(t)
        held += len(t)
        if held >= _ENCODE_CHARS:
            batches.append(batch)
            batch, held = [], 0
    if batch:
        batches.append(batch)
    best = math.inf
    for _ in range(repeats):  # the best pass: other load on the machine only ever slows one down
        tokens, elapsed = 0, 0.0
        for b in batches:
            t0 = time.perf_counter()
            ids = tok.encode_batch(b, num_threads=1) if tok.kind == "sentencepiece" else tok.encode_batch(b)
            elapsed += time.perf_counter() - t0
            tokens += sum(len(x) + 1 for x in ids)
        best = min(best, elapsed)
    elapsed, chars = best, sum(len(t) for t in texts)
    return {"chars_per_s": chars / elapsed, "tokens_per_s": tokens / elapsed, "chars": chars,
            "seconds": elapsed}


def _config_args() -> tuple[str, list[str]]:
    """--config=PATH and the --config.KEY=VALUE overrides this script was given, for its runs."""
    overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
    return f"--config={flags.FLAGS['config'].config_filename}", overrides


_TIMES = re.compile(r"data: scan ([\d.]+)s, tokenizer ([\d.]+)s, encoding ([\d.]+)s")


def prepare(corpus: str, out: str, workers: int, logs: str) -> dict:
    name = os.path.basename(out)
    path, overrides = _config_args()
    shutil.rmtree(out, ignore_errors=True)  # a finished one would not be prepared again
    cmd = [sys.executable, "-m", "llmjax.prepare", path, *overrides, f"--config.data.dataset={corpus}",
           f"--out={out}", f"--workers={workers}"]
    r = run_measured(cmd, os.path.join(logs, f"{name}.log"))
    with open(os.path.join(logs, f"{name}.log")) as f:
        times = _TIMES.findall(f.read())
    if not times:
        raise RuntimeError(f"no 'data: scan Xs, tokenizer Ys, encoding Zs' line in {logs}/{name}.log")
    scan, tok, enc = (float(x) for x in times[-1])
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    s = manifest["stats"]
    tokens = s["train_tokens"] + s["val_tokens"]
    return {**r, "workers": workers, "scan_s": scan, "tokenizer_s": tok, "encode_s": enc,
            "tokens": tokens, "tokens_per_s": tokens / r["wall_s"], "encode_tokens_per_s": tokens / enc,
            "chars_per_token": s["chars_per_token"], "units": s.get("units"),
            "shards": {k: [x["sha1"] for x in v] for k, v in manifest["shards"].items()}}


def train(corpus: str, prepared: str, workdir: str, logs: str) -> dict:
    path, overrides = _config_args()
    shutil.rmtree(workdir, ignore_errors=True)  # a new run, not a resumed one
    cmd = [sys.executable, "-m", "llmjax.main", path,
           f"--config.train.num_steps={_TRAIN_STEPS.value}", f"--config.train.eval_steps={_EVAL_STEPS.value}",
           "--config.train.progress=False", *overrides,
           f"--config.data.dataset={corpus}", f"--config.data.prepared_dir={prepared}", f"--workdir={workdir}"]
    r = run_measured(cmd, os.path.join(logs, f"{os.path.basename(workdir)}.log"),
                     first_row=os.path.join(workdir, "metrics.jsonl"))
    if r["first_row"] is None:
        raise RuntimeError(f"{workdir}/metrics.jsonl has no train row")
    return {**r, "startup_sec": r["first_row"].get("startup_sec")}


_STEP_ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d,]+)\s+\S+\s+.*?([+-][\d.]+)%", re.M)


def loader(corpus: str, prepared: str, batch: int, logs: str) -> dict:
    path, overrides = _config_args()
    cmd = [sys.executable, "experiments/bench_step.py", path, *overrides, f"--config.data.dataset={corpus}",
           f"--config.data.prepared_dir={prepared}", f"--batch_sizes={batch}",
           f"--steps={_LOADER_STEPS.value}", "--real_data"]
    log_path = os.path.join(logs, "bench_step.log")
    run_measured(cmd, log_path)
    with open(log_path) as f:
        rows = _STEP_ROW.findall(f.read())
    if not rows:
        raise RuntimeError(f"no table row with a 'real data' column in {log_path}")
    _, ms, tok_s, slowdown = rows[-1]
    step = float(tok_s.replace(",", ""))
    return {"step_ms": float(ms), "step_tokens_per_s": step,
            "real_tokens_per_s": step / (1 + float(slowdown) / 100), "slowdown": float(slowdown) / 100}


def batch_cost(corpus: str, prepared: str, batches: int = 200) -> float:
    """Milliseconds the host takes for a training batch (the task's train_batch, as the training
    loop calls it) read from the prepared corpus: the loader's cost without the step's noise."""
    from llmjax import experiment
    from llmjax.tasks import registry as tasks

    cfg = _CONFIG.value.copy_and_resolve_references()
    cfg.data.dataset, cfg.data.prepared_dir = corpus, prepared
    task = tasks.build(experiment.resolve(cfg))
    with tempfile.TemporaryDirectory() as workdir:  # the run's own directory: its tokenizer's copy
        task.prepare(workdir, lambda m: None, False)
        t0 = time.perf_counter()
        for step in range(batches):
            task.train_batch(step)
        return 1e3 * (time.perf_counter() - t0) / batches


# ---------------------------------------------------------------- the table


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _rate(n: float) -> str:
    return f"{n / 1e6:.3f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def table(res: dict) -> list[tuple[str, str, str]]:
    """(figure, measured, reference / goal) rows."""
    limit, cores = res["limit"], res["cores"]
    cap = limit["tokens_per_s"] * cores
    rows = [("tokenizer encode, 1 thread", f"{_rate(limit['chars_per_s'])} chars/s, "
             f"{_rate(limit['tokens_per_s'])} tokens/s", "before: 2.6M chars/s (stdlib, one process)"),
            (f"limit: x {cores} cores", f"{_rate(cap)} tokens/s", "-")]
    sizes = res["sizes"]
    small = sizes[0]
    most = max(res["workers"])
    for p in res["prepare"][small]:
        w = p["workers"]
        goal = ">= 85% of the limit" if w == most else "-"
        rows.append((f"prepare {small}, {w} worker{'s' if w > 1 else ''}: end to end",
                     f"{_rate(p['tokens_per_s'])} tokens/s ({100 * p['tokens_per_s'] / cap:.0f}% of limit)", goal))
        rows.append((f"prepare {small}, {w} worker{'s' if w > 1 else ''}: encoding pass",
                     f"{_rate(p['encode_tokens_per_s'])} tokens/s ({100 * p['encode_tokens_per_s'] / cap:.0f}%"
                     f" of limit)", goal))
    if len(res["prepare"][small]) > 1:
        same = len({json.dumps(p["shards"], sort_keys=True) for p in res["prepare"][small]}) == 1
        rows.append((f"prepare {small}: shards of {', '.join(str(p['workers']) for p in res['prepare'][small])}"
                     " workers", "identical" if same else "DIFFER", "identical"))
    peaks = {s: res["prepare"][s][-1]["peak_rss"] for s in sizes}
    for s in sizes:
        flat = f" ({100 * (peaks[s] / peaks[small] - 1):+.0f}% vs {small})" if s != small else ""
        rows.append((f"prepare {s}, {most} workers: peak RSS", _gb(peaks[s]) + flat,
                     "< 1.5 GB" + (f", within 10% of {small}" if s != small else "")))
    tr = res["train"]
    for s in sizes:
        flat = f" ({100 * (tr[s]['peak_rss'] / tr[small]['peak_rss'] - 1):+.0f}% vs {small})" if s != small else ""
        rows.append((f"train {s}, {_TRAIN_STEPS.value} steps: peak RSS", _gb(tr[s]["peak_rss"]) + flat,
                     "< 1.5 GB, flat; before: 5.8 GB at 0.25 GB, 21.9 GB at 1 GB"))
    for s in sizes:
        flat = f" ({100 * (tr[s]['peak_anon'] / tr[small]['peak_anon'] - 1):+.0f}% vs {small})" if s != small else ""
        rows.append((f"train {s}: peak anonymous RSS (without mapped page cache)",
                     _gb(tr[s]["peak_anon"]) + flat, "flat"))
    for s in sizes:
        st = tr[s]["startup_sec"]
        rows.append((f"train {s}: launch to first step", f"{tr[s]['first_step_s']:.1f} s"
                     + (f" (loop's startup_sec {st:.1f} s)" if st is not None else ""),
                     "seconds, independent of size" + ("; before: 7 min at 1 GB" if s == sizes[-1] else "")))
    if res.get("loader"):
        ld = res["loader"]
        change = ld["real_tokens_per_s"] / ld["step_tokens_per_s"] - 1
        rows.append((f"loader, {sizes[-1]}: step alone / fed by the shards",
                     f"{_rate(ld['step_tokens_per_s'])} / {_rate(ld['real_tokens_per_s'])} tokens/s "
                     f"({100 * change:+.1f}%)", "within 2% (bench_step --real_data)"))
        rows.append((f"loader, {sizes[-1]}: a training batch on the host",
                     f"{ld['batch_ms']:.2f} ms ({100 * ld['batch_ms'] / ld['step_ms']:.2f}% of a "
                     f"{ld['step_ms']:.0f} ms step)", "within 2%"))
    return rows


def _print_table(res: dict) -> None:
    rows = table(res)
    w0 = max(len("figure"), *(len(r[0]) for r in rows))
    w1 = max(len("measured"), *(len(r[1]) for r in rows))
    print(f"\n{'figure':<{w0}}  {'measured':<{w1}}  reference / goal")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


# ---------------------------------------------------------------- main


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # as llmjax.main: jax's and tfds's INFO lines are not figures
    sizes = sorted({float(s) for s in _SIZES.value})
    workers = sorted({int(w) for w in _WORKERS.value})
    if not sizes or min(sizes) <= 0 or not workers or min(workers) < 1:
        raise app.UsageError("--sizes must be positive GB and --workers positive counts")
    work = _WORK_DIR.value or tempfile.mkdtemp(prefix="llmjax-bench-data-")
    os.makedirs(work, exist_ok=True)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    names = [f"{s:g} GB" for s in sizes]
    res: dict = {"machine": f"{cpu_name()}, {cores} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
                 "date": datetime.date.today().isoformat(), "cores": cores, "sizes": names,
                 "workers": workers, "corpora": {}, "prepare": {}, "train": {}}
    print(f"bench_data: {res['machine']}; work in {work}", flush=True)
    try:
        t = time.perf_counter()
        docs = _stdlib_paragraphs()
        corpora, dirs = {}, {}
        for s, name in zip(sizes, names):
            directory = os.path.join(work, f"corpus-{s:g}GB")
            recipe = {"bytes": int(s * _GB), "seed": _SEED.value, "file_bytes": _FILE_MB.value * 10**6}
            info = _made(directory, recipe)  # --work_dir: a corpus generated before is reused
            if info is None:
                shutil.rmtree(directory, ignore_errors=True)
                info = generate(directory, recipe["bytes"], recipe["seed"], recipe["file_bytes"], docs)
                with open(os.path.join(directory, _RECIPE), "w") as f:  # written last: the corpus is whole
                    json.dump({"recipe": recipe, "info": info}, f)
            res["corpora"][name] = info
            print(f"corpus {name}: {info['files']} files, {info['documents']:,} documents, "
                      f"{info['chars'] / 1e6:,.0f}M chars ({info['copies']} varied copies of the stdlib)",
                      flush=True)
            corpora[name], dirs[name] = f"jsonl:{directory}/*.jsonl", directory
        print(f"generated in {time.perf_counter() - t:.0f}s (not part of the figures)", flush=True)
        del docs

        small = names[0]
        res["prepare"][small] = []
        for w in workers:
            out = os.path.join(work, f"prepared-{sizes[0]:g}GB-w{w}")
            res["prepare"][small].append(prepare(corpora[small], out, w, logs))
            _say("prepare", small, res["prepare"][small][-1])
        for s, name in zip(sizes[1:], names[1:]):
            out = os.path.join(work, f"prepared-{s:g}GB-w{workers[-1]}")
            res["prepare"][name] = [prepare(corpora[name], out, workers[-1], logs)]
            _say("prepare", name, res["prepare"][name][-1])
        for w in workers[:-1]:  # compared with the most workers' shards already
            shutil.rmtree(os.path.join(work, f"prepared-{sizes[0]:g}GB-w{w}"), ignore_errors=True)
        prepared = {name: os.path.join(work, f"prepared-{s:g}GB-w{workers[-1]}") for s, name in zip(sizes, names)}

        res["limit"] = encode_speed(os.path.join(prepared[small], "tokenizer"),
                                    _sample_texts(dirs[small], _SAMPLE.value))
        print(f"limit: {res['limit']['tokens_per_s']:,.0f} tokens/s on one core "
              f"({res['limit']['chars'] / 1e6:.1f}M chars in {res['limit']['seconds']:.1f}s)", flush=True)

        for name in names:
            res["train"][name] = train(corpora[name], prepared[name],
                                       os.path.join(work, f"run-{name.replace(' ', '')}"), logs)
            _say("train", name, res["train"][name])
        if _LOADER_STEPS.value:
            res["loader"] = loader(corpora[names[-1]], prepared[names[-1]], _CONFIG.value.train.batch_size, logs)
            res["loader"]["batch_ms"] = batch_cost(corpora[names[-1]], prepared[names[-1]])
    finally:
        if _KEEP.value or _WORK_DIR.value:
            print(f"kept: {work} (corpora, prepared directories, runs, logs/)", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ndata at scale: {res['machine']}, {res['date']}")
    _print_table(res)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({**res, "table": table(res)}, f, indent=1)


def _say(what: str, name: str, r: dict) -> None:
    if "tokens" in r:
        what = f"{what} {name} with {r['workers']} workers"
        extra = f", {r['tokens']:,} tokens at {r['tokens_per_s']:,.0f}/s"
    else:
        what, extra = f"{what} {name}", (f" ({_gb(r['peak_anon'])} anonymous), first step after "
                                         f"{r['first_step_s']:.1f}s")
    print(f"{what}: {r['wall_s']:.1f}s, peak RSS {_gb(r['peak_rss'])}{extra}", flush=True)


if __name__ == "__main__":
    app.run(main)
