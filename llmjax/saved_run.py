"""A run read back from its workdir without its data: the finalized model config (model.json),
the task it trained (config.json), the tokenizer and a checkpoint's parameters. Sampling
(llmjax.sample) and export (llmjax.convert --to_hf) both start here.

A workdir that `llmjax.convert --from_hf` wrote and nothing has trained yet reads as a run whose
only checkpoint is its pretrained/ parameters.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

import jax

from llmjax.config import ConfigError
from llmjax.training.checkpoint import saved_steps
from llmjax.training.warm_start import TOKENIZER_DIR, converted, read_params
from llmjax.training.workdir import CONFIG_JSON, MODEL_JSON


def model_config(workdir: str) -> Any:
    """The run's finalized model config, from workdir/model.json."""
    from llmjax.models import registry

    if not os.path.isdir(workdir):
        raise ConfigError(f"--workdir={workdir!r} does not exist: pass the directory of a training run")
    path = os.path.join(workdir, MODEL_JSON)
    if not os.path.exists(path):
        raise ConfigError(f"{path} is missing: the run was made by an older llmjax that did not record "
                          "its model; train it again (or resume it once) with this version")
    try:
        with open(path) as f:
            return registry.config_from_dict(json.load(f))
    except (ValueError, TypeError, ConfigError) as e:
        raise ConfigError(f"{path} cannot be read ({str(e).splitlines()[0]}): retrain, or fix the "
                          "file") from None


class TrainedTask(NamedTuple):
    """What a run trained, as its config.json and workdir say."""
    cls: Any  # the Task class
    task: Any  # the resolved task config
    data: Any  # the data config
    workdir: str  # where the run keeps what its task derived (the seq2seq memory's example cache)


def task(workdir: str) -> TrainedTask | None:
    """The run's TrainedTask from its config.json; None without one (a workdir llmjax.convert
    wrote, or a run trained through the library, not the CLI)."""
    import ml_collections

    from llmjax.config import DataConfig, from_group
    from llmjax.tasks import registry

    path = os.path.join(workdir, CONFIG_JSON)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
        group = ml_collections.ConfigDict(saved["task"])
        return TrainedTask(registry.TASKS.entry(group.name).target, registry.resolve(group),
                           from_group(DataConfig, ml_collections.ConfigDict(saved["data"]), "data"), workdir)
    except (ValueError, TypeError, KeyError, AttributeError, ConfigError) as e:
        raise ConfigError(f"{path} cannot be read ({str(e).splitlines()[0]}): retrain, or fix the "
                          "file") from None


def load_tokenizer(workdir: str) -> Any:
    from llmjax.data.tokenizers import load_tokenizer as load

    try:
        return load(os.path.join(workdir, TOKENIZER_DIR))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def checkpoint_path(workdir: str, step: int | None) -> str:
    """The checkpoint to read: checkpoints/<step>, else checkpoints/ itself (load_params reads
    its newest step that restores), else the pretrained/ parameters of a converted workdir."""
    root = os.path.join(workdir, "checkpoints")
    steps = saved_steps(root)
    if not steps and step is None and converted(workdir):
        return converted(workdir)
    if not steps:
        raise ConfigError(f"no checkpoint in {root}: train the run until it saves one "
                          "(config.checkpoint.every_steps), or pass another --workdir")
    if step is not None and step not in steps:
        raise ConfigError(f"--step={step}: {root} holds steps {', '.join(map(str, steps))}; pick one of them")
    return os.path.join(root, str(step)) if step is not None else root


def load_params(shapes: Any, path: str, log: Callable[[str], None] = print) -> Any:
    """The parameters `read_params_and_path` reads (the public form notebooks and scripts use)."""
    return read_params_and_path(shapes, path, log)[0]


def read_params_and_path(shapes: Any, path: str, log: Callable[[str], None] = print) -> tuple[Any, str]:
    """Every parameter of the tree `shapes` (ShapeDtypeStructs: the model's) from the
    checkpoint at path (a directory of steps: its newest that restores, corrupt ones skipped
    with a logged line each), on the first device, and the step's directory read; a one-line
    error if any is missing or misshapen, or no step restores."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    wanted = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
    what = "--step" if os.path.basename(path.rstrip("/")).isdigit() else "--workdir"
    try:
        params, path, _ = read_params(path, wanted, log=log, what=what)
    except ConfigError as e:
        raise ConfigError(f"checkpoint {path} does not fit model.json ({e})") from None
    missing = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(params)
               if isinstance(v, jax.ShapeDtypeStruct)]
    if missing:
        raise ConfigError(f"checkpoint {path} lacks {len(missing)} parameters of the model in model.json "
                          f"(first: {missing[0]}): pass the checkpoint of the same run")
    return params, path
