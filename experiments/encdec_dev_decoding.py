"""Decoding choices for encdec_small made on a dev split, never on the eval split it reports.

The embedded task's split is by file group, sha1(the group's first path) mod 1000 < 1000 *
val_fraction (eval; llmjax.data.pairs.file_groups). Groups with 100 <= h < 200 are train files
at encdec_small's val_fraction 0.1; a run trained with `data.val_fraction=0.2` never sees them,
so they are a dev split (`task.eval_split=dev` now carves the same band in any run). This script decodes the first
--examples dev sources of such a run with every beam length penalty alpha in --alphas, every
length reward in --length_rewards (and every checkpoint in --steps) and prints BLEU and ROUGE
beside the same baselines the run prints (llmjax.tasks.seq2seq.BASELINES: the source copied;
the translation memory's target; the most frequent train target).

  python -m llmjax.main --config=configs/encdec_small.py --workdir=runs/encdec_dev \\
      --config.data.val_fraction=0.2 --config.task.decode_examples=0
  python experiments/encdec_dev_decoding.py --workdir=runs/encdec_dev
"""
from __future__ import annotations

import dataclasses
import os
import time

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", "runs/encdec_dev", "A run trained with data.val_fraction above --dev_from.")
_DEV_FROM = flags.DEFINE_float("dev_from", 0.1, "The reported eval split's val_fraction: its files are never decoded.")
_EXAMPLES = flags.DEFINE_integer("examples", 200, "Dev sources decoded (in the task's sha1 order).")
_ALPHAS = flags.DEFINE_list("alphas", ["0", "0.6", "1", "1.5", "2", "3"], "Length penalties to compare.")
_REWARDS = flags.DEFINE_list("length_rewards", ["0"], "Beam length rewards (per token) to compare.")
_STEPS = flags.DEFINE_list("steps", [], "Checkpoint steps to compare (default: the newest).")
_BEAM = flags.DEFINE_integer("beam_size", 0, "Beam width (0 = the run's task.beam_size).")
_BATCH = flags.DEFINE_integer("batch_size", 50, "Sources per beam-search call.")


def dev_pairs(task, data, dev_from: float) -> tuple[list[str], list[str], list[str], list[str]]:
    """(dev sources, dev targets, train sources, train targets): the run's eval pairs (its task
    and data config) whose files are train files at val_fraction=dev_from, and its train pairs,
    in the task's order."""
    from llmjax.data import sources
    from llmjax.data.pairs import docstring_examples, example_order, file_groups

    dev_to = data.val_fraction
    if task.dataset != "stdlib_docstrings" or dev_to <= dev_from:
        raise SystemExit(f"encdec_dev_decoding: the run must train on stdlib_docstrings with data.val_fraction "
                         f"above --dev_from={dev_from} (it has {task.dataset!r}, {dev_to}): "
                         "retrain it as the module docstring says")
    found = docstring_examples(val_fraction=dev_to)
    group = file_groups(found)
    examples = sorted((e for e in found if not e.dropped), key=example_order)
    dev = [e for e in examples if e.split == "eval" and not sources.is_validation(group[e.path], dev_from)]
    train = [e for e in examples if e.split == "train"]
    return [e.source for e in dev], [e.target for e in dev], [e.source for e in train], [e.target for e in train]


def main(argv: list[str]) -> None:
    del argv
    from llmjax import saved_run
    from llmjax.evaluation.text_scores import text_scores
    from llmjax.sample import load_run
    from llmjax.tasks.seq2seq import BASELINES, baseline_scores, decode_texts

    workdir = _WORKDIR.value
    task_cls, task, data, _ = saved_run.task(workdir)
    if _BEAM.value:
        task = dataclasses.replace(task, beam_size=_BEAM.value)
    sources_, references, train_sources, train_targets = dev_pairs(task, data, _DEV_FROM.value)
    sources_, references = sources_[:_EXAMPLES.value], references[:_EXAMPLES.value]
    b = baseline_scores(sources_, references, train_sources, train_targets)
    rows = [(f"baseline: {what}", {k: b[f"{name}_{k}"] for k in ("bleu", "rouge1", "rouge2", "rougeL")})
            for name, what in BASELINES.items()]

    cfg, tok = saved_run.model_config(workdir), saved_run.load_tokenizer(workdir)
    ids = task_cls.prompt_ids(task, data, tok, sources_, workdir)  # as the eval reads its sources
    print(f"{len(references)} dev sources from {workdir} (files with {_DEV_FROM.value} <= h < "
          f"{data.val_fraction}), beam {task.beam_size}, no_repeat_ngram {task.no_repeat_ngram}")
    for step in [int(s) for s in _STEPS.value] or [None]:
        path = saved_run.checkpoint_path(workdir, step)
        run = load_run(cfg, tok, path)
        for alpha, reward in ((float(a), float(r)) for a in _ALPHAS.value for r in _REWARDS.value):
            t0 = time.time()
            setting = dataclasses.replace(task, alpha=alpha, length_reward=reward)
            out = decode_texts(run.model, run.params, ids, tok, setting, _BATCH.value)
            ratio = sum(len(h.split()) for h in out) / max(sum(len(r.split()) for r in references), 1)
            name = (f"step {os.path.basename(run.path)}, alpha {alpha:g}, reward {reward:g} "
                    f"(words {ratio:.2f} of ref, {time.time() - t0:.0f} s)")
            rows.append((name, text_scores(out, references)))
            print(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1][1].items()), flush=True)
    print("\n| | BLEU | ROUGE-1 | ROUGE-2 | ROUGE-L |\n|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s['bleu']:.2f} | {s['rouge1']:.2f} | {s['rouge2']:.2f} | {s['rougeL']:.2f} |")


if __name__ == "__main__":
    app.run(main)
