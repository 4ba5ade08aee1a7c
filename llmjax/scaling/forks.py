"""Cooldown forks in a sweep (Hagele et al. 2024): one constant-LR run per model gives the loss
at many token budgets.

A sweep config's `forks` key, e.g.
  c.forks = {"tokens_per_param": [10, 20, 40], "cooldown_fraction": 0.2, "cooldown_shape": "1-sqrt"}
(or "tokens": [...] or "steps": [...] instead of "tokens_per_param") turns each run of the sweep
into a parent: constant learning rate after its warm-up. Each budget is a total of T steps
(tokens per parameter x the run's parameter count / tokens per step, rounded), and its fork
step S = T - round(cooldown_fraction x T), where a wsd schedule over T steps starts to decay.
The parent trains to the largest S in legs, one llmjax.main command per fork step, each
ending on a checkpoint that is kept (checkpoint.keep = the number of fork steps; no periodic
saves in between, so a killed parent resumes from its last fork step). Then each fork is a
normal run, "PARENT,fork=T" in its own workdir, with config.fork_from=PARENT/checkpoints/S and
a wsd schedule over T steps: a cooldown of T - S steps that lands where a separate wsd run of T
steps would (llmjax.training.fork checks that it may).

The parameter count is the run's own (llmjax.scaling.results.accounting, every parameter). A
parent that has run has it in its workdir (config.json, model.json); before that the runner
prepares the parent's data in its workdir, as the parent would first (the tokenizer decides the
vocabulary), and counts from the model config without training; the parent then reuses it.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import os
from typing import Any, Callable

import ml_collections

from llmjax.config import COOLDOWNS, ConfigError
from llmjax.scaling import sweep as sweep_lib
from llmjax.scaling.sweep import Run

UNITS = ("tokens_per_param", "tokens", "steps")  # how a sweep's fork budgets are given
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Spec:
    """The sweep's `forks` key, checked."""
    unit: str  # one of UNITS
    budgets: tuple[float, ...]
    fraction: float  # of each fork's T steps spent in the cooldown
    shape: str  # one of config.COOLDOWNS


@dataclasses.dataclass(frozen=True)
class Plan:
    """Parents (constant LR, their fork steps ascending) and the forks, in run order."""
    parents: tuple[tuple[Run, tuple[int, ...]], ...]
    forks: tuple[Run, ...]

    @property
    def runs(self) -> list[Run]:
        return [p for p, _ in self.parents] + list(self.forks)


def spec(sweep: Any) -> Spec | None:
    """The sweep's forks key, or None; a one-line ConfigError naming what is wrong."""
    forks = sweep.get("forks")
    if not forks:
        return None
    forks = dict(forks)
    units = [u for u in UNITS if u in forks]
    unknown = sorted(set(forks) - {*UNITS, "cooldown_fraction", "cooldown_shape"})
    if len(units) != 1 or unknown:
        raise ConfigError(f"sweep forks={forks}: give exactly one of {', '.join(UNITS)} (a list of budgets), "
                          "plus cooldown_fraction and cooldown_shape")
    budgets = forks[units[0]]
    if isinstance(budgets, (str, bytes)) or not hasattr(budgets, "__iter__") or not budgets or \
            not all(isinstance(b, (int, float)) and b > 0 for b in budgets):
        raise ConfigError(f"sweep forks {units[0]}={budgets!r}: give a non-empty list of positive numbers")
    fraction = forks.get("cooldown_fraction", 0.2)
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"sweep forks cooldown_fraction={fraction!r}: must be in (0, 1)")
    shape = forks.get("cooldown_shape", "linear")
    if shape not in COOLDOWNS:
        raise ConfigError(f"sweep forks cooldown_shape={shape!r}: must be one of {', '.join(COOLDOWNS)}")
    return Spec(units[0], tuple(sorted(set(budgets))), float(fraction), shape)


def fork_step(total: int, fraction: float) -> int:
    """Where a wsd schedule over `total` steps starts its decay (as llmjax.training.optim has it)."""
    return total - max(1, int(round(fraction * total)))


def total_steps(spec: Spec, params: int, tokens_per_step: int) -> list[int]:
    """Each budget's total steps T, ascending and distinct."""
    per_budget = {"tokens_per_param": params / tokens_per_step, "tokens": 1 / tokens_per_step, "steps": 1}
    steps = sorted({int(round(b * per_budget[spec.unit])) for b in spec.budgets})
    if fork_step(steps[0], spec.fraction) < 1:
        raise ConfigError(f"sweep forks: the budget {spec.budgets[0]} {spec.unit} is {steps[0]} steps, too few "
                          f"to fork a cooldown of {spec.fraction} from: give larger budgets")
    return steps


def _run_config(run: Run) -> ml_collections.ConfigDict:
    """The run's config as llmjax.main would read it: its base file, then its overrides."""
    module_spec = importlib.util.spec_from_file_location("llmjax_sweep_base", run.base)
    if module_spec is None or not os.path.isfile(run.base):
        raise ConfigError(f"sweep base {run.base!r} is not a config file: name one like configs/gpt_small.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cfg = module.get_config()
    for key, value in run.overrides.items():
        *groups, leaf = key.split(".")
        node = cfg
        for group in groups:
            node = node[group]
        node[leaf] = value
    return cfg


def count(run: Run, sweep_dir: str) -> tuple[int, int]:
    """(parameters, tokens per step) of a run by its own accounting, without training it."""
    from llmjax.scaling import results

    workdir = os.path.join(sweep_dir, run.name)
    paths = [os.path.join(workdir, n) for n in ("config.json", "model.json")]
    if all(os.path.exists(p) for p in paths):
        config, model = (_read_json(p) for p in paths)
    else:
        config, model = _prepared(run, workdir)
    acc = results.accounting(config, model)
    return int(acc["params"]), int(acc["tokens_per_step"])


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _prepared(run: Run, workdir: str) -> tuple[dict, dict]:
    """(config dict, finalized model dict) after preparing the run's data in its workdir."""
    import jax

    from llmjax import experiment
    from llmjax.models import registry
    from llmjax.tasks import registry as tasks

    cfg = _run_config(run)
    task = tasks.build(experiment.resolve(cfg))
    os.makedirs(workdir, exist_ok=True)
    try:
        task.prepare(workdir, lambda _: None, resuming=False)
    except ValueError as e:  # the data modules' one-line errors
        raise ConfigError(f"{run.name}: {e}") from e
    return cfg.to_dict(), registry.config_to_dict(task.model_config(jax.devices()[0].platform))


def plan(sweep: Any, runs: list[Run], sweep_dir: str) -> Plan | None:
    """The sweep's parents and forks (None without a forks key)."""
    s = spec(sweep)
    if s is None:
        return None
    parents, forks = [], []
    for run in runs:
        totals = total_steps(s, *count(run, sweep_dir))
        steps = tuple(sorted({fork_step(t, s.fraction) for t in totals}))
        parents.append((_parent(run, steps), steps))
        for total in totals:
            forks.append(_fork(run, total, s, sweep_dir))
    return Plan(tuple(parents), tuple(forks))


def _parent(run: Run, steps: tuple[int, ...]) -> Run:
    """The run at constant LR after warm-up to its last fork step, saving (only) at its fork steps."""
    return dataclasses.replace(run, overrides={
        **run.overrides, "optim.schedule": "constant", "train.num_steps": steps[-1],
        "checkpoint.every_steps": steps[-1], "checkpoint.keep": len(steps)})


def _fork(run: Run, total: int, s: Spec, sweep_dir: str) -> Run:
    step = fork_step(total, s.fraction)
    return Run(f"{run.name},fork={total}", run.base, {
        **run.overrides, "train.num_steps": total, "optim.schedule": "wsd", "optim.decay_fraction": s.fraction,
        "optim.cooldown_shape": s.shape, "fork_from": os.path.join(sweep_dir, run.name, "checkpoints", str(step))},
        run.axis_values, fork_of=run.name, fork_step=step)


def legs(parent: Run, steps: tuple[int, ...]) -> list[Run]:
    """The parent's llmjax.main runs, one per fork step (each resumes from the previous one)."""
    return [dataclasses.replace(parent, overrides={**parent.overrides, "train.num_steps": s}) for s in steps]


def commands(p: Plan, sweep_dir: str) -> list[str]:
    """Every command in order, parents' legs first; the forks' need their parents' checkpoints."""
    import shlex

    out = [shlex.join(leg.command(sweep_dir)) for parent, steps in p.parents for leg in legs(parent, steps)]
    if p.forks:
        out.append("# the forks below start from their parents' checkpoints: run them after the commands above")
    return out + [shlex.join(f.command(sweep_dir)) for f in p.forks]


def _saved(run: Run, sweep_dir: str, step: int) -> bool:
    return os.path.isdir(os.path.join(sweep_dir, run.name, "checkpoints", str(step), "state"))


def _run_parent(parent: Run, steps: tuple[int, ...], sweep_dir: str) -> dict[str, Any]:
    """The parent's legs not run yet (the last always, unless the parent is done); its record."""
    all_legs = legs(parent, steps)
    todo = [i for i, s in enumerate(steps) if s == steps[-1] or not _saved(parent, sweep_dir, s)]
    record: dict[str, Any] = {}
    for i in todo:  # wall_sec adds the earlier legs' time: the parent's whole run
        record = sweep_lib.run_one(all_legs[i], sweep_dir, earlier=tuple(all_legs[:i]))
        if record["returncode"] != 0:
            break
    return record


def run_all(p: Plan, sweep_dir: str, parallel: int = 1, log: Log = print) -> dict[str, dict[str, Any]]:
    """The parents not done (`parallel` at a time), then their forks (sweep.run_all: done ones
    skipped, a failed one recorded and the others go on). Returns name -> record of those run now."""
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for parent, steps in p.parents:
        if sweep_lib.status(parent, sweep_dir) == "done":
            log(f"{parent.name}: done, skipped")
        else:
            todo.append((parent, steps))
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(_run_parent, parent, steps, sweep_dir): (parent, steps) for parent, steps in todo}
        for future in concurrent.futures.as_completed(futures):
            (parent, steps), record = futures[future], future.result()
            records[parent.name] = record
            log(f"{parent.name}: " + (f"done in {record['wall_sec']:.0f}s, checkpoints kept at its fork steps "
                                       f"{list(steps)}" if record["returncode"] == 0 else
                                       f"FAILED (exit code {record['returncode']}): {record['error']}"))
    return {**records, **sweep_lib.run_all(list(p.forks), sweep_dir, parallel, log)}
