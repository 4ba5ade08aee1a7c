"""Forking a run (config.fork_from): a new run continues another run's full training state.

config.fork_from names one step's directory of a run, PARENT/checkpoints/S. A new workdir (no
checkpoint of its own) restores the parameters, optimizer state and step S from it, straight
into its own shardings, and trains steps S+1.. under ITS OWN schedule for its own
train.num_steps. Batches are a pure function of the step, so the fork sees exactly the batches
the parent would have; it adopts the parent's tokenizer (as init_from does). This is how one
constant-learning-rate run gives many token budgets: each fork is a short cooldown from one of
its checkpoints (Hagele et al. 2024). Once the fork has saved its own checkpoint it resumes from
that like any run, and fork_from is not read again.

A fork must be the run it claims to continue, so before any data or compile work it is refused,
in one line, when the parent has no checkpoint S, when S is not before the fork's last step,
when the fork's learning rate differs from the parent's at any update up to S (the schedules
are compared numerically: the schedule is not in the state tree), or when a key that shapes the
state tree, the batches or the update rule (FORK_KEYS) differs from the parent's config.json.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from llmjax import config as C
from llmjax.training import optim
from llmjax.training.checkpoint import Corrupt, first_difference, first_nonfinite, read_newest, saved_steps
from llmjax.training.workdir import CONFIG_JSON

Log = Callable[[str], None]
# Optimizer keys a fork may change: they only shape the learning rate, which is compared
# numerically up to the fork step instead.
SCHEDULE_KEYS = ("schedule", "lr", "warmup_steps", "min_lr_ratio", "decay_fraction", "cooldown_shape")
FORK_KEYS = ("model", "task", "data", "train.seed", "train.batch_size", "train.z_loss",
             *(f"optim.{f.name}" for f in C.config_fields(C.OptimConfig) if f.name not in SCHEDULE_KEYS))
_FORM = "name one step's directory of a run, PARENT/checkpoints/STEP"


@dataclasses.dataclass(frozen=True)
class Source:
    """The checkpoint a fork starts from."""
    workdir: str  # the parent run's directory
    directory: str  # its checkpoints/
    step: int


def check_key(run: Any) -> None:
    """Cheap checks of config.fork_from beside the other keys (no files read)."""
    if not isinstance(run.fork_from, str):
        C.fail("fork_from", run.fork_from, f"must be a path (str): {_FORM}")
    if run.fork_from and run.init_from:
        C.fail("fork_from", run.fork_from, "a run either forks (the whole training state) or warm-starts "
               "(config.init_from, parameters only): set one of them")
    if run.fork_from and run.train.budget_flops:
        C.fail("fork_from", run.fork_from, "a fork trains to its own config.train.num_steps: set that "
               "instead of config.train.budget_flops")


def locate(path: str) -> Source:
    """The run and step that fork_from names; a one-line ConfigError unless a checkpoint is there."""
    path = os.path.abspath(os.path.expanduser(path)).rstrip("/")
    directory, name = os.path.split(path)
    if not (name.isdigit() and os.path.basename(directory) == "checkpoints"):
        C.fail("fork_from", path, _FORM)
    if not os.path.isdir(os.path.join(path, "state")):
        saved = saved_steps(directory)
        C.fail("fork_from", path, f"no checkpoint of step {name} there (saved steps: {saved or 'none'}): "
               "name a saved step, or make the parent save it (config.checkpoint.every_steps, keep)")
    return Source(os.path.dirname(directory), directory, int(name))


def _parent_config(source: Source) -> dict:
    path = os.path.join(source.workdir, CONFIG_JSON)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise C.ConfigError(f"config.fork_from: the parent's config {path} is unreadable ({e}): fork "
                            "from a run llmjax.main made") from e


def _config_dict(run: Any) -> dict:
    """run's groups as config.json holds them (config keys only, JSON values)."""
    groups = {}
    for name in ("model", "task", "data", "train", "optim"):
        group = getattr(run, name)
        groups[name] = {f.name: getattr(group, f.name) for f in C.config_fields(type(group))}
    return json.loads(json.dumps(groups))


def _read(source: Source, read: Callable[[ocp.CheckpointManager], Any]) -> Any:
    """read(a manager of the parent's checkpoints) at the fork step, through checkpoint.read_newest:
    a corrupt or vanished step is one line (and Orbax's logs are kept from the user)."""
    def at_step(step: int) -> Any:
        manager = ocp.CheckpointManager(source.directory, item_handlers={
            "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
        try:
            return read(manager)
        finally:
            manager.close()
    return read_newest(source.directory, at_step, step=source.step,
                       fix="config.fork_from: fork from another step, or restore it from a backup").value


def _read_meta(source: Source) -> dict:
    """The fork step's meta, once its saved tree reads (before any data work)."""
    def read(manager: ocp.CheckpointManager) -> dict:
        if manager.item_metadata(source.step)["state"] is None:
            raise Corrupt("metadata: unreadable")
        out = manager.restore(source.step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])
    return _read(source, read)


def _check_schedule(parent: C.OptimConfig, parent_steps: int, fork: C.OptimConfig, fork_steps: int,
                    source: Source) -> None:
    """The fork's learning rate equals the parent's at every update 1..S (relative 1e-6)."""
    counts = np.arange(source.step)
    lr_parent = np.asarray(jax.vmap(optim.schedule(parent, parent_steps))(counts))
    lr_fork = np.asarray(jax.vmap(optim.schedule(fork, fork_steps))(counts))
    bad = np.flatnonzero(~np.isclose(lr_fork, lr_parent, rtol=1e-6, atol=0.0))
    if bad.size:
        k = int(bad[0])
        raise C.ConfigError(
            f"config.optim: the fork's learning rate at update {k + 1} is {lr_fork[k]:.6g} but the parent "
            f"{source.workdir} trained it with {lr_parent[k]:.6g}: a fork must follow the parent's schedule "
            f"up to its fork step {source.step} (e.g. wsd whose decay starts after it)")


def check(run: Any) -> Source:
    """The source of a new fork, after every refusal (one-line ConfigErrors, before any work)."""
    source = locate(run.fork_from)
    if source.step >= run.train.num_steps:
        C.fail("train.num_steps", run.train.num_steps, f"a fork from step {source.step} must train "
               "past it: set more steps, or fork from an earlier checkpoint")
    saved = _parent_config(source)
    change = C.first_change(saved, _config_dict(run), FORK_KEYS)
    if change is not None:
        key, a, b = change
        raise C.ConfigError(f"config.{key}={b!r} but the parent {source.workdir} used {a!r}: a fork "
                            "continues its parent's training, so pass the same value")
    meta = _read_meta(source)
    if meta.get("data_step", source.step) != source.step:
        raise C.ConfigError(f"config.fork_from: checkpoint {source.step} in {source.directory} is "
                            f"inconsistent (data_step={meta.get('data_step')}): fork from another step")
    parent_optim = C.from_group(C.OptimConfig, ml_collections.ConfigDict(saved.get("optim", {})), "optim")
    parent_steps = int(meta.get("schedule_steps", saved.get("train", {}).get("num_steps", source.step)))
    _check_schedule(parent_optim, parent_steps, run.optim, run.train.num_steps, source)
    return source


def restore(source: Source, abstract_state: Any, log: Log) -> Any:
    """The parent's whole state at its fork step, restored into abstract_state's shardings."""
    where = f"{source.directory}/{source.step}"

    def read(manager: ocp.CheckpointManager) -> Any:
        diff = first_difference(manager.item_metadata(source.step)["state"], abstract_state)
        if diff is not None:
            raise C.ConfigError(f"config.fork_from: {where} does not fit this run ({diff}): use the "
                                "parent's config.model and config.optim.name")
        state = manager.restore(source.step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))["state"]
        bad = first_nonfinite(state)
        if bad is not None:
            raise Corrupt(f"{bad} holds NaN/Inf")
        return state
    state = _read(source, read)
    log(f"forked from step {source.step} of {source.workdir}: its own schedule from here")
    return state
