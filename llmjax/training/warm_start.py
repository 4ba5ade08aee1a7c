"""Warm-starting a run from another run's checkpoint (config.init_from): fine-tuning.

Parameters are matched by path: those the checkpoint has with the same shape are restored
(straight into this run's shardings, and only those: the optimizer state and unused heads are
never read), the rest keep their fresh initialisation (a new task head), and the run prints
which were which. A matching path with another shape is a one-line error naming it. The
pretraining run's tokenizer comes along, since the token embedding is only meaningful with it.

`init_from` may name a workdir (its newest checkpoint, else the parameters `llmjax.convert`
put in its pretrained/ directory), a checkpoints/ directory (its newest step), one step's
directory, or a Hugging Face model directory (converted in memory by llmjax.interop.hf; its
tokenizer comes along as an "hf" tokenizer). "Newest" is the newest that reads, as on resume
(checkpoint.read_newest): corrupt ones are skipped with a line each, and one that the run
training there rotates out while it is read is looked for again. llmjax.sample and
llmjax.convert --to_hf read their parameters here too.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from llmjax.config import ConfigError, UserError, config_fields
from llmjax.models import registry
from llmjax.training.checkpoint import Corrupt, first_nonfinite, read_newest, saved_steps
from llmjax.training.tree_paths import flat_paths
from llmjax.training.workdir import CONFIG_JSON, CONVERTED_DIR, MODEL_JSON

Log = Callable[[str], None]
TOKENIZER_DIR = "tokenizer"


def is_hf(path: str) -> bool:
    """Whether path is a Hugging Face model directory (config.json + weights)."""
    from llmjax.interop import hf

    return hf.is_hf_dir(os.path.abspath(os.path.expanduser(path)))


def check_source(path: str) -> None:
    """A one-line ConfigError unless path holds parameters to start from (before any work); a
    Hugging Face directory's weight files must be complete."""
    if not is_hf(path):
        locate(path)
        return
    from llmjax.interop import hf_files

    try:
        hf_files.check_complete(os.path.abspath(os.path.expanduser(path)))
    except UserError as e:
        raise ConfigError(f"config.init_from: {e}") from None


def converted(workdir: str) -> str:
    """workdir's pretrained/ directory when llmjax.convert put parameters there, else ''."""
    directory = os.path.join(workdir, CONVERTED_DIR)
    return directory if saved_steps(directory) else ""


def locate(path: str) -> tuple[str, int]:
    """(checkpoints directory, step) that `path` names; a one-line ConfigError if none."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise ConfigError(f"config.init_from={path!r} does not exist: name a workdir, its "
                          "checkpoints/ directory or one step's directory")
    for directory in (os.path.join(path, "checkpoints"), os.path.join(path, CONVERTED_DIR), path):
        steps = saved_steps(directory)
        if steps:
            return directory, steps[-1]
    name = os.path.basename(path.rstrip("/"))
    if name.isdigit() and os.path.isdir(os.path.join(path, "state")):
        return os.path.dirname(path), int(name)
    raise ConfigError(f"config.init_from={path!r} holds no checkpoint: name a workdir that "
                      "saved one, its checkpoints/ directory or one step's directory")


# Model keys a fine-tuning run may change: regularisation, how the same function is computed,
# and how the parameters it does not restore (a new head) start.
MAY_DIFFER = ("dropout", "attention_dropout", "remat", "attention_backend", "init_std",
              "embed_init")  # embed_init: where a new run's table starts, not its shape


def check_model(path: str, model: dict) -> None:
    """The model group must be the pretraining run's except MAY_DIFFER: keys such as
    norm_position, ffn or norm_epsilon change what the restored weights compute without
    changing any shape. The run's keys come from its config.json, else (a converted workdir, a
    Hugging Face directory) from the finalized model config it records."""
    saved = _recorded_model(path)
    for key in sorted(set(saved) & set(model)):
        if key in MAY_DIFFER or saved[key] == model[key]:
            continue
        if model[key] in _RESOLVED_LATER.get(key, ()):  # e.g. max_len 0: checked by shape on restore
            continue
        raise ConfigError(f"config.model.{key}={model[key]!r} but the weights in {path} were trained "
                          f"with {saved[key]!r}: set it the same to warm-start from them (only "
                          f"{', '.join(MAY_DIFFER)} may differ)")


# Keys whose default the run resolves (0 = data.seq_len, 0 = num_heads): not compared.
_RESOLVED_LATER = {"max_len": (0,), "num_kv_heads": (0,)}


def _recorded_model(path: str) -> dict:
    """The model keys the weights at path were trained with ({} when nothing records them)."""
    if is_hf(path):
        from llmjax.interop import hf

        return _keys(hf.model_config(os.path.abspath(os.path.expanduser(path))))
    directory, _ = locate(path)
    run = os.path.dirname(directory)
    try:
        with open(os.path.join(run, CONFIG_JSON)) as f:
            return json.load(f).get("model", {})
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(os.path.join(run, MODEL_JSON)) as f:
            return _keys(registry.config_from_dict(json.load(f)))
    except (OSError, ValueError, TypeError):
        return {}


def _keys(model_cfg: Any) -> dict:
    """A finalized model config's config keys (runtime fields left out)."""
    return {f.name: getattr(model_cfg, f.name) for f in config_fields(type(model_cfg))}


def tokenizer_dir(path: str) -> str | None:
    """The tokenizer saved beside the checkpoint `path` names (its workdir's), if any."""
    directory, _ = locate(path)
    candidate = os.path.join(os.path.dirname(directory), TOKENIZER_DIR)
    return candidate if os.path.isdir(candidate) else None


def adopt_tokenizer(path: str, workdir: str, log: Log) -> None:
    """Copy the pretraining run's tokenizer (a Hugging Face directory's own) into workdir
    (unless it has one): the data pipeline then encodes with it instead of training a new one."""
    target = os.path.join(workdir, TOKENIZER_DIR)
    if os.path.exists(target):
        return
    if is_hf(path):
        from llmjax.interop import hf

        hf.save_tokenizer(os.path.abspath(os.path.expanduser(path)), target)
        log(f"init_from: using the tokenizer of {path} (config.data.tokenizer='hf')")
        return
    source = tokenizer_dir(path)
    if source is None:
        log(f"init_from: no tokenizer beside {path}; this run makes its own (its vocabulary "
            "must match the checkpoint's)")
        return
    tmp = target + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    os.replace(tmp, target)
    log(f"init_from: using the tokenizer of {os.path.dirname(source)}")


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
    restored = read_params(path, params, log)
    log(restored.summary)
    return restored.params


class Restored(NamedTuple):
    params: Any
    where: str  # the directory read (one step's, for a checkpoint)
    summary: str  # which parameters were restored, which are new, which were not used


def read_params(path: str, params: Any, log: Log, what: str = "config.init_from") -> Restored:
    """restore_params without its summary line; log gets one line per corrupt step skipped.
    `what` names the setting that chose path, in errors."""
    if is_hf(path):
        return _restore_hf(os.path.abspath(os.path.expanduser(path)), params, log)
    directory, newest = locate(path)
    named = os.path.abspath(os.path.expanduser(path)).rstrip("/") == os.path.join(directory, str(newest))
    current = flat_paths(params)
    found = read_newest(directory, lambda step: _read_step(directory, step, current), log=log,
                        step=newest if named else None,
                        fix=(f"{what}: pick another step, or restore it from a backup" if named
                             else f"{what}: pick another run, or restore them from a backup"))
    saved, matched, new, loaded = found.value
    return _merged(params, current, loaded, saved, matched, new, f"{directory}/{found.step}")


def _read_step(directory: str, step: int, current: dict[str, Any]) -> tuple[dict, list, list, dict]:
    """(the step's saved parameter shapes, matched and new names, the matched leaves read);
    corrupt files raise (checkpoint.read_newest tries the step before), a misfit a ConfigError."""
    import orbax.checkpoint as ocp

    where = f"{directory}/{step}"
    manager = ocp.CheckpointManager(directory, item_handlers={  # per step: a fresh listing
        "state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
    try:
        saved_meta = manager.item_metadata(step)["state"]
        if saved_meta is None:
            raise Corrupt("metadata: unreadable")
        if "params" not in saved_meta:
            raise ConfigError(f"config.init_from: {where} holds no parameters: name a "
                              "checkpoint written by llmjax")
        saved = flat_paths(dict(saved_meta["params"]))
        matched, new = _match(saved, current, where)
        item = _unflatten({k: jax.ShapeDtypeStruct(current[k].shape, current[k].dtype,
                                                   sharding=current[k].sharding) for k in matched})
        restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(
            sharding=s.sharding, global_shape=s.shape, dtype=s.dtype), item)
        out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item={"params": item}, restore_args={"params": restore_args}, partial_restore=True)))
    finally:
        manager.close()
    loaded = flat_paths(out["state"]["params"])
    bad = first_nonfinite(loaded)
    if bad is not None:
        raise Corrupt(f"{bad} holds NaN/Inf")
    return saved, matched, new, loaded


def _restore_hf(path: str, params: Any, log: Log) -> Restored:
    """The same from a Hugging Face directory, converted leaf by leaf (llmjax.interop.hf)."""
    from llmjax.interop import hf

    hf_params, _, fresh = hf.read_params(path, log=log)  # fresh: heads the checkpoint lacks
    fresh = set(fresh)
    saved = {k: v for k, v in flat_paths(hf_params).items() if k not in fresh}
    current = flat_paths(params)
    matched, new = _match(saved, current, path)
    loaded = {k: jax.device_put(np.asarray(saved[k], current[k].dtype), current[k].sharding)
              for k in matched}
    bad = first_nonfinite(loaded)
    if bad is not None:
        raise ConfigError(f"config.init_from: {bad} in {path} holds NaN/Inf: name another checkpoint")
    return _merged(params, current, loaded, saved, matched, new, path)


def _match(saved: dict[str, Any], current: dict[str, Any], where: str) -> tuple[list[str], list[str]]:
    """(this model's leaves the source has with the same shape, the leaves it lacks); a
    one-line ConfigError for a shape mismatch or nothing in common."""
    matched, new = [], []
    for name, value in current.items():
        if name not in saved:
            new.append(name)
            continue
        have, want = tuple(saved[name].shape), tuple(value.shape)
        if have != want:
            raise ConfigError(
                f"config.init_from: parameter {name} is {have} in {where} but {want} in this model: "
                "use the pretraining run's config.model (and its tokenizer)")
        matched.append(name)
    if not matched:
        raise ConfigError(f"config.init_from: no parameter of this model is in {where} (another "
                          "model family, or scan_layers changed): use the pretraining run's config.model")
    return matched, new


def _merged(params: Any, current: dict, loaded: dict, saved: dict, matched: list[str],
            new: list[str], where: str) -> Restored:
    """params with the loaded leaves in place, and the split said in one line."""
    unused = sorted(set(saved) - set(matched))
    n_matched = sum(int(np.prod(current[k].shape)) for k in matched)
    n_all = sum(int(np.prod(v.shape)) for v in current.values())
    summary = (f"init_from {where}: restored {len(matched)} tensors ({n_matched / n_all:.1%} of "
               f"parameters); new: {', '.join(new) or 'none'}; not used: {', '.join(unused) or 'none'}")
    merged = jax.tree.unflatten(jax.tree.structure(params), [loaded.get(k, v) for k, v in current.items()])
    return Restored(merged, where, summary)
