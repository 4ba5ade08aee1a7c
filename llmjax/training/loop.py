"""The one training loop, for every task: build the model and state on the mesh, restore, train
with periodic eval and checkpoints, then let the task show what it learned.

It knows a task only through llmjax.tasks.base.Task and a model family only through the
registry. The hot loop never waits on the device: metrics of step N are fetched after step N+1
has been dispatched, and the next batch is built on the host while the device computes.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from llmjax import sharding
from llmjax.config import ConfigError, UserError, mesh_shape
from llmjax.models import registry
from llmjax.tasks.base import Task
from llmjax.training import budget, embed_init, fork, optim, warm_start
from llmjax.training.checkpoint import Checkpointer, CheckpointError
from llmjax.training.metrics import (MetricsWriter, peak_flops, write_eval_details, write_json,
                                    write_results)
from llmjax.training.preemption import Preemption
from llmjax.training.progress import Progress, with_prefix
from llmjax.training.state import abstract_state, count_params, create, init_fn
from llmjax.training.step import jit_train_step, make_eval_step, make_train_step
from llmjax.training.workdir import MODEL_JSON, check_data_order, data_order

Log = Callable[[str], None]


class DivergedError(UserError):
    """A non-finite loss or gradient: the run stops, nothing after it is saved."""


class _FiniteGuard:
    """Stops the run with one line at the first non-finite update. The steps' flags are fetched
    together once per log window and always before a save (no per-step host sync), so no
    non-finite state is ever written or rotates a good checkpoint out."""

    def __init__(self, ckpt: Checkpointer):
        self._ckpt = ckpt
        self._unchecked: list[tuple[int, dict]] = []

    def add(self, step: int, metrics: dict) -> None:
        self._unchecked.append((step, metrics))

    def check(self) -> None:
        steps, self._unchecked = self._unchecked, []
        flags = jax.device_get([m["finite"] for _, m in steps])
        bad = next((i for i, ok in enumerate(flags) if not ok), None)
        if bad is None:
            return
        step, metrics = steps[bad]
        m = {k: float(jax.device_get(metrics[k])) for k in ("loss", "grad_norm", "lr")}
        saved = self._ckpt.all_steps()
        where = (f"the newest checkpoint, step {saved[-1]} in {self._ckpt.directory}, is finite and kept"
                 if saved else "no checkpoint was saved")
        raise DivergedError(
            f"step {step}: training diverged (loss {m['loss']}, gradient norm {m['grad_norm']}, "
            f"lr {m['lr']:.3g}); {where}: lower config.optim.lr, lengthen optim.warmup_steps or set "
            "optim.grad_clip, then run again to resume from it")


_DECAYING = ("cosine", "linear", "wsd")


def _prepare_data(task: Task, workdir: str, log: Log, resuming: bool) -> None:
    """Data on process 0 first (tokenizer training, token cache), then the others reuse it."""
    try:
        if jax.process_index() == 0:
            task.prepare(workdir, log, resuming)
        multihost_utils.sync_global_devices("llmjax:data")
        if jax.process_index() != 0:
            task.prepare(workdir, lambda _: None, resuming)
    except ValueError as e:  # the data modules raise one-line ValueErrors for bad input
        raise ConfigError(str(e)) from e


def _put(mesh, make_batch: Callable[..., dict], index: int, rows: int) -> dict[str, jax.Array]:
    """Batch `index` from the task, this host's rows only, as global arrays on the mesh."""
    local = make_batch(index, sharding.process_rows(mesh, rows))
    return sharding.global_batch(local, mesh, rows)


def _eval_totals(task: Task, eval_step, params, put_eval,
                 stop: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
    """The eval's sums over the task's eval batches; None when stop(), asked before each batch,
    requests a save-and-stop: a SIGTERM during a whole-split eval (longer than a preemption's
    grace period on a large split) takes effect after the current batch."""
    totals: dict[str, Any] = {}
    for i in range(task.num_eval_batches):
        if stop():
            return None
        sums = jax.device_get(eval_step(params, put_eval(i)))
        for k, v in sums.items():  # scalars, or arrays such as a confusion matrix
            totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    return totals


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What the steps need, built once: the model, the update rule, the state and its shardings."""
    model: Any
    model_cfg: Any
    tx: Any
    lr_fn: Any
    state: Any
    state_sh: Any
    train: Any  # config.train with num_steps resolved (train.budget_flops)
    start: int
    horizon: int  # the schedule's length; a resumed run keeps the one it started with
    ckpt: Checkpointer


def _setup(task: Task, cfg: Any, workdir: str, mesh, log: Log) -> _Setup:
    """Data, model, optimizer, and the state restored from the newest good checkpoint or new.
    Call under the mesh and the logical-axis rules."""
    t = cfg.train
    ck_dir = os.path.join(workdir, "checkpoints")
    resuming = os.path.isdir(ck_dir) and any(n.isdigit() for n in os.listdir(ck_dir))
    source = fork.check(cfg) if cfg.fork_from and not resuming else None  # a new fork: before any data
    init_from = cfg.init_from or warm_start.converted(workdir)
    lr_multipliers = registry.lr_multipliers(cfg.model)
    optim.check_lr_multipliers(cfg.optim, lr_multipliers)  # before any data work
    ckpt = Checkpointer(ck_dir, cfg.checkpoint.keep, cfg.checkpoint.async_save, log=log)
    meta = ckpt.newest_meta() if resuming else None
    if meta is not None:  # another seed, batch or row length: not this run's batches
        check_data_order(meta, cfg, task.tokens_per_step() // t.batch_size, ck_dir)
    parent = init_from or cfg.fork_from  # whose tokenizer a new run adopts
    if parent and not resuming and jax.process_index() == 0:
        warm_start.adopt_tokenizer(parent, workdir, log)
    _prepare_data(task, workdir, log, resuming)  # resuming: a changed corpus is refused
    model_cfg = task.model_config(jax.devices()[0].platform)
    if model_cfg.vocab_size % mesh.shape["tensor"]:
        raise ConfigError(f"config.mesh.tensor={mesh.shape['tensor']} must divide the padded vocabulary "
                          f"{model_cfg.vocab_size}: set config.model.vocab_multiple to a multiple of it")
    model = registry.build(model_cfg)
    if t.budget_flops:
        shapes = jax.eval_shape(functools.partial(task.init_params, model), jax.random.key(0))
        t = budget.with_budget(t, task.flops_per_step(model_cfg), count_params(shapes),
                               task.tokens_per_step())
        log(f"train.budget_flops={t.budget_flops:.3g} ({t.budget_rule} FLOPs): {t.num_steps} steps")
    horizon = t.num_steps
    tx = optim.optimizer(cfg.optim, horizon, lr_multipliers)
    init = init_fn(functools.partial(task.init_params, model), tx, t.seed)
    abstract, state_sh = abstract_state(init, mesh)
    restored = ckpt.restore(abstract)
    if restored is None and source is not None:  # the parent's state, under this run's own schedule
        return _Setup(model, model_cfg, tx, optim.schedule(cfg.optim, horizon),
                      fork.restore(source, abstract, log), state_sh, t, source.step, horizon, ckpt)
    if restored is None:
        state = create(init, state_sh)
        if init_from:  # a new run warm-started from another's parameters (a resumed one is not)
            state = state.replace(params=warm_start.restore_params(init_from, state.params, log))
        if getattr(model_cfg, "embed_init", ""):  # trained token vectors (llmjax.training.embed_init)
            rows = task.token_vectors(model_cfg, workdir)
            state = state.replace(params=embed_init.apply(state.params, rows, model_cfg, log))
        return _Setup(model, model_cfg, tx, optim.schedule(cfg.optim, horizon), state,
                      state_sh, t, 0, horizon, ckpt)
    state, meta = restored
    start = int(jax.device_get(state.step))
    if meta.get("data_step", start) != start:
        raise CheckpointError(f"checkpoint {start} in {ck_dir} is inconsistent (data_step="
                              f"{meta.get('data_step')}): restore it from a backup or use a new --workdir")
    log(f"resumed from step {start} (checkpoint in {ckpt.directory})")
    horizon = int(meta.get("schedule_steps", horizon))
    if horizon != t.num_steps and cfg.optim.schedule in _DECAYING:
        log(f"train.num_steps={t.num_steps}, but this run's {cfg.optim.schedule} schedule was "
            f"built for {horizon} steps: it keeps that horizon (the lr stays at its final value "
            "past it); for a new decay, start a new --workdir")
        tx = optim.optimizer(cfg.optim, horizon, lr_multipliers)  # the same state tree: the schedule is not in it
    return _Setup(model, model_cfg, tx, optim.schedule(cfg.optim, horizon), state, state_sh, t, start,
                  horizon, ckpt)


def train(task: Task, cfg: Any, workdir: str, log: Log = print,
          on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train cfg's model on `task` in workdir, resuming from its newest good checkpoint.
    on_start runs once the run is known to be able to start (data prepared, model built, state
    created or restored), before the first step: the entry point records the run's config there.
    Returns the final eval metrics with the task's baselines and the step reached."""
    t0 = time.time()
    mesh = sharding.make_mesh(mesh_shape(cfg.mesh, jax.device_count()))

    with sharding.use_mesh(mesh):
        run = _setup(task, cfg, workdir, mesh, log)
        # Batch rows are read once the data is prepared (a task may size them from it).
        put_train = functools.partial(_put, mesh, task.train_batch, rows=task.batch_size)
        put_eval = functools.partial(_put, mesh, task.eval_batch, rows=task.eval_batch_size)
        t = run.train
        model, model_cfg, state, start, ckpt, horizon = (run.model, run.model_cfg, run.state, run.start,
                                                         run.ckpt, run.horizon)
        batch = put_train(start) if start < t.num_steps else None
        # Batch shardings depend only on each leaf's rank: read them off host batches.
        train_step = jit_train_step(
            make_train_step(task, model, run.tx, run.lr_fn, seed=t.seed, grad_accum_steps=t.grad_accum_steps),
            run.state_sh, sharding.batch_shardings(mesh, task.train_batch(start)))
        eval_step = jax.jit(make_eval_step(task, model),
                            in_shardings=(run.state_sh.params, sharding.batch_shardings(mesh, task.eval_batch(0))))

        n_params = count_params(state.params)
        tokens_per_step = task.tokens_per_step()
        fpt = task.flops_per_step(model_cfg) / tokens_per_step
        log(f"model: {model_cfg.name} {n_params / 1e6:.2f}M parameters, {with_prefix(fpt, 'FLOPs')}/token, "
            f"{model_cfg.summary()}, {t.dtype} compute")
        log(f"mesh: data={mesh.shape['data']} fsdp={mesh.shape['fsdp']} tensor={mesh.shape['tensor']} "
            f"on {jax.device_count()} {jax.devices()[0].device_kind} device(s), "
            f"{jax.process_count()} process(es)")
        task.describe(log)
        warning = optim.warmup_warning(cfg.optim, horizon)
        if warning:
            log(warning)

        if on_start is not None:
            on_start()
        # The finalized model config (vocabulary, lengths): rebuilds this model without the data.
        write_json(workdir, MODEL_JSON, registry.config_to_dict(model_cfg))
        writer = MetricsWriter(workdir, resume_step=start)
        preempt = Preemption()
        stopped = False  # saved and stopped on request (SIGTERM, Ctrl-C)
        progress = Progress(t.num_steps, start, tokens_per_step, fpt, peak_flops(), jax.device_count(),
                            enabled=t.progress and jax.process_index() == 0)
        last_eval: dict[str, float] = {}
        eval_step_at = 0  # the step last_eval was measured at

        def save(step: int) -> None:
            ckpt.save(step, state, {"data_step": step, **data_order(cfg), "schedule_steps": horizon,
                                    "tokens_seen": step * tokens_per_step})

        def evaluate(step: int, stop: Callable[[], bool] = lambda: False) -> dict[str, float] | None:
            """The eval at step, logged and recorded; None (nothing recorded) when stop() cut it short."""
            totals = _eval_totals(task, eval_step, state.params, put_eval, stop)
            if totals is None:
                return None
            out = {**task.eval_metrics(totals), **task.decoded_metrics(model, state.params)}
            write_eval_details(workdir, step, task.eval_details(totals))
            writer.write({"step": step, "split": "eval", **out})
            progress.write(f"step {step}: {task.eval_line(out)}")
            return out

        guard = _FiniteGuard(ckpt)

        def flush(pending, before_save: bool = False) -> None:
            """A step's metrics, once a later step is dispatched (or before a save)."""
            guard.add(*pending)
            if before_save or pending[0] % t.log_every == 0:
                guard.check()
            progress.update(*pending, writer=writer, log_every=t.log_every)

        try:
            pending = None  # (step, metrics on device) of the previous update
            for step in range(start + 1, t.num_steps + 1):
                state, metrics = train_step(state, batch)
                stopped = preempt.requested()  # once per step (and between eval batches), on every host
                ckpt.check()  # a background save that failed (a full disk) stops the run here
                if step < t.num_steps:  # host builds the next batch while the device computes
                    batch = put_train(step)
                if pending is not None:
                    flush(pending)
                pending = (step, metrics)
                do_save = step % cfg.checkpoint.every_steps == 0 or step == t.num_steps or stopped
                do_eval = step % t.eval_every == 0 or step == t.num_steps
                if do_save or do_eval:
                    flush(pending, before_save=True)
                    pending = None
                    if do_save:
                        save(step)  # before eval: an eval failure never loses the step (nanochat #446)
                    if do_eval:
                        result = evaluate(step, preempt.requested)
                        if result is None:  # stop requested during the eval: save this step and stop
                            stopped = True
                            if not do_save:
                                save(step)
                        else:
                            last_eval, eval_step_at = result, step
                    progress.reset_clock()  # tokens/s counts training time only
                if stopped:
                    log(f"stop requested: saved step {step}; run the same command to resume")
                    break
            if pending is not None:
                flush(pending, before_save=True)
        finally:  # a pending save finishes (or raises) even when the run stops on an error
            preempt.close()
            progress.close()
            ckpt.close()
        end = int(jax.device_get(state.step))
        if not last_eval and start == end:
            last_eval, eval_step_at = evaluate(end), end
        writer.close()
        if not stopped:
            task.after_training(model, state.params, log)

    if stopped:
        seen = f"; last eval (step {eval_step_at}): {task.eval_line(last_eval)}" if last_eval else ""
        log(f"stopped at step {end} on request after {time.time() - t0:.0f}s{seen}")
    elif last_eval:
        log(f"done in {time.time() - t0:.0f}s: step {end}, {task.eval_line(last_eval)}")
    results = {**last_eval, **task.baselines(), "step": end, "params": n_params,
               "tokens_seen": end * tokens_per_step}
    if not stopped and eval_step_at == end:
        write_results(workdir, results)
    return results
