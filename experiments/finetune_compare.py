"""Pretrained against from scratch: fine-tune each family on the embedded classification task
with and without its pretraining checkpoint, over several seeds, and print mean and spread.

Each run is the main job (`python -m llmjax.main`) with the family's fine-tuning config, so the
figures are the ones a user gets. Pretrain first (configs/bert_small.py, configs/gpt_small.py;
their default workdirs runs/bert_small and runs/gpt_small), then:

  python experiments/finetune_compare.py --seeds=0,1,2
  python experiments/finetune_compare.py --families=bert --seeds=0 --num_steps=20   # a quick look
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from absl import app, flags

from llmjax.training.metrics import cpu_name

_FAMILIES = flags.DEFINE_list("families", ["bert", "gpt"], "Families to compare.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Fine-tuning seeds (head init, dropout, order).")
_STEPS = flags.DEFINE_integer("num_steps", 0, "Override the configs' train.num_steps (0 = keep).")
_OUT = flags.DEFINE_string("out", "runs/finetune_compare", "Where the runs' workdirs go (replaced).")

CONFIGS = {"bert": ("configs/bert_small_classify.py", "runs/bert_small"),
           "gpt": ("configs/gpt_small_classify.py", "runs/gpt_small")}


def _run(config: str, workdir: str, seed: str, init_from: str) -> dict:
    cmd = [sys.executable, "-m", "llmjax.main", f"--config={config}", f"--workdir={workdir}",
           f"--config.train.seed={seed}", f"--config.init_from={init_from}",
           "--config.train.progress=False"]
    if _STEPS.value:
        cmd.append(f"--config.train.num_steps={_STEPS.value}")
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    with open(os.path.join(workdir, "results.json")) as f:
        return {**json.load(f), "seconds": time.time() - t0}


def _stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {spread:.3f}"


def main(argv):
    del argv
    rows = []
    for family in _FAMILIES.value:
        config, pretrained = CONFIGS[family]
        if not os.path.isdir(os.path.join(pretrained, "checkpoints")):
            raise SystemExit(f"no pretraining run in {pretrained}: run "
                             f"python -m llmjax.main --config=configs/{family}_small.py first")
        for start, init_from in (("pretrained", pretrained), ("scratch", "")):
            results = []
            for seed in _SEEDS.value:
                workdir = os.path.join(_OUT.value, f"{family}_{start}_seed{seed}")
                shutil.rmtree(workdir, ignore_errors=True)  # this script's own runs: start afresh
                r = _run(config, workdir, seed, init_from)
                print(f"{family} {start} seed {seed}: accuracy {r['accuracy']:.4f}, macro-F1 "
                      f"{r['f1_macro']:.4f} ({r['seconds']:.0f}s)", flush=True)
                results.append(r)
            rows.append((family, start, results))

    print(f"\nembedded task (stdlib_packages), {len(_SEEDS.value)} seeds, on {cpu_name()}:")
    print(f"{'family':<7} {'start':<11} {'accuracy':>15} {'macro-F1':>15} {'majority acc':>13} {'s/run':>6}")
    for family, start, results in rows:
        print(f"{family:<7} {start:<11} {_stats([r['accuracy'] for r in results]):>15} "
              f"{_stats([r['f1_macro'] for r in results]):>15} "
              f"{results[0]['majority_accuracy']:>13.3f} "
              f"{statistics.fmean(r['seconds'] for r in results):>6.0f}")


if __name__ == "__main__":
    app.run(main)
