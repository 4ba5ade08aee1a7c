"""Time the full train step (forward, backward, optimizer) of a config, after warm-up.

Prints, per batch size: step time, tokens/s, model FLOPs per token, MFU against the device's
peak (or TFLOP/s where the peak is unknown), peak device memory, and the reference figures
measured on the same kind of device. With --real_data it also runs the real input pipeline
(tokenized corpus -> packed rows -> host-to-device) and reports how much slower that is; with
--config.data.prepared_dir=DIR it reads the corpus `python -m llmjax.prepare` prepared there.

  python experiments/bench_step.py --config=configs/gpt2_124m.py --batch_sizes=8,16,32
  python experiments/bench_step.py --config=configs/gpt_small.py --batch_sizes=8 --steps=5   # CPU, CI-sized

Like `python -m llmjax.main`, the script first re-executes itself with malloc on transparent huge
pages (llmjax.allocator; LLMJAX_NO_REEXEC=1 opts out), so its figures are the main job's.
"""
from __future__ import annotations

import atexit
import functools
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmjax import allocator  # noqa: E402

if __name__ == "__main__":
    allocator.reexec_with_huge_pages()  # before jax is imported: glibc reads it at start

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from llmjax import sharding  # noqa: E402
from llmjax.config import mesh_shape  # noqa: E402
from llmjax.experiment import resolve  # noqa: E402
from llmjax.models import registry  # noqa: E402
from llmjax.tasks.lm import LMTask  # noqa: E402
from llmjax.tasks.mlm import MLMTask  # noqa: E402
from llmjax.training import optim  # noqa: E402
from llmjax.training.metrics import peak_flops  # noqa: E402
from llmjax.training.state import abstract_state, count_params, create, init_fn  # noqa: E402
from llmjax.training.step import jit_train_step, make_train_step  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gpt2_124m.py", "Config to benchmark.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["16"], "Global batch sizes (sequences) to time.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per batch size.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation, autotuning).")
_REAL = flags.DEFINE_bool("real_data", False, "Also time with the real input pipeline.")

# tokens/s measured on this project's H100 80GB (experiments/README.md's reference table, with sources), by device kind,
# model (layers, width, seq) and batch.
REFERENCE = {
    ("H100", (12, 768, 1024), 12): "nanoGPT 436K",
    ("H100", (12, 768, 1024), 16): "plain Flax 474K",
    ("H100", (12, 768, 1024), 32): "nanoGPT 472K (40.8% MFU); plain Flax 444K",
    ("H100", (12, 768, 1024), 48): "plain Flax 418K",
}


def _vocab(run) -> int:
    """The vocabulary size the tokenizer would give, without training one."""
    # byte: 256 + EOS; char: tinyshakespeare's 65 + EOS + UNK; sentencepiece: the pieces. Then
    # the BERT specials every tokenizer appends ([PAD] [CLS] [SEP] [MASK]; [UNK] is its own, or
    # a fifth for byte).
    specials = 5 if run.data.tokenizer == "byte" else 4
    return {"byte": 257, "char": 67}.get(run.data.tokenizer, run.data.vocab_size) + specials


def _reference(model_cfg, seq_len: int, batch: int) -> str:
    kind = jax.devices()[0].device_kind
    for (dev, shape, b), text in REFERENCE.items():
        if dev in kind and shape == (model_cfg.num_layers, model_cfg.d_model, seq_len) and b == batch:
            return text
    return "-"


def _peak_memory() -> str:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return f"{stats['peak_bytes_in_use'] / 2**30:.1f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB host RSS"


def _synthetic(task, batch: int, seq_len: int, vocab: int, mesh) -> dict:
    """A batch of the task's layout with random tokens (no corpus, no tokenizer training)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab, size=(batch, seq_len + 1), dtype=np.int32)
    if isinstance(task, MLMTask):
        P = task.max_predictions
        positions = np.sort(np.stack([rng.choice(seq_len, P, replace=False) for _ in range(batch)]), -1)
        host = {"inputs": tokens[:, :-1], "token_types": (np.arange(seq_len) >= seq_len // 2)[None].repeat(batch, 0).astype(np.int32),
                "attention_mask": np.ones((batch, seq_len), np.int32),
                "mlm_positions": positions.astype(np.int32),
                "mlm_ids": np.take_along_axis(tokens[:, :-1], positions, 1),
                "mlm_weights": np.ones((batch, P), np.float32),
                "nsp_labels": rng.integers(0, 2, batch, dtype=np.int32),
                "weights": np.ones((batch,), np.float32)}
    else:
        host = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                "weights": np.ones((batch, seq_len), np.float32)}
    return host


def _time(step, state, next_batch, steps: int, warmup: int):
    for i in range(warmup):
        state, m = step(state, next_batch(i))
    jax.block_until_ready(m["loss"])
    t0 = time.perf_counter()
    for i in range(steps):
        state, m = step(state, next_batch(warmup + i))
    loss = float(m["loss"])  # the real loss, fetched: the step cannot be skipped
    return (time.perf_counter() - t0) / steps, state, loss


def main(argv):
    del argv
    run = resolve(_CONFIG.value, jax.device_count())
    vocab = _vocab(run)
    platform = jax.devices()[0].platform
    seq = run.data.seq_len
    model_cfg = run.model.finalize(vocab_size=vocab, max_len=seq, platform=platform, dtype=run.train.dtype)
    model = registry.build(model_cfg)
    task = {"lm": LMTask, "mlm": MLMTask}[run.task.name](run)  # objective and example input; batches made here
    tx, lr = optim.optimizer(run.optim, run.train.num_steps), optim.schedule(run.optim, run.train.num_steps)
    mesh = sharding.make_mesh(mesh_shape(run.mesh, jax.device_count()))
    fpt = task.flops_per_step(model_cfg) / task.tokens_per_step()
    peak = peak_flops()
    real = None
    if _REAL.value and run.task.name != "lm":
        raise app.UsageError("--real_data times the LM pipeline: use it with an LM config")
    if _REAL.value:
        from llmjax.data.pipeline import PackedBatches, prepare

        workdir = os.path.join(tempfile.gettempdir(), "llmjax-bench-data")
        if run.data.prepared_dir:  # a prepared corpus: the run directory only holds its tokenizer's copy
            workdir = tempfile.mkdtemp(prefix="llmjax-bench-step-")
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        real = (prepare(run.data, workdir, log=lambda m: print(m, flush=True)), PackedBatches)

    print(f"device: {jax.device_count()} x {jax.devices()[0].device_kind} ({platform}); "
          f"peak {peak / 1e12:.0f} TFLOP/s bf16" if peak else
          f"device: {jax.device_count()} x {jax.devices()[0].device_kind} ({platform}); peak unknown")
    rows = []
    with sharding.use_mesh(mesh):
        init = init_fn(functools.partial(task.init_params, model), tx, run.train.seed)
        _, state_sh = abstract_state(init, mesh)
        for b in (int(x) for x in _BATCHES.value):
            state = create(init, state_sh)
            n_params = count_params(state.params)
            host = _synthetic(task, b, seq, model_cfg.vocab_size, mesh)
            step = jit_train_step(make_train_step(task, model, tx, lr, seed=0,
                                                  grad_accum_steps=run.train.grad_accum_steps),
                                  state_sh, sharding.batch_shardings(mesh, host))
            batch = sharding.global_batch(host, mesh, b)
            dt, state, loss = _time(step, state, lambda i: batch, _STEPS.value, _WARMUP.value)
            row = {"batch": b, "ms": 1e3 * dt, "tok_s": b * seq / dt, "loss": loss,
                   "mem": _peak_memory(), "ref": _reference(model_cfg, seq, b)}
            if real is not None:
                prepared, packed_cls = real
                batches = packed_cls(prepared.train_tokens, seq, b, 0, shuffle=True)
                rows_slice = sharding.process_rows(mesh, b)
                put = lambda i: sharding.global_batch(batches.batch(i, rows_slice), mesh, b)  # noqa: E731
                dt_real, state, _ = _time(step, state, put, _STEPS.value, 1)
                row["real_slowdown"] = dt_real / dt - 1.0
            rows.append(row)
            del state, step

    print(f"\nmodel: {model_cfg.num_layers} layers, d_model {model_cfg.d_model}, {model_cfg.num_heads} heads, "
          f"seq {seq}, vocab {model_cfg.vocab_size}, {n_params / 1e6:.1f}M params, {fpt:.3g} FLOPs/token, "
          f"{model_cfg.dtype} compute, {model_cfg.attention_backend} attention, remat {model_cfg.remat}")
    head = f"{'batch':>5} {'ms/step':>9} {'tokens/s':>10} {'MFU' if peak else 'TFLOP/s':>8} {'peak mem':>18}"
    if real is not None:
        head += f" {'real data':>10}"
    print(head + "  reference tokens/s (same device)")
    for r in rows:
        perf = r["tok_s"] * fpt
        eff = f"{100 * perf / (peak * jax.device_count()):.1f}%" if peak else f"{perf / 1e12:.3f}"
        line = f"{r['batch']:>5} {r['ms']:>9.1f} {r['tok_s']:>10,.0f} {eff:>8} {r['mem']:>18}"
        if "real_slowdown" in r:
            line += f" {100 * r['real_slowdown']:>+9.1f}%"
        print(line + f"  {r['ref']}")
    print("(loss of the last timed step, synthetic tokens: " + ", ".join(f"{r['loss']:.3f}" for r in rows) + ")")


if __name__ == "__main__":
    app.run(main)
