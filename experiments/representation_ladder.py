"""The representation ladder: one road from counted words to pretrained Transformers, on the
embedded classification task (stdlib_packages) and the token-labelling task (stdlib_roles),
the same splits for every rung, several seeds.

Rungs: the majority baseline (classify: the majority class; tag: each word's most frequent
train tag), bag of words + logistic regression, TF-IDF + LR, Word2Vec vectors + LR (classify:
the text's mean vector; tag: the window's vectors), an LSTM from scratch, GPT from scratch,
GPT pretrained then fine-tuned, BERT pretrained then fine-tuned. Every run is the project's own
command (`python -m llmjax.main` or `python -m llmjax.baseline`) with a shipped config, so the
figures are the ones a user gets. The networks of a task share one shape per family (GPT from
scratch is gpt_small's shape, as the pretrained one) and one number of fine-tuning steps.

  python experiments/representation_ladder.py                     # everything, seeds 0,1,2
  python experiments/representation_ladder.py --tasks=classify --seeds=0 --rungs=tfidf,gpt_pretrained

The pretraining runs are the shipped configs/gpt_small.py, bert_small.py and word2vec_stdlib.py
with config.data.holdout naming both tasks: their eval files are not in the corpus's train split
(the tasks are cut from the same standard library). They go to OUT/pretrain/NAME; each
fine-tuning or baseline run to OUT/TASK/RUNG/seedN (fit for a regression). Finished runs are
reused and an unfinished pretraining run resumes, so a stopped ladder continues where it
stopped (--fresh reruns the fine-tuning and baseline runs). The logistic regressions are
deterministic (L-BFGS): they run once and show no spread. Prints one table per task; writes
OUT/ladder.json (every run's figures) and the plot (--plot).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from absl import app, flags

from llmjax.training.metrics import cpu_name

TASKS = ("classify", "tag")
# Each task's metrics as results.json names them (the first is the plot's) and the results.json
# key of the majority rung's figure for each.
METRICS = {"classify": ("accuracy", "f1_macro"), "tag": ("span_f1", "accuracy")}
MAJORITY = {"classify": {"accuracy": "majority_accuracy", "f1_macro": "majority_f1_macro"},
            "tag": {"span_f1": "baseline_span_f1", "accuracy": "baseline_accuracy"}}

# The pretraining runs (OUT/pretrain/NAME): the shipped configs, with both tasks' eval files left
# out of the corpus's train split (llmjax.data.holdout: the tasks are cut from the same standard
# library, so a model pretrained on all of it would have read the texts it is scored on).
HOLDOUT = "--config.data.holdout=stdlib_packages,stdlib_roles"
PRETRAIN = {"gpt": "configs/gpt_small.py", "bert": "configs/bert_small.py",
            "word2vec": "configs/word2vec_stdlib.py"}
# The tag configs ship a 2-layer rotary model; the ladder tags with the pretrained models' shape.
GPT_SHAPE = ("--config.model.position=learned", "--config.model.num_layers=4",
             "--config.model.d_model=256", "--config.model.mlp_dim=1024", "--config.optim.lr=1e-3")
# A rung's arguments name the pretraining runs by these fields, filled in with OUT's paths.
EMBEDDINGS = "--config.features.embeddings={word2vec}/embeddings.npy"


@dataclasses.dataclass(frozen=True)
class Rung:
    name: str  # the table's row
    entry: str  # llmjax.main (a network, seeded) | llmjax.baseline (deterministic) | "" (read off another rung)
    configs: dict[str, tuple[str, ...]]  # task -> the config and its overrides
    pretrain: str = ""  # the PRETRAIN run it starts from or reads

    @property
    def seeded(self) -> bool:
        return self.entry == "llmjax.main"


RUNGS = {
    "majority": Rung("majority (class / word's most frequent tag)", "", {}),
    "bow": Rung("bag of words + LR", "llmjax.baseline", {
        "classify": ("configs/bow_classify.py",),
        "tag": ("configs/tfidf_tag.py", "--config.features.kind=bow")}),
    "tfidf": Rung("TF-IDF + LR", "llmjax.baseline", {
        "classify": ("configs/tfidf_classify.py",),
        "tag": ("configs/tfidf_tag.py",)}),
    "word2vec": Rung("Word2Vec vectors + LR", "llmjax.baseline", {
        "classify": ("configs/tfidf_classify.py", "--config.features.kind=embedding", EMBEDDINGS),
        "tag": ("configs/tfidf_tag.py", "--config.features.kind=embedding", EMBEDDINGS)},
        pretrain="word2vec"),
    "lstm": Rung("LSTM from scratch", "llmjax.main", {
        "classify": ("configs/lstm_small_classify.py",),
        "tag": ("configs/lstm_small_tag.py",)}),
    "gpt_scratch": Rung("GPT from scratch", "llmjax.main", {
        "classify": ("configs/gpt_small_classify.py", "--config.init_from="),
        "tag": ("configs/gpt_small_tag.py", *GPT_SHAPE)}),
    "gpt_pretrained": Rung("GPT pretrained, fine-tuned", "llmjax.main", {
        "classify": ("configs/gpt_small_classify.py", "--config.init_from={gpt}"),
        "tag": ("configs/gpt_small_tag.py", *GPT_SHAPE, "--config.init_from={gpt}")},
        pretrain="gpt"),
    "bert_pretrained": Rung("BERT pretrained, fine-tuned", "llmjax.main", {
        "classify": ("configs/bert_small_classify.py", "--config.init_from={bert}"),
        "tag": ("configs/bert_small_tag.py", *GPT_SHAPE, "--config.init_from={bert}")},
        pretrain="bert"),
}

_TASKS = flags.DEFINE_list("tasks", list(TASKS), f"Tasks, of {', '.join(TASKS)}.")
_RUNGS = flags.DEFINE_list("rungs", list(RUNGS), f"Rungs, of {', '.join(RUNGS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the networks' fine-tuning (head init, dropout, order).")
_OUT = flags.DEFINE_string("out", "runs/ladder", "Where the fine-tuning and baseline runs go.")
_PLOT = flags.DEFINE_string("plot", "experiments/representation_ladder.png", "The plot ('' = none).")
_FRESH = flags.DEFINE_bool("fresh", False, "Rerun this ladder's finished runs (the pretraining runs are kept).")


def pretrain_dir(name: str) -> str:
    return os.path.join(_OUT.value, "pretrain", name)


def _command(entry: str, config: tuple[str, ...], workdir: str, seed: str | None) -> list[str]:
    paths = {name: pretrain_dir(name) for name in PRETRAIN}
    cmd = [sys.executable, "-m", entry, f"--config={config[0]}", f"--workdir={workdir}",
           *(arg.format(**paths) for arg in config[1:])]
    if entry == "llmjax.main":
        cmd.append("--config.train.progress=False")
    if seed is not None:
        cmd.append(f"--config.train.seed={seed}")
    return cmd


def _run(cmd: list[str], workdir: str) -> dict:
    """Run cmd to completion and record its wall seconds beside its results (ladder.json); its
    record. A failure stops the ladder with the run's tail (finished runs stay: the same command
    continues)."""
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"{' '.join(cmd)} failed in {workdir}:\n" + "\n".join(tail))
    with open(os.path.join(workdir, "ladder.json"), "w") as f:
        json.dump({"seconds": time.time() - t0, "command": " ".join(cmd[1:])}, f)
    return _finished(workdir)


def _finished(workdir: str) -> dict | None:
    """The run's results.json and the ladder's own record of it, or None when not both there."""
    try:
        with open(os.path.join(workdir, "results.json")) as f:
            results = json.load(f)
        with open(os.path.join(workdir, "ladder.json")) as f:
            return {**results, **json.load(f)}
    except (OSError, json.JSONDecodeError):
        return None


def pretrain(name: str) -> dict:
    """The pretraining run's results (params, tokens_seen), run (or resumed) first if needed."""
    workdir = pretrain_dir(name)
    record = _finished(workdir)
    if record is None:
        print(f"pretraining {name}: {PRETRAIN[name]} -> {workdir}", flush=True)
        record = _run(_command("llmjax.main", (PRETRAIN[name], HOLDOUT), workdir, None), workdir)
    return record


def fine_tune(task: str, key: str, seed: str | None) -> dict:
    """One rung's run on one task (seed None: a deterministic baseline), reused when finished."""
    rung = RUNGS[key]
    workdir = os.path.join(_OUT.value, task, key, f"seed{seed}" if seed is not None else "fit")
    record = None if _FRESH.value else _finished(workdir)
    if record is None:
        shutil.rmtree(workdir, ignore_errors=True)  # this ladder's own unfinished run: start afresh
        record = _run(_command(rung.entry, rung.configs[task], workdir, seed), workdir)
    metric = METRICS[task][0]
    print(f"{task} {key} {'seed ' + seed if seed is not None else 'fit'}: {metric} "
          f"{record[metric]:.4f} ({record['seconds']:.0f}s)", flush=True)
    return record


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def rows_for(task: str, runs: dict[str, list[dict]], pretrained: dict[str, dict]) -> list[dict]:
    """One table row per rung that ran: metrics' mean and spread, params, pretraining tokens,
    fine-tuning steps and mean seconds a run."""
    rows = []
    for key, records in runs.items():
        rung = RUNGS[key]
        if key == "majority":
            source = next((r for k, rs in runs.items() if RUNGS[k].entry == "llmjax.baseline" for r in rs), None)
            if source is None:
                continue
            values = {m: [source[MAJORITY[task][m]]] for m in METRICS[task]}
            row = {"params": 0, "steps": "", "seconds": None}
        else:
            values = {m: [r[m] for r in records] for m in METRICS[task]}
            row = {"params": records[0].get("params"),
                   "steps": (f"{records[0]['step']} L-BFGS" if not rung.seeded else str(records[0]["step"])),
                   "seconds": statistics.fmean(r["seconds"] for r in records)}
        pre = pretrained.get(rung.pretrain)
        row.update(key=key, name=rung.name, seeds=len(next(iter(values.values()))),
                   pretrain_tokens=pre.get("tokens_seen") if pre else 0,
                   **{m: mean_spread(v) for m, v in values.items()}, values=values)
        rows.append(row)
    return rows


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    if n == 0:
        return "0"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def table(task: str, rows: list[dict]) -> str:
    """The task's rows as a Markdown table."""
    m1, m2 = METRICS[task]
    lines = [f"| rung | {m1} | {m2} | seeds | params | pretraining tokens | fine-tuning steps | s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seconds = f"{r['seconds']:.0f}" if r["seconds"] is not None else ""
        lines.append(f"| {r['name']} | {r[m1][0]:.4f} ± {r[m1][1]:.4f} | {r[m2][0]:.4f} ± {r[m2][1]:.4f} "
                     f"| {r['seeds']} | {_count(r['params'])} | {_count(r['pretrain_tokens'])} "
                     f"| {r['steps']} | {seconds} |")
    return "\n".join(lines)


def plot(path: str, tables: dict[str, list[dict]], machine: str) -> None:
    """One panel per task: each rung's mean (bar), spread (error bar) and seeds (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 4.2), squeeze=False)
    for ax, (task, rows) in zip(axes[0], tables.items()):
        metric = METRICS[task][0]
        names = [r["name"] for r in rows]
        ys = range(len(rows))
        ax.barh(ys, [r[metric][0] for r in rows], xerr=[r[metric][1] for r in rows], color="#9cb4d8",
                capsize=3)
        for y, r in zip(ys, rows):
            ax.plot(r["values"][metric], [y] * len(r["values"][metric]), "k.", ms=4)
        ax.set_yticks(list(ys), names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"eval {metric}")
        ax.set_title({"classify": "stdlib_packages (which package)", "tag": "stdlib_roles (identifier roles)"}[task])
    fig.suptitle(f"The representation ladder on {machine}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    for name, allowed, chosen in (("tasks", TASKS, _TASKS.value), ("rungs", RUNGS, _RUNGS.value)):
        unknown = [c for c in chosen if c not in allowed]
        if unknown:
            raise SystemExit(f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    keys = [k for k in RUNGS if k in _RUNGS.value]  # the ladder's order
    pretrained = {}
    for key in keys:
        name = RUNGS[key].pretrain
        if name and name not in pretrained:
            pretrained[name] = pretrain(name)
    tables = {}
    for task in _TASKS.value:
        runs = {}
        for key in keys:
            rung = RUNGS[key]
            if not rung.entry:
                runs[key] = []
            elif rung.seeded:
                runs[key] = [fine_tune(task, key, seed) for seed in _SEEDS.value]
            else:
                runs[key] = [fine_tune(task, key, None)]
        tables[task] = rows_for(task, runs, pretrained)

    machine = cpu_name()
    for name, record in pretrained.items():
        seconds = f"{record['seconds']:.0f} s" if record.get("seconds") else "time not recorded"
        print(f"pretraining {name}: {_count(record.get('params'))} params, "
              f"{_count(record.get('tokens_seen'))} tokens, {seconds}")
    for task, rows in tables.items():
        print(f"\n{task}, {len(_SEEDS.value)} seeds (mean ± standard deviation), on {machine}:")
        print(table(task, rows))
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, "ladder.json"), "w") as f:
        json.dump({"machine": machine, "pretraining": pretrained, "tables": tables}, f, indent=1)
    if _PLOT.value:
        plot(_PLOT.value, tables, machine)
        print(f"\nplot: {_PLOT.value}")


if __name__ == "__main__":
    app.run(main)
