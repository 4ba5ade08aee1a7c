"""A sweep's results table: one row per run in SWEEPDIR/results.jsonl and results.csv.

Each row is read back from the run's workdir files, after the run (nothing is measured here):
  name, status, returncode, error, wall_sec      the sweep's record (sweep.json)
  the axis values                                 the keys the sweep's axes set
  params, params_non_embedding                    the run's parameter tree (model.json and the
                                                  task's init under jax.eval_shape); embeddings are
                                                  the lookup tables: token, position and token-type
                                                  (the "embedding" leaves); an untied output head
                                                  counts as non-embedding
  step, tokens, flops_per_token, flops            the task's own accounting (tokens_per_step,
                                                  flops_per_step: what the training log reports)
  fork_of, fork_step, tokens_fork, flops_fork     a cooldown fork (llmjax.scaling.forks): its
                                                  parent and the step it starts from; tokens and
                                                  flops count the whole trajectory (the parent's
                                                  steps to fork_step, then the fork's), *_fork
                                                  the fork's own steps only
  final_eval_loss, best_eval_loss                 results.json's loss, the lowest eval loss logged
  tokens_per_sec, train_sec                       metrics.jsonl: every logged step window (eval
                                                  and checkpoint time excluded) plus startup
  every config.json value (dotted keys)
A run not finished has only the columns its files give.
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any

from llmjax.scaling.sweep import Run, flatten, read_record, status

EMBEDDING_LEAVES = ("embedding",)


def _read_json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def accounting(config: dict[str, Any], model: dict[str, Any]) -> dict[str, float]:
    """Parameters (with and without embeddings), tokens and FLOPs per step of a run, from its
    config.json and model.json, as its training loop counted them."""
    import flax.linen as nn
    import jax
    import ml_collections

    from llmjax import experiment
    from llmjax.models import registry
    from llmjax.tasks import registry as tasks

    task = tasks.build(experiment.resolve(ml_collections.ConfigDict(config)))
    model_cfg = registry.config_from_dict(model)
    module = registry.build(model_cfg)
    shapes = jax.eval_shape(lambda: nn.meta.unbox(task.init_params(module, jax.random.key(0))))
    leaves = jax.tree_util.tree_leaves_with_path(shapes)
    total = sum(leaf.size for _, leaf in leaves)
    embedding = sum(leaf.size for path, leaf in leaves if getattr(path[-1], "key", None) in EMBEDDING_LEAVES)
    return {"params": total, "params_non_embedding": total - embedding,
            "tokens_per_step": task.tokens_per_step(),
            "flops_per_token": task.flops_per_step(model_cfg) / task.tokens_per_step()}


def throughput(metrics: list[dict[str, Any]], tokens_per_step: int, start: int = 0) -> dict[str, float]:
    """tokens/s over every timed window of logged train steps after `start` (a fork's first
    step), and the training seconds (those windows plus each (re)start's compile)."""
    train = [m for m in metrics if m.get("split") == "train"]
    steps = seconds = startup = 0.0
    previous = start
    for row in train:
        delta = row["step"] - previous
        if "tokens_per_sec" in row and delta > 0:
            steps += delta
            seconds += delta * tokens_per_step / row["tokens_per_sec"]
        startup += row.get("startup_sec", 0.0)
        previous = row["step"]
    if not seconds:
        return {}
    return {"tokens_per_sec": steps * tokens_per_step / seconds, "train_sec": seconds + startup}


def row(run: Run, sweep_dir: str) -> dict[str, Any]:
    """One run's row of the results table."""
    workdir = os.path.join(sweep_dir, run.name)
    record = read_record(workdir)
    out: dict[str, Any] = {"name": run.name, "status": status(run, sweep_dir),
                           "returncode": record.get("returncode"), "error": record.get("error", ""),
                           "wall_sec": record.get("wall_sec"), **run.axis_values}
    if run.fork_of:
        out.update(fork_of=run.fork_of, fork_step=run.fork_step)
    config = _read_json(os.path.join(workdir, "config.json"))
    model = _read_json(os.path.join(workdir, "model.json"))
    results = _read_json(os.path.join(workdir, "results.json")) or {}
    metrics = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    if config is None or model is None:
        return out
    acc = accounting(config, model)
    step = results.get("step")
    out.update(params=acc["params"], params_non_embedding=acc["params_non_embedding"], step=step,
               tokens=step * acc["tokens_per_step"] if step is not None else None,
               flops_per_token=acc["flops_per_token"],
               flops=step * acc["tokens_per_step"] * acc["flops_per_token"] if step is not None else None)
    if run.fork_of and step is not None:  # tokens and flops count the whole trajectory; *_fork its own steps
        own = step - run.fork_step
        out.update(tokens_fork=own * acc["tokens_per_step"],
                   flops_fork=own * acc["tokens_per_step"] * acc["flops_per_token"])
    losses = [m["loss"] for m in metrics if m.get("split") == "eval" and "loss" in m]
    out.update(final_eval_loss=results.get("loss"), best_eval_loss=min(losses) if losses else None,
               **throughput(metrics, acc["tokens_per_step"], run.fork_step))
    out.update({k: v for k, v in flatten(config).items() if k not in out})
    return out


def write(runs: list[Run], sweep_dir: str) -> list[dict[str, Any]]:
    """Every run's row into SWEEPDIR/results.jsonl and results.csv (atomically); returns them."""
    rows = [row(r, sweep_dir) for r in runs]
    os.makedirs(sweep_dir, exist_ok=True)
    path = os.path.join(sweep_dir, "results.jsonl")
    with open(path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(path + ".tmp", path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    path = os.path.join(sweep_dir, "results.csv")
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()}
                         for r in rows)
    os.replace(path + ".tmp", path)
    return rows
