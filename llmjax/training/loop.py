"""The pretraining loop: prepare data, build the model and state on the mesh, restore,
train with periodic eval and checkpoints, then print sampled continuations.

The hot loop never waits on the device: metrics of step N are fetched after step N+1 has
been dispatched, and the next batch is built on the host while the device computes.
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from llmjax import sharding
from llmjax.config import ConfigError, RunConfig, mesh_shape
from llmjax.data.pipeline import PackedBatches, prepare
from llmjax.generation.decode import generate
from llmjax.models import registry
from llmjax.models.gpt import flops_per_token
from llmjax.training import optim
from llmjax.training.checkpoint import Checkpointer
from llmjax.training.metrics import MetricsWriter, bits_per_byte, peak_flops
from llmjax.training.progress import Progress
from llmjax.training.state import abstract_state, count_params, create, init_fn
from llmjax.training.step import jit_train_step, make_eval_step, make_train_step

PROMPTS = ("def ", "class ", "import ", "The ")


class _Preempted:
    """SIGTERM (preemption, scancel, Ctrl-C twice) -> save a checkpoint and stop cleanly."""

    def __init__(self):
        self.requested = False
        try:
            signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. a notebook helper thread)
            pass

    def _handle(self, *_):
        self.requested = True


def _evaluate(eval_step, params, batches: PackedBatches, steps: int, put) -> dict[str, float]:
    nll = weight = nbytes = 0.0
    for i in range(steps):
        sums = jax.device_get(eval_step(params, put(batches, i)))
        nll += float(sums["nll_sum"])
        weight += float(sums["weight_sum"])
        nbytes += float(sums["byte_sum"])
    loss = nll / max(weight, 1.0)
    return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))),
            "bits_per_byte": bits_per_byte(nll, nbytes), "tokens": weight}


def train_and_evaluate(cfg: RunConfig, workdir: str,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train cfg's model in workdir, resuming from its newest good checkpoint. Returns the
    final eval metrics together with the unigram baseline."""
    t0 = time.time()
    primary = jax.process_index() == 0
    t, d = cfg.train, cfg.data
    mesh = sharding.make_mesh(mesh_shape(cfg.mesh, jax.device_count()))

    # Data first on process 0 (tokenizer training, token cache), then the others reuse it.
    try:
        if primary:
            data = prepare(d, workdir, log=log)
        multihost_utils.sync_global_devices("llmjax:data")
        if not primary:
            data = prepare(d, workdir, log=lambda _: None)
    except ValueError as e:  # the data modules raise one-line ValueErrors for bad input
        raise ConfigError(str(e)) from e
    tok = data.tokenizer
    platform = jax.devices()[0].platform
    model_cfg = cfg.model_config(tok.vocab_size, platform)
    if model_cfg.vocab_size % mesh.shape["tensor"]:
        raise ConfigError(f"config.mesh.tensor={mesh.shape['tensor']} must divide the padded vocabulary "
                          f"{model_cfg.vocab_size}: set config.model.vocab_multiple to a multiple of it")
    model = registry.build(model_cfg)
    eval_model = model  # deterministic=True at call time turns dropout off

    tx = optim.optimizer(cfg.optim, t.num_steps)
    lr_fn = optim.schedule(cfg.optim, t.num_steps)
    batch_sh = sharding.batch_sharding(mesh)
    train_batches = PackedBatches(data.train_tokens, d.seq_len, t.batch_size, t.seed, shuffle=True,
                                  document_mask=d.document_mask, eos_id=tok.eos_id)
    micro = t.batch_size // t.grad_accum_steps
    eval_batches = PackedBatches(data.val_tokens, d.seq_len, micro, t.seed, shuffle=False,
                                 document_mask=d.document_mask, eos_id=tok.eos_id)

    def put(batches: PackedBatches, step: int) -> dict[str, jax.Array]:
        rows = sharding.process_rows(batch_sh, batches.batch_size)
        return sharding.global_batch(batches.batch(step, rows), batch_sh, batches.batch_size)

    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
        init = init_fn(model, tx, d.seq_len, t.seed)
        abstract, state_sh = abstract_state(init, mesh)
        ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), cfg.checkpoint.keep,
                            cfg.checkpoint.async_save, log=log)
        restored = ckpt.restore(abstract)
        if restored is None:
            state, start = create(init, state_sh), 0
        else:
            state, meta = restored
            start = int(jax.device_get(state.step))
            if meta.get("data_step", start) != start:
                raise ValueError(f"checkpoint {start} is inconsistent: data_step={meta.get('data_step')}")
            log(f"resumed from step {start} (checkpoint in {ckpt.directory})")
        train_step = jit_train_step(
            make_train_step(model, tx, lr_fn, seed=t.seed, grad_accum_steps=t.grad_accum_steps,
                            z_loss=t.z_loss), state_sh, batch_sh)
        eval_step = jax.jit(make_eval_step(eval_model, jnp.asarray(tok.byte_lengths(), jnp.float32)),
                            in_shardings=(state_sh.params, batch_sh))

        n_params = count_params(state.params)
        fpt = flops_per_token(model_cfg, d.seq_len)
        peak = peak_flops()
        n_dev = jax.device_count()
        log(f"model: {model_cfg.name} {n_params / 1e6:.2f}M parameters, {fpt / 1e6:.1f} MFLOPs/token "
            f"(6N + attention), vocab {model_cfg.vocab_size}, {model_cfg.position} positions, "
            f"{model_cfg.attention_backend} attention, {t.dtype} compute")
        log(f"mesh: data={mesh.shape['data']} fsdp={mesh.shape['fsdp']} tensor={mesh.shape['tensor']} "
            f"on {n_dev} {jax.devices()[0].device_kind} device(s), {jax.process_count()} process(es)")
        log(f"unigram baseline (val loss of the train token frequencies): {data.unigram_loss:.4f}")

        writer = MetricsWriter(workdir, resume_step=start)
        preempt = _Preempted()
        tokens_per_step = t.batch_size * d.seq_len
        progress = Progress(t.num_steps, start, tokens_per_step, fpt, peak, n_dev,
                            enabled=t.progress and primary)
        last_eval: dict[str, float] = {}

        def save(step: int) -> None:
            ckpt.save(step, state, {"data_step": step, "seed": t.seed, "tokens_seen": step * tokens_per_step})

        def evaluate(step: int) -> dict[str, float]:
            out = _evaluate(eval_step, state.params, eval_batches, t.eval_steps, put)
            writer.write({"step": step, "split": "eval", **out})
            progress.write(f"step {step}: eval loss {out['loss']:.4f}, perplexity {out['perplexity']:.2f}, "
                           f"bits/byte {out['bits_per_byte']:.4f} (unigram baseline {data.unigram_loss:.4f})")
            return out

        pending = None  # (step, metrics on device) of the previous update
        batch = put(train_batches, start) if start < t.num_steps else None
        for step in range(start + 1, t.num_steps + 1):
            state, metrics = train_step(state, batch)
            if step < t.num_steps:  # host builds the next batch while the device computes
                batch = put(train_batches, step)
            if pending is not None:
                progress.update(*pending, writer=writer, log_every=t.log_every)
            pending = (step, metrics)
            do_save = step % cfg.checkpoint.every_steps == 0 or step == t.num_steps or preempt.requested
            do_eval = step % t.eval_every == 0 or step == t.num_steps
            if do_save or do_eval:
                progress.update(*pending, writer=writer, log_every=t.log_every)
                pending = None
                if do_save:
                    save(step)  # before eval: an eval failure never loses the step (nanochat #446)
                if do_eval:
                    last_eval = evaluate(step)
                progress.reset_clock()  # tokens/s counts training time only
            if preempt.requested:
                log(f"SIGTERM: saved step {step}; run the same command to resume")
                break
        if pending is not None:
            progress.update(*pending, writer=writer, log_every=t.log_every)
        progress.close()
        ckpt.close()
        end = int(jax.device_get(state.step))
        if not last_eval and start == end:
            last_eval = evaluate(end)
        writer.close()

        if t.num_samples and not preempt.requested:  # every process: params may be sharded
            log("samples (temperature 0.8, top-k 50):")
            for i, prompt in enumerate(PROMPTS[: t.num_samples]):
                ids = np.asarray([tok.encode(prompt)], np.int32)
                room = model_cfg.max_len - ids.shape[1]
                if room <= 0:
                    continue
                new = generate(model, state.params, ids, max_new_tokens=min(t.sample_tokens, room),
                               rng=jax.random.key(t.seed + i), temperature=0.8, top_k=50,
                               eos_id=tok.eos_id)
                text = tok.decode([x for x in np.asarray(new)[0].tolist() if x != tok.eos_id])
                log(f"--- {prompt!r}\n{prompt}{text}")

    if last_eval:
        log(f"done in {time.time() - t0:.0f}s: step {end}, val loss {last_eval['loss']:.4f} "
            f"vs unigram baseline {data.unigram_loss:.4f}")
    return {**last_eval, "unigram_loss": data.unigram_loss, "step": end}
