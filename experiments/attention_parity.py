"""cuDNN attention against XLA attention, forward and gradients, before a GPU is timed.

The GPU path (attention_backend "cudnn", the default on GPU) has tests against a float64
reference for its forward pass only; its gradients are what training uses. This script runs
llmjax.blocks.attention in bfloat16 with the candidate backend and with "xla" on the same inputs,
and both against a float32 "xla" reference of those (bf16-rounded) inputs, for:
  causal         plain causal self-attention, multi-head (cuDNN's is_causal path)
  packed_alibi   causal + packed documents with a padded tail, GQA, ALiBi from per-document positions
  padded_gqa     bidirectional (BERT) with a padded tail, GQA
  cross          cross-attention (query length != key length), packed source and target documents
  layer          the Attention layer (projections included): GQA, ALiBi, packed documents;
                 gradients with respect to its parameters and its input
Kernel cases compare the output and the gradients with respect to q, k and v of <out, c> for a
fixed random cotangent c. A quantity passes when it is finite and the candidate's largest error
against the float32 reference is at most max(2 x XLA's own bfloat16 error, 1% of the
reference's largest value). The table also prints max|candidate - xla| and that relative to the
reference's largest value. Exit status 1 on any mismatch or error.

  python experiments/attention_parity.py                    # on a GPU (experiments/gpu_bench.sh runs it first)
  python experiments/attention_parity.py --candidate=jax    # jax's own XLA path: checks the script on CPU

Without a GPU (and --candidate=cudnn) it prints one line saying so and exits 0.

Shape key: B batch, L query length, S key length, H query heads, K key/value heads, D head dim,
E embed width.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from llmjax.blocks.attention import Attention, AttentionConfig, dot_product_attention  # noqa: E402
from llmjax.blocks.positions import alibi_bias  # noqa: E402

REF_FACTOR, REF_FLOOR = 2.0, 0.01  # tolerance: max(REF_FACTOR * xla's error, REF_FLOOR * max|ref|)


@dataclasses.dataclass(frozen=True)
class Row:
    case: str
    quantity: str
    ref_max: float  # max |reference|
    xla_err: float  # max |xla(bf16) - reference|
    cand_err: float  # max |candidate(bf16) - reference|
    diff: float  # max |candidate - xla|
    finite: bool

    @property
    def tol(self) -> float:
        return max(REF_FACTOR * self.xla_err, REF_FLOOR * self.ref_max)

    @property
    def ok(self) -> bool:
        return self.finite and self.cand_err <= self.tol


def _segments(rng: np.random.Generator, B: int, L: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Packed-document segment ids (B, L) (1, 2, ...; 0 on a padded tail of `pad` tokens in rows
    past the first) and positions restarting at 0 in each document."""
    seg, pos = np.zeros((B, L), np.int32), np.zeros((B, L), np.int32)
    for b in range(B):
        end = L - (pad if b else 0)
        cuts = np.sort(rng.choice(np.arange(1, end), size=min(3, end - 1), replace=False))
        for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, end])):
            seg[b, lo:hi], pos[b, lo:hi] = i + 1, np.arange(hi - lo)
    return seg, pos


def _precision(dtype: Any) -> contextlib.AbstractContextManager:
    """The float32 reference in full float32 matmuls (a GPU's default may round them to TF32)."""
    if jnp.dtype(dtype) == jnp.float32:
        return jax.default_matmul_precision("highest")
    return contextlib.nullcontext()


def _compare(case: str, quantities: dict[str, tuple[Any, Any, Any]]) -> list[Row]:
    """quantity -> (reference, xla, candidate) arrays: one row each."""
    rows = []
    for name, (ref, xla, cand) in quantities.items():
        ref, xla, cand = (np.asarray(a, np.float64) for a in (ref, xla, cand))
        rows.append(Row(case, name, float(np.max(np.abs(ref))), float(np.max(np.abs(xla - ref))),
                        float(np.max(np.abs(cand - ref))), float(np.max(np.abs(cand - xla))),
                        bool(np.isfinite(cand).all() and np.isfinite(xla).all())))
    return rows


def _kernel_case(case: str, candidate: str, rng: np.random.Generator, *, B: int, L: int, S: int,
                 H: int, K: int, D: int, causal: bool, **masks: Any) -> list[Row]:
    """dot_product_attention's output and its gradients with respect to q, k, v."""
    q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.bfloat16)
               for shape in ((B, L, H, D), (B, S, K, D), (B, S, K, D)))
    cotangent = jnp.asarray(rng.normal(size=(B, L, H, D)), jnp.float32)

    def run(backend: str, dtype) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        def f(q, k, v):
            out = dot_product_attention(q, k, v, causal=causal, backend=backend, **masks)
            return jnp.sum(out.astype(jnp.float32) * cotangent), out
        with _precision(dtype):
            grads, out = jax.jit(jax.grad(f, argnums=(0, 1, 2), has_aux=True))(
                *(a.astype(dtype) for a in (q, k, v)))
        return out, grads

    (ref, ref_g), (xla, xla_g), (cand, cand_g) = (
        run("xla", jnp.float32), run("xla", jnp.bfloat16), run(candidate, jnp.bfloat16))
    quantities = {"out": (ref, xla, cand)}
    for i, name in enumerate(("dq", "dk", "dv")):
        quantities[name] = (ref_g[i], xla_g[i], cand_g[i])
    return _compare(case, quantities)


def _layer_case(candidate: str, rng: np.random.Generator, *, B: int, L: int) -> list[Row]:
    """The Attention layer in bfloat16 (float32 parameters): output, parameter and input gradients."""
    H, K, D, E = 8, 2, 64, 256
    seg, pos = _segments(rng, B, L, pad=L // 8)
    x_BxLxE = jnp.asarray(rng.normal(size=(B, L, E)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(B, L, E)), jnp.float32)
    base = AttentionConfig(num_heads=H, num_kv_heads=K, head_dim=D, position="alibi", use_bias=True)
    params = nn.unbox(Attention(base).init(jax.random.key(0), x_BxLxE, positions=pos, segment_ids=seg)["params"])

    def run(backend: str, dtype: str):
        layer = Attention(dataclasses.replace(base, backend=backend, dtype=dtype), causal=True)

        def f(p, x):
            out = layer.apply({"params": p}, x.astype(dtype), positions=pos, segment_ids=seg)
            return jnp.sum(out.astype(jnp.float32) * cotangent), out
        with _precision(dtype):
            (g_params, g_x), out = jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))(params, x_BxLxE)
        flat = {"/".join(str(k.key) for k in path): g
                for path, g in jax.tree_util.tree_leaves_with_path(g_params)}
        return {"out": out, **{f"d {name}": g for name, g in flat.items()}, "dx": g_x}

    ref, xla, cand = run("xla", "float32"), run("xla", "bfloat16"), run(candidate, "bfloat16")
    return _compare("layer", {name: (ref[name], xla[name], cand[name]) for name in ref})


def cases(seq_len: int, batch: int) -> dict[str, Callable[[str, np.random.Generator], list[Row]]]:
    """Each case's name -> a function of (candidate backend, rng) giving its rows."""
    B, L = batch, seq_len
    H, D = 8, 64

    def packed(candidate, rng):
        seg, pos = _segments(rng, B, L, pad=L // 8)
        return _kernel_case("packed_alibi", candidate, rng, B=B, L=L, S=L, H=H, K=2, D=D, causal=True,
                            q_segment_ids=seg, kv_segment_ids=seg, bias=alibi_bias(pos, pos, H))

    def padded(candidate, rng):
        seg = np.ones((B, L), np.int32)
        seg[1:, L - L // 4:] = 0
        return _kernel_case("padded_gqa", candidate, rng, B=B, L=L, S=L, H=H, K=4, D=D, causal=False,
                            q_segment_ids=seg, kv_segment_ids=seg)

    def cross(candidate, rng):
        S = 2 * L
        q_seg, _ = _segments(rng, B, L, pad=L // 8)
        kv_seg = np.repeat(q_seg, 2, axis=1)  # target document i attends to source document i
        return _kernel_case("cross", candidate, rng, B=B, L=L, S=S, H=H, K=2, D=D, causal=False,
                            q_segment_ids=q_seg, kv_segment_ids=kv_seg)

    return {
        "causal": lambda c, rng: _kernel_case("causal", c, rng, B=B, L=L, S=L, H=H, K=H, D=D, causal=True),
        "packed_alibi": packed, "padded_gqa": padded, "cross": cross,
        "layer": lambda c, rng: _layer_case(c, rng, B=B, L=L),
    }


def _table(rows: list[Row], candidate: str) -> str:
    head = (f"{'case':<13} {'quantity':<16} {'max|ref|':>9} {'|xla-ref|':>10} {f'|{candidate}-ref|':>12} "
            f"{'tolerance':>10} {f'|{candidate}-xla|':>12} {'rel':>8}  ok")
    lines = [head]
    for r in rows:
        lines.append(f"{r.case:<13} {r.quantity:<16} {r.ref_max:9.3g} {r.xla_err:10.3g} {r.cand_err:12.3g} "
                     f"{r.tol:10.3g} {r.diff:12.3g} {r.diff / max(r.ref_max, 1e-30):8.2e}  "
                     f"{'yes' if r.ok else 'NO' + ('' if r.finite else ' (NaN/Inf)')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="cudnn", choices=("cudnn", "jax"),
                        help="the backend compared with xla (jax: its XLA path, to check the script on CPU)")
    parser.add_argument("--seq_len", type=int, default=512, help="query length (cross: keys are twice it)")
    parser.add_argument("--batch", type=int, default=2, help="rows (the second and later get a padded tail)")
    parser.add_argument("--cases", default="", help="comma-separated subset of the cases ('' = all)")
    args = parser.parse_args(argv)
    if args.candidate == "cudnn" and jax.default_backend() != "gpu":
        print(f"attention_parity: no GPU (jax backend {jax.default_backend()!r}): cuDNN not compared")
        return 0
    if args.batch < 2 or args.seq_len < 16:
        parser.error("--batch must be at least 2 and --seq_len at least 16 (padded rows, packed documents)")
    table = cases(args.seq_len, args.batch)
    chosen = [c for c in args.cases.split(",") if c] or list(table)
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(table)}")
    print(f"attention_parity: {args.candidate} vs xla on {jax.devices()[0].device_kind}, bfloat16, "
          f"B={args.batch} L={args.seq_len} D=64; tolerance max({REF_FACTOR:g} x |xla-ref|, "
          f"{REF_FLOOR:g} x max|ref|) against a float32 xla reference")
    rows, errors = [], []
    for name in chosen:
        try:
            rows += table[name](args.candidate, np.random.default_rng(0))
        except Exception as e:  # noqa: BLE001 - a backend that cannot run a case is a failure to report
            first = (str(e).strip().splitlines() or [""])[0][:200]
            errors.append(f"{name}: {type(e).__name__}: {first}")
    print(_table(rows, args.candidate))
    for line in errors:
        print(f"ERROR {line}")
    bad = [f"{r.case}/{r.quantity}" for r in rows if not r.ok]
    if bad or errors:
        print(f"attention_parity: MISMATCH in {', '.join(bad + [e.split(':')[0] for e in errors])}: "
              f"{args.candidate} attention is not yet correct on this machine; do not time it")
        return 1
    print(f"attention_parity: {args.candidate} matches xla ({len(rows)} quantities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
