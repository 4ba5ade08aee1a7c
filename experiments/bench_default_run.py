"""The default run's speed as a user gets it, beside the step benchmark, in one sitting.

Runs `python -m llmjax.main --config=configs/gpt_small.py` (the README's main command, with
evaluation, checkpoints and samples pushed past the end so only training is timed) twice per
allocator setting, for --short and --short + --steps steps: the difference gives minor page
faults per training step (from the children's rusage) free of start-up; tokens/s is the median
of the longer run's train rows. Allocator settings: the default (llmjax.main re-executes itself
with glibc.malloc.hugetlb=1) and LLMJAX_NO_REEXEC=1 (glibc's default malloc). Then
experiments/bench_step.py times the same model's step alone (synthetic tokens and the real input
pipeline). Takes about 10 minutes on a 2-core CPU; run it with nothing else running.

  python experiments/bench_default_run.py [--steps=200] [--short=20]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile

from llmjax.training.metrics import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = ["--config.train.eval_every=100000", "--config.train.eval_steps=1",
         "--config.checkpoint.every_steps=100000", "--config.train.num_samples=0",
         "--config.train.progress=False", "--config.train.log_every=10"]
MODES = (("huge pages (default)", {}), ("glibc default (LLMJAX_NO_REEXEC=1)", {"LLMJAX_NO_REEXEC": "1"}))


def _run(steps: int, extra_env: dict, workdir: str) -> tuple[int, list[float]]:
    """(minor page faults of the whole command, tokens/s of its train rows)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LLMJAX_REEXECED")}
    env.update(extra_env, JAX_PLATFORMS="cpu")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    subprocess.run([sys.executable, "-m", "llmjax.main", "--config=configs/gpt_small.py", *QUIET,
                    f"--config.train.num_steps={steps}", f"--workdir={workdir}"],
                   cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    return faults, [r["tokens_per_sec"] for r in rows if "tokens_per_sec" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--short", type=int, default=20)
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in MODES:
            f_short, _ = _run(args.short, env, os.path.join(tmp, f"{len(rows)}s"))
            f_long, tps = _run(args.short + args.steps, env, os.path.join(tmp, f"{len(rows)}l"))
            rows.append((name, statistics.median(tps), (f_long - f_short) / args.steps))
            print(f"  {name}: {rows[-1][1]:,.0f} tokens/s, {rows[-1][2]:,.0f} faults/step", flush=True)
    bench = subprocess.run([sys.executable, "experiments/bench_step.py", "--config=configs/gpt_small.py",
                            "--batch_sizes=16", "--steps=30", "--warmup=3", "--real_data"],
                           cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True,
                           capture_output=True, text=True).stdout
    line = re.search(r"^\s+16\s+([\d.]+)\s+([\d,]+)\s+\S+\s+.*?([+-][\d.]+)%", bench, re.M)
    print(f"\ngpt_small (4 layers, 256 wide, seq 128, batch 16), {args.steps} training steps per figure")
    print(f"{'run':<44} {'tokens/s':>10} {'minor faults/step':>18}")
    for name, tps, faults in rows:
        print(f"{'python -m llmjax.main, ' + name:<44} {tps:>10,.0f} {faults:>18,.0f}")
    if line:
        ms, tok, real = line.groups()
        print(f"{'experiments/bench_step.py (synthetic tokens)':<44} {tok:>10} {'-':>18}")
        print(f"{'  ... with the real input pipeline':<44} {real + '%':>10}")
    print("(reference: the main job should match bench_step.py within the real-pipeline overhead)")


if __name__ == "__main__":
    main()
