"""Warm-starting a run from another run's checkpoint (config.init_from): fine-tuning.

Parameters are matched by path: those the checkpoint has with the same shape are restored
(straight into this run's shardings, and only those: the optimizer state and unused heads are
never read), the rest keep their fresh initialisation (a new task head), and the run prints
which were which. A matching path with another shape is a one-line error naming it. The
pretraining run's tokenizer comes along, since the token embedding is only meaningful with it.

`init_from` may name a workdir (its newest checkpoint), a checkpoints/ directory (its newest
step) or one step's directory.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

import jax
import numpy as np

from llmjax.config import ConfigError
from llmjax.training.checkpoint import first_nonfinite

Log = Callable[[str], None]
TOKENIZER_DIR = "tokenizer"


def _steps(directory: str) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    except OSError:
        return []


def locate(path: str) -> tuple[str, int]:
    """(checkpoints directory, step) that `path` names; a one-line ConfigError if none."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise ConfigError(f"config.init_from={path!r} does not exist: name a workdir, its "
                          "checkpoints/ directory or one step's directory")
    for directory in (os.path.join(path, "checkpoints"), path):
        steps = _steps(directory)
        if steps:
            return directory, steps[-1]
    name = os.path.basename(path.rstrip("/"))
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):
        return os.path.dirname(path), int(name)
    raise ConfigError(f"config.init_from={path!r} holds no checkpoint: name a workdir that "
                      "saved one, its checkpoints/ directory or one step's directory")


# Model keys a fine-tuning run may change: regularisation and how the same function is computed.
MAY_DIFFER = ("dropout", "attention_dropout", "remat", "attention_backend")


def check_model(path: str, model: dict) -> None:
    """The model group must be the pretraining run's (from its config.json, when there is one)
    except MAY_DIFFER: keys such as norm_position, ffn or norm_epsilon change what the restored
    weights compute without changing any shape."""
    directory, _ = locate(path)
    recorded = os.path.join(os.path.dirname(directory), "config.json")
    try:
        with open(recorded) as f:
            saved = json.load(f).get("model", {})
    except (OSError, ValueError, AttributeError):
        return
    for key in sorted(set(saved) & set(model)):
        if key not in MAY_DIFFER and saved[key] != model[key]:
            raise ConfigError(f"config.model.{key}={model[key]!r} but the run in {path} was trained "
                              f"with {saved[key]!r}: set it the same to warm-start from it (only "
                              f"{', '.join(MAY_DIFFER)} may differ)")


def tokenizer_dir(path: str) -> str | None:
    """The tokenizer saved beside the checkpoint `path` names (its workdir's), if any."""
    directory, _ = locate(path)
    candidate = os.path.join(os.path.dirname(directory), TOKENIZER_DIR)
    return candidate if os.path.isdir(candidate) else None


def adopt_tokenizer(path: str, workdir: str, log: Log) -> None:
    """Copy the pretraining run's tokenizer into workdir (unless it has one): the data
    pipeline then encodes with it instead of training a new one."""
    source, target = tokenizer_dir(path), os.path.join(workdir, TOKENIZER_DIR)
    if source is None or os.path.exists(target):
        if source is None:
            log(f"init_from: no tokenizer beside {path}; this run makes its own (its vocabulary "
                "must match the checkpoint's)")
        return
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    os.replace(tmp, target)
    log(f"init_from: using the tokenizer of {os.path.dirname(source)}")


def _flat(tree: Any) -> dict[str, Any]:
    """"a/b/kernel" -> leaf, in the tree's leaf order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): leaf
            for path, leaf in leaves}


def _unflatten(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for name, leaf in flat.items():
        *parents, last = name.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


def restore_params(path: str, params: Any, log: Log) -> Any:
    """params with every leaf the checkpoint at `path` has (same path and shape) restored, on
    params' shardings; the others unchanged."""
    import orbax.checkpoint as ocp

    directory, step = locate(path)
    manager = ocp.CheckpointManager(directory, item_handlers={
        "state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
    try:
        saved_meta = manager.item_metadata(step)["state"]
        saved = _flat(dict(saved_meta["params"]) if saved_meta is not None else {})
        if not saved:
            raise ConfigError(f"config.init_from: {directory}/{step} holds no parameters: name a "
                              "checkpoint written by llmjax")
        current = _flat(params)
        matched, new = [], []
        for name, value in current.items():
            if name not in saved:
                new.append(name)
                continue
            have, want = tuple(saved[name].shape), tuple(value.shape)
            if have != want:
                raise ConfigError(
                    f"config.init_from: parameter {name} is {have} in {directory}/{step} but "
                    f"{want} in this model: use the pretraining run's config.model (and its tokenizer)")
            matched.append(name)
        if not matched:
            raise ConfigError(f"config.init_from: no parameter of this model is in {directory}/{step} "
                              "(another model family, or scan_layers changed): use the pretraining "
                              "run's config.model")
        item = _unflatten({k: jax.ShapeDtypeStruct(current[k].shape, current[k].dtype,
                                                   sharding=current[k].sharding) for k in matched})
        restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(
            sharding=s.sharding, global_shape=s.shape, dtype=s.dtype), item)
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": item}, restore_args={"params": restore_args}, partial_restore=True)))
    finally:
        manager.close()
    loaded = _flat(out["state"]["params"])
    bad = first_nonfinite(loaded)
    if bad is not None:
        raise ConfigError(f"config.init_from: {bad} in {directory}/{step} holds NaN/Inf: name an "
                          "earlier checkpoint")
    unused = sorted(set(saved) - set(matched))
    n_matched = sum(int(np.prod(current[k].shape)) for k in matched)
    n_all = sum(int(np.prod(v.shape)) for v in current.values())
    log(f"init_from {directory}/{step}: restored {len(matched)} tensors ({n_matched / n_all:.1%} "
        f"of parameters); new: {', '.join(new) or 'none'}; not used: {', '.join(unused) or 'none'}")
    return jax.tree.unflatten(jax.tree.structure(params),
                              [loaded.get(k, v) for k, v in current.items()])
