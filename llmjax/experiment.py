"""An experiment's whole config, read once at the top.

`base_config(model, task)` lists every key with its default: the shared groups of
llmjax.config, the model family's group and the task's group, each from its registered
dataclass. `resolve()` checks it all (one-line ConfigError naming the key and the fix) before
any data or compile work and freezes it into a `RunConfig` of small dataclasses; nothing
below this module ever sees the ConfigDict. `train_and_evaluate` runs the task it names
through the one training loop.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Callable

import ml_collections

from llmjax import config as C
from llmjax.models import registry as models
from llmjax.tasks import registry as tasks
from llmjax.data.embeddings_file import check_token_vectors
from llmjax.training import fork, warm_start

GROUPS = ("model", "task", *C.SHARED_GROUPS)
# Keys at the top of the config, beside the groups, with their defaults.
TOP_KEYS = {
    "init_from": "",  # warm start: a workdir, checkpoints/ dir, step dir or Hugging Face model dir whose matching parameters (and tokenizer) this run starts from
    "fork_from": "",  # fork: one step's directory of a run, PARENT/checkpoints/STEP, whose whole training state (and tokenizer) this run continues under its own schedule (llmjax.training.fork)
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    model: Any  # the family's config dataclass (finalized later, once the vocabulary is known)
    task: Any  # the task's config dataclass
    data: C.DataConfig
    train: C.TrainConfig
    optim: C.OptimConfig
    checkpoint: C.CheckpointConfig
    mesh: C.MeshConfig
    init_from: str = ""  # see TOP_KEYS
    fork_from: str = ""  # see TOP_KEYS


def base_config(model: str = "gpt", task: str = "lm") -> ml_collections.ConfigDict:
    """Every key llmjax reads for this model family and task, with its default."""
    c = ml_collections.ConfigDict()
    c.model = models.default_group(model)
    c.task = tasks.default_group(task)
    for name, cls in C.SHARED_GROUPS.items():
        c[name] = C.to_group(cls)
    for key, default in TOP_KEYS.items():
        c[key] = default
    return c


def sibling_config(config_file: str, name: str) -> ml_collections.ConfigDict:
    """get_config() of the config file `name` beside config_file (pass __file__): config files are
    loaded by path, not as a package, so one builds on another through this."""
    path = os.path.join(os.path.dirname(os.path.abspath(config_file)), name)
    spec = importlib.util.spec_from_file_location(os.path.splitext(name)[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def resolve(cfg: ml_collections.ConfigDict, num_devices: int | None = None) -> RunConfig:
    """Validate, then freeze. Cheap: no data, no compile. With num_devices, the mesh and the
    batch are checked against it too."""
    for group in cfg.keys():
        if group not in GROUPS and group not in TOP_KEYS:
            C.fail(group, "...", f"unknown group; known groups: {', '.join(GROUPS)}, and the "
                                 f"keys {', '.join(TOP_KEYS)}")
    top = {key: cfg.get(key, default) for key, default in TOP_KEYS.items()}
    if not isinstance(top["init_from"], str):
        C.fail("init_from", top["init_from"], "must be a path (str)")
    if top["init_from"]:
        warm_start.check_source(top["init_from"])  # parameters are there: before any data or compile
    for group in GROUPS:
        if group not in cfg:
            C.fail(group, None, f"the config lacks the group '{group}': start from "
                                "llmjax.experiment.base_config()")
    shared = {name: C.from_group(cls, cfg[name], name) for name, cls in C.SHARED_GROUPS.items()}
    run = RunConfig(model=models.resolve(cfg.model), task=tasks.resolve(cfg.task), **shared, **top)
    fork.check_key(run)
    check_pairing(run.model, run.task)
    if run.init_from:
        warm_start.check_model(run.init_from, cfg.model.to_dict())
    sizes = None if num_devices is None else C.mesh_shape(run.mesh, num_devices)
    run.model.check_run(run.data, sizes)
    if getattr(run.model, "embed_init", ""):  # the file's width and kind, from its header
        check_token_vectors(run.model.embed_init, "config.model.embed_init", run.model.d_model)
    if sizes is not None:
        shards = sizes[0] * sizes[1]
        micro = run.train.batch_size // run.train.grad_accum_steps
        if micro % shards:
            C.fail("train.batch_size", run.train.batch_size,
                   f"the per-update micro-batch {micro} must be divisible by mesh data*fsdp={shards} devices")
    return run


def check_pairing(model: Any, task: Any) -> None:
    """The family must serve the task: one of its own-head tasks (`tasks`), or a task whose head
    (`head`, llmjax.models.heads) it lists in `heads`."""
    heads = getattr(model, "heads", ())
    served = [*getattr(model, "tasks", ()),
              *(n for n in tasks.names() if getattr(tasks.TASKS.entry(n).config_cls, "head", "") in heads)]
    if task.name not in served:
        need = f" (it needs a {task.head} head)" if getattr(task, "head", "") else ""
        C.fail("task.name", task.name, f"config.model.name={model.name!r} is trained on the tasks "
               f"{', '.join(served) or '(none declared)'}{need}: pick one, or another model family")


# What a checkpoint and its token cache depend on: changing these under an existing workdir
# would silently continue a different experiment, or (optim.name) the saved optimizer state does
# not fit. Steps, eval cadence, learning rate, clipping, mesh and dtype may change.
RESUME_KEYS = ("model", "task", "data", "train.seed", "train.batch_size", "optim.name")
# Where the corpus is prepared, by how many workers, and how much of it an eval reads change no
# trained token (a moved prepared_dir is checked against the run's corpus by its fingerprint).
RESUME_FREE = ("data.prepared_dir", "data.num_workers", "data.eval_tokens",
               "model.embed_init")  # embed_init: read by a new run only; its file may be gone since


def check_resumable(saved: dict, current: dict, workdir: str) -> None:
    """Raise ConfigError when `current` cannot continue the run recorded in `saved`."""
    change = C.first_change(saved, current, RESUME_KEYS, RESUME_FREE)
    if change is not None:
        key, a, b = change
        raise C.ConfigError(f"config.{key}={b!r} but the run in {workdir} used {a!r}: "
                            "pass the same value to resume, or a new --workdir to start afresh")


def train_and_evaluate(run: RunConfig, workdir: str, log: Callable[[str], None] = print,
                       on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train run's model on run's task in workdir (resuming from its newest good checkpoint);
    the final eval metrics with the task's baselines. on_start: see training.loop.train."""
    from llmjax.training import loop

    return loop.train(tasks.build(run), run, workdir, log, on_start)
