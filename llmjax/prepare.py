"""Entry point: `python -m llmjax.prepare --config=configs/gpt_small.py --out=DIR` prepares a
config's corpus (its tokenizer and token shards) once, in parallel, for any number of runs and
sweeps: they read it with `--config.data.prepared_dir=DIR`. Run it on a CPU box, or on every
host of a pod with a shared file system (`--shard=I/N` on host I of N) to split the work. A
stopped preparation resumes where it was when the same command runs again.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from llmjax import config as config_lib
from llmjax.cli import CONFIG, die, parse

_OUT = flags.DEFINE_string("out", None, "Directory to prepare into (default: the config's "
                           "data.prepared_dir).")
_SHARD = flags.DEFINE_string("shard", "0/1", "I/N: this machine's part, when N machines share the "
                             "directory (each runs the same command with its own I).")
_WORKERS = flags.DEFINE_integer("workers", 0, "Worker processes (0: config.data.num_workers, "
                                "whose 0 is one per core).")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        die(f"--shard={text!r} must be I/N, for example --shard=0/4 on the first of 4 machines")
    if not 0 <= i < n:
        die(f"--shard={text!r}: I must be in 0..N-1 (N={n})")
    return i, n


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        die(f"unexpected arguments {argv[1:]}: overrides look like --config.data.dataset=...")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.WARNING)  # tfds narrates every read at INFO
    from llmjax import experiment
    from llmjax.data import pipeline, preparation, token_cache

    shard = _shard(_SHARD.value)
    try:
        run = experiment.resolve(CONFIG.value)
    except config_lib.ConfigError as e:
        die(str(e))
    data = run.data
    out = _OUT.value or data.prepared_dir
    if not out:
        die("no directory given: pass --out=DIR (then train with --config.data.prepared_dir=DIR)")
    out = os.path.abspath(os.path.expanduser(out))
    key = pipeline.source_key(data)
    try:
        done = token_cache.read_manifest(out)
        if done is not None:
            print(f"{out} is already prepared ({done['stats']['train_tokens']:,} train tokens); "
                  f"train with --config.data.prepared_dir={out}")
            return
        preparation.build(data, out, key, lambda t: pipeline.fingerprint(key, t),
                          log=lambda m: print(m, flush=True),
                          workers=_WORKERS.value or data.num_workers, shard=shard)
    except (ValueError, config_lib.UserError) as e:
        die(str(e))
    if shard[0] == 0:
        print(f"prepared: train with --config.data.prepared_dir={out}")


def run() -> None:
    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    sys.exit(run())
