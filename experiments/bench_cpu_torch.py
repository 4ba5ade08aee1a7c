"""llmjax against the same GPT in PyTorch, trained side by side on the CPU: tokens/s as a ratio.

Both sides train the model of one llmjax config (nanoGPT's shakespeare_char by default: 6 layers,
384 wide, 6 heads, seq 256, char vocabulary 65 + EOS + UNK, dropout 0.2) in float32 from the
same initial weights (llmjax's, copied into PyTorch) on the same token batches, with the same
update rule: global-norm clipping, then AdamW with llmjax's lr schedule, betas, epsilon and
weight decay on weights and embeddings only. llmjax's side is llmjax itself (registry.build, init_fn, create,
make_train_step, jit_train_step on a llmjax.sharding mesh); PyTorch's side is a compact nanoGPT-
style GPT written here from the architecture: token + learned position embeddings, pre-LayerNorm
blocks, causal `F.scaled_dot_product_attention`, 4x GELU MLP, tied embeddings, linear biases
only when config.model.use_bias, dropout where llmjax has it (embeddings, after attention, after
the MLP; on attention probabilities per config.model.attention_dropout), torch.optim.AdamW
(fused=False, as nanoGPT on CPU). Where llmjax differs from nanoGPT, PyTorch follows llmjax so
the two compute the same function: GELU is the tanh approximation, LayerNorms always have a bias
(nanoGPT's bias=False drops it), and attention dropout is config.model.attention_dropout (0 here;
nanoGPT applies `dropout` there too). Before timing, the script checks the models agree: equal
parameter counts, and with the same weights the same loss and gradient norm (dropout off).

Timing: `--warmup` steps first (compilation), untimed; then `--repeats` rounds of a PyTorch block
and an llmjax block, interleaved so machine load hits both alike. A block is `--rewarm` untimed
steps (the first step after the other framework ran is slow: on this box up to 2x, mostly the
kernel compacting memory the other side just freed) and then `--steps` timed steps, each a full
forward, backward, clip and AdamW update, ending by fetching the real loss. The table shows the
median block (ms/step, tokens/s), the spread of the blocks, the CPU cores each side kept busy
(process CPU time / wall time) and the ratio llmjax / PyTorch tokens/s, beside the figures in
experiments/README.md's reference table. Interleaving shares out steady load, but not fairly: PyTorch's OpenMP
threads wait for each other at every op, so another busy process slows PyTorch far more than XLA
(seen here: PyTorch 3.6x slower, llmjax 1.7x). PyTorch's "cores" then falls well below its thread
count and the script prints a warning; the header shows the load average at start.

  python experiments/bench_cpu_torch.py                                  # 6x384, batch 16 and 64
  python experiments/bench_cpu_torch.py --batch_sizes=12 --steps=20 --config.model.num_layers=4 \
      --config.model.d_model=128 --config.model.num_heads=4 --config.model.mlp_dim=512 \
      --config.data.seq_len=64 --config.model.dropout=0                   # nanoGPT's CPU recipe
  python experiments/bench_cpu_torch.py --text=data/tinyshakespeare.txt   # real text
  python experiments/bench_cpu_torch.py --breakdown    # + forward / forward+backward / update
  python experiments/bench_cpu_torch.py --torch_compile  # inductor: no faster here, +20 s compile

Environment the script sets for itself:
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (unless --nohugetlb, LLMJAX_NO_REEXEC=1 or already set;
      the script re-executes itself with llmjax.allocator, as llmjax.main does, since glibc reads
      it at start). malloc then asks for transparent huge pages, and
      XLA:CPU, which mallocs and frees its temporaries every step, takes ~400x fewer page faults
      (406K -> 1.2K a step at batch 16). It is process-wide, so PyTorch gets it too. Measured,
      same sitting, each side alone: llmjax 1,842 -> 1,504 ms/step (1.22x), PyTorch 1,862 ->
      1,777 ms/step (1.05x). Numerics unchanged. Needs glibc >= 2.35 and THP "madvise" or
      "always" (/sys/kernel/mm/transparent_hugepage/enabled; printed in the header).
  XLA_FLAGS += `--xla_flags` (default none); JAX_PLATFORMS=cpu unless set.
  torch.set_num_threads(--torch_threads, default every core this process may use); XLA's Eigen
      pool uses every core by default. The "cores" columns show whether both really did.

Tried and not taken (shakespeare_char, batch 16, 2-core AMD EPYC, jax 0.10.2): XLA_FLAGS
--xla_cpu_use_thunk_runtime=false (no effect: 1,840 vs 1,837 ms/step; this XLA ignores it),
--xla_cpu_use_onednn=true (1,811, within noise), YNNPACK fusions narrowed or off
(--xla_cpu_experimental_ynn_fusion_type=dot,eltwise 1,948; =dot 2,088; = (off) 2,646),
XNNPACK instead (2,699); jax_default_prng_impl=rbg for dropout masks (2.2x slower masks than
threefry here; `--prng` repeats it). torch.compile gives PyTorch nothing here (1,790 vs ~1,780).

PyTorch is not a dependency of llmjax: without it the script says how to install it and exits.
"""
from __future__ import annotations

import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from llmjax import allocator  # noqa: E402

TORCH_INSTALL = ("pip install torch==2.13.0   "
                 "(CPU-only build: add --index-url https://download.pytorch.org/whl/cpu)")

_CONFIG = config_flags.DEFINE_config_file("config", "configs/shakespeare_char.py", "Config of both models.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["16", "64"], "Batch sizes (sequences) to time.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per block.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first, per side (compilation).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved (PyTorch block, llmjax block) rounds.")
_REWARM = flags.DEFINE_integer("rewarm", 1, "Untimed steps at the start of every block (the first "
                               "step after the other framework ran is slow for reasons of its own).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "PyTorch intra-op threads (0 = every core).")
_COMPILE = flags.DEFINE_bool("torch_compile", False, "torch.compile the PyTorch model (inductor).")
_TEXT = flags.DEFINE_string("text", "", "Train on random windows of this text file (char tokens) "
                            "instead of synthetic tokens, e.g. data/tinyshakespeare.txt.")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", "", "Extra XLA_FLAGS for llmjax's side.")
_PRNG = flags.DEFINE_string("prng", "", "jax_default_prng_impl for llmjax's dropout masks "
                            "('' = JAX's default, threefry2x32; rbg / unsafe_rbg are cheaper).")
_BREAKDOWN = flags.DEFINE_bool("breakdown", False, "Also time forward, forward+backward and the "
                               "update alone on each side (where the time goes).")
_HUGETLB = flags.DEFINE_bool("hugetlb", True, "Re-run under GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
                              "(transparent huge pages for malloc: see the docstring).")
_CHECK = flags.DEFINE_bool("check", True, "Check the two models compute the same loss and gradient.")

# (layers, d_model, seq, batch) -> figures measured earlier on this project's 2-core CPU (experiments/README.md).
REFERENCE = {
    (6, 384, 256, 16): "PyTorch 2,567; plain Flax 2,200 (0.86x)",
    (6, 384, 256, 64): "PyTorch 2,232; plain Flax 1,707 (0.77x)",
    (4, 128, 64, 12): "PyTorch ~60 ms/iter (~12,800); plain Flax 84 ms (9,143, 0.71x)",
}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_model() -> str:
    """The processor and the vector extensions that decide which kernels either side runs: the
    llmjax/PyTorch ratio depends on them (see experiments/README.md's CPU table)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return os.uname().machine
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = set(next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), []))
    ext = [e for e in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if e in flags]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "unknown"


def _set_environment() -> None:
    """XLA reads XLA_FLAGS when its backend starts, which is after flag parsing: set them here."""
    xla = os.environ.get("XLA_FLAGS", "")
    extra = _XLA_FLAGS.value.split()
    for f in extra:
        if f.split("=")[0] not in xla:
            xla += " " + f
    os.environ["XLA_FLAGS"] = xla.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


# ---------------------------------------------------------------- the PyTorch model


def _torch_gpt(torch, cfg):
    """A nanoGPT-style GPT computing llmjax's function for `cfg` (a llmjax ModelConfig)."""
    nn, F = torch.nn, torch.nn.functional
    unsupported = []
    if cfg.position != "learned":
        unsupported.append(f"position={cfg.position}")
    if cfg.norm != "layernorm" or cfg.norm_position != "pre":
        unsupported.append(f"norm={cfg.norm}/{cfg.norm_position}")
    if cfg.ffn not in ("gelu", "relu"):
        unsupported.append(f"ffn={cfg.ffn}")
    if cfg.num_kv_heads != cfg.num_heads:
        unsupported.append(f"num_kv_heads={cfg.num_kv_heads}")
    if cfg.dtype != "float32":
        unsupported.append(f"dtype={cfg.dtype}")
    if unsupported:
        raise SystemExit("the PyTorch twin covers learned positions, pre-LayerNorm, gelu/relu MLP, "
                         "multi-head attention, float32; this config has " + ", ".join(unsupported))
    E, H, M, bias = cfg.d_model, cfg.num_heads, cfg.mlp_dim, cfg.use_bias
    act = (lambda x: F.gelu(x, approximate="tanh")) if cfg.ffn == "gelu" else F.relu

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(E, eps=1e-5)  # llmjax's LayerNorm always has a bias
            self.c_attn = nn.Linear(E, 3 * E, bias=bias)
            self.c_proj = nn.Linear(E, E, bias=bias)
            self.ln_2 = nn.LayerNorm(E, eps=1e-5)
            self.c_fc = nn.Linear(E, M, bias=bias)
            self.mlp_proj = nn.Linear(M, E, bias=bias)
            self.drop = nn.Dropout(cfg.dropout)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(E, dim=2)
            q, k, v = (t.view(B, T, H, E // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=cfg.attention_dropout if self.training else 0.0)
            x = x + self.drop(self.c_proj(y.transpose(1, 2).reshape(B, T, E)))
            return x + self.drop(self.mlp_proj(act(self.c_fc(self.ln_2(x)))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, E)
            self.wpe = nn.Embedding(cfg.max_len, E)
            self.drop = nn.Dropout(cfg.dropout)
            self.h = nn.ModuleList(Block() for _ in range(cfg.num_layers))
            self.ln_f = nn.LayerNorm(E, eps=1e-5)
            self.lm_head = None if cfg.tie_embeddings else nn.Linear(E, cfg.vocab_size, bias=False)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.drop(self.wte(idx) + self.wpe(pos))
            for block in self.h:
                x = block(x)
            x = self.ln_f(x)
            logits = F.linear(x, self.wte.weight if self.lm_head is None else self.lm_head.weight)
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    return GPT()


def _copy_params(torch, model, params, cfg) -> None:
    """llmjax's parameters (numpy tree) into the PyTorch model: both start from the same weights."""
    import numpy as np

    E = cfg.d_model
    t = lambda a: torch.from_numpy(np.array(a, np.float32))  # a writable copy  # noqa: E731
    sd = {"wte.weight": t(params["embed"]["embedding"]), "wpe.weight": t(params["pos_embed"]["embedding"]),
          "ln_f.weight": t(params["final_norm"]["scale"]), "ln_f.bias": t(params["final_norm"]["bias"])}
    if not cfg.tie_embeddings:
        sd["lm_head.weight"] = t(params["head"]["kernel"]).T
    for i in range(cfg.num_layers):
        p, n = params[f"layer_{i}"], f"h.{i}."
        a = p["attn"]
        sd[n + "ln_1.weight"], sd[n + "ln_1.bias"] = t(p["attn_norm"]["scale"]), t(p["attn_norm"]["bias"])
        sd[n + "ln_2.weight"], sd[n + "ln_2.bias"] = t(p["ffn_norm"]["scale"]), t(p["ffn_norm"]["bias"])
        # kernels (E, H, D) -> torch (out, in) = (H*D, E); query/key/value stacked as nanoGPT's c_attn
        sd[n + "c_attn.weight"] = torch.cat([t(a[k]["kernel"]).reshape(E, E).T
                                             for k in ("query", "key", "value")])
        sd[n + "c_proj.weight"] = t(a["out"]["kernel"]).reshape(E, E).T
        sd[n + "c_fc.weight"] = t(p["ffn"]["w1"]["kernel"]).T
        sd[n + "mlp_proj.weight"] = t(p["ffn"]["w2"]["kernel"]).T
        if cfg.use_bias:
            sd[n + "c_attn.bias"] = torch.cat([t(a[k]["bias"]).reshape(E) for k in ("query", "key", "value")])
            sd[n + "c_proj.bias"] = t(a["out"]["bias"])
            sd[n + "c_fc.bias"] = t(p["ffn"]["w1"]["bias"])
            sd[n + "mlp_proj.bias"] = t(p["ffn"]["w2"]["bias"])
    missing, unexpected = model.load_state_dict({k: v.contiguous() for k, v in sd.items()}, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"parameter mapping incomplete: missing {missing}, unexpected {unexpected}")


def _torch_optimizer(torch, model, o):
    """AdamW with llmjax's settings: decay on weight matrices and embedding tables, never on biases
    or norms (llmjax masks by parameter kind; here every bias and norm parameter is 1-D)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": o.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.b1, o.b2), eps=o.eps, fused=False)


# ---------------------------------------------------------------- data


def _batches(n: int, batch: int, seq: int, vocab: int, tokens):
    """n batches of (batch, seq + 1) int32 windows: random tokens, or random windows of `tokens`."""
    import numpy as np

    rng = np.random.default_rng(0)
    if tokens is None:
        return [rng.integers(0, vocab, size=(batch, seq + 1), dtype=np.int32) for _ in range(n)]
    out = []
    for _ in range(n):
        starts = rng.integers(0, len(tokens) - seq - 1, size=batch)
        out.append(np.stack([tokens[s:s + seq + 1] for s in starts]).astype(np.int32))
    return out


def _read_text(path: str):
    """(char tokens of the first 90% of the text, vocab size) with llmjax's char tokenizer."""
    from llmjax.data.tokenizers import CharTokenizer

    with open(path, encoding="utf-8") as f:
        text = f.read()
    tok = CharTokenizer(sorted(set(text)))
    ids = tok.encode_batch([text[: int(0.9 * len(text))]])[0]
    return ids, tok.vocab_size


# ---------------------------------------------------------------- timing


class Clock:
    """Wall and process-CPU time of a block: ms/step and the cores kept busy."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cores = (time.process_time() - self.c) / max(self.wall, 1e-9)


def _median_block(blocks):
    ms = [b[0] for b in blocks]
    med = statistics.median(ms)
    cores = statistics.median(b[1] for b in blocks)
    return med, min(ms), max(ms), cores


def main(argv):
    del argv
    if _HUGETLB.value:
        allocator.reexec_with_huge_pages()  # glibc reads GLIBC_TUNABLES only at start
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (it is not an llmjax dependency). Install the CPU build with:\n  "
              + TORCH_INSTALL, file=sys.stderr)
        raise SystemExit(2)
    _set_environment()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from llmjax import sharding
    from llmjax.config import mesh_shape
    from llmjax.experiment import resolve
    from llmjax.models import registry
    from llmjax.tasks.lm import LMTask
    from llmjax.training import optim
    from llmjax.training.objectives import cross_entropy_sums
    from llmjax.training.state import abstract_state, count_params, create, init_fn
    from llmjax.training.step import jit_train_step, make_train_step

    if _PRNG.value:
        jax.config.update("jax_default_prng_impl", _PRNG.value)
    threads = _TORCH_THREADS.value or _cores()
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    config = _CONFIG.value
    config.data.dataset = "stdlib"  # never read here (batches are made below); skips the path check
    run = resolve(config, jax.device_count())
    tokens = None
    if _TEXT.value:
        tokens, vocab = _read_text(_TEXT.value)
    elif run.data.tokenizer == "char":
        vocab = 67  # tinyshakespeare's 65 characters, then EOS and UNK
    elif run.data.tokenizer == "byte":
        vocab = 257
    else:
        vocab = run.data.vocab_size
    platform = jax.devices()[0].platform
    seq = run.data.seq_len
    cfg = run.model.finalize(vocab_size=vocab, max_len=seq, platform=platform, dtype=run.train.dtype)
    model = registry.build(cfg)
    task = LMTask(run)  # its objective and example input; batches are made here
    num_steps = run.train.num_steps
    tx, lr_fn = optim.optimizer(run.optim, num_steps), optim.schedule(run.optim, num_steps)
    mesh = sharding.make_mesh(mesh_shape(run.mesh, jax.device_count()))
    bsh = sharding.leaf_sharding(mesh, 2)
    total = _WARMUP.value + _REPEATS.value * (_REWARM.value + _STEPS.value)
    # The lr each side uses at step i: llmjax's own schedule, evaluated once on the host.
    lrs = np.asarray(jax.vmap(lr_fn)(jnp.arange(total + 8)), np.float64)

    print(f"device: {jax.device_count()} x {jax.devices()[0].device_kind} ({platform}), "
          f"{_cpu_model()}, {_cores()} cores; jax {jax.__version__}, torch {torch.__version__} "
          f"({threads} threads{', torch.compile' if _COMPILE.value else ', eager'}); "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; prng {jax.config.jax_default_prng_impl}; "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}, transparent huge pages: {_thp_mode()}; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    with sharding.use_mesh(mesh):
        init = init_fn(functools.partial(task.init_params, model), tx, run.train.seed)
        _, state_sh = abstract_state(init, mesh)
        for b in (int(x) for x in _BATCHES.value):
            host = _batches(total, b, seq, cfg.vocab_size, tokens)
            jax_batches = [jax.device_put({"inputs": h[:, :-1], "targets": h[:, 1:],
                                           "weights": np.ones((b, seq), np.float32)}, bsh) for h in host]
            t_batches = [(torch.from_numpy(h[:, :-1].astype(np.int64)),
                          torch.from_numpy(h[:, 1:].astype(np.int64))) for h in host]

            state = create(init, state_sh)
            n_jax = count_params(state.params)
            tmodel = _torch_gpt(torch, cfg)
            _copy_params(torch, tmodel, jax.device_get(state.params), cfg)
            n_torch = sum(p.numel() for p in tmodel.parameters())
            if _CHECK.value and not rows:  # the same model for every batch size: check once
                _check(torch, jax, jnp, model, cross_entropy_sums, state.params, tmodel, jax_batches[0],
                       t_batches[0], n_jax, n_torch)
            topt = _torch_optimizer(torch, tmodel, run.optim)
            tstep = _torch_step_fn(torch, tmodel, topt, run.optim.grad_clip)
            jstep = jit_train_step(make_train_step(task, model, tx, lr_fn, seed=run.train.seed,
                                                   grad_accum_steps=run.train.grad_accum_steps),
                                   state_sh, bsh)

            def t_run(steps):  # PyTorch steps on batches `steps`; returns the last loss, fetched
                for i in steps:
                    loss = tstep(*t_batches[i], lrs[i])
                return float(loss)

            def j_run(steps):
                nonlocal state
                for i in steps:
                    state, m = jstep(state, jax_batches[i])
                return float(m["loss"])  # the real loss: the work happened

            # Warm-up (untimed): compilation on both sides.
            warm = range(_WARMUP.value)
            with Clock() as t_warm:
                t_run(warm)
            with Clock() as j_warm:
                j_run(warm)

            # Interleaved blocks. Each starts with --rewarm untimed steps: the first step after
            # the other framework ran pays for its caches and freed memory (up to 2x on this box).
            blocks = {"torch": [], "jax": []}
            per_block = _REWARM.value + _STEPS.value
            for r in range(_REPEATS.value):
                first = _WARMUP.value + r * per_block
                rewarm = range(first, first + _REWARM.value)
                timed = range(first + _REWARM.value, first + per_block)
                for side, fn in (("torch", t_run), ("jax", j_run)):
                    fn(rewarm)
                    with Clock() as c:
                        loss = fn(timed)
                    blocks[side].append((1e3 * c.wall / _STEPS.value, c.cores, loss))
            row = {"batch": b, "torch": _median_block(blocks["torch"]), "jax": _median_block(blocks["jax"]),
                   "losses": (blocks["torch"][-1][2], blocks["jax"][-1][2]),
                   "warm": (t_warm.wall, j_warm.wall), "params": (n_torch, n_jax),
                   "ref": REFERENCE.get((cfg.num_layers, cfg.d_model, seq, b), "-")}
            if _BREAKDOWN.value:
                row["breakdown"] = _breakdown(torch, jax, model, tx, cross_entropy_sums, state, tmodel, topt,
                                              run.optim.grad_clip, jax_batches[0], t_batches[0])
            rows.append(row)
            state = jstep = tstep = tmodel = topt = None  # frees this size's models; the closures keep the names

    _print_table(cfg, seq, rows, tokens is not None, threads)


def _torch_step_fn(torch, tmodel, topt, clip):
    fwd = torch.compile(tmodel) if _COMPILE.value else tmodel
    tmodel.train()

    def step(x, y, lr):
        for g in topt.param_groups:
            g["lr"] = lr
        loss = fwd(x, y)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
        topt.step()
        topt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _check(torch, jax, jnp, model, ce, params, tmodel, jbatch, tbatch, n_jax, n_torch):
    """Same parameter count; same weights give the same loss and gradient norm (dropout off)."""
    print(f"parameters: llmjax {n_jax:,}, PyTorch {n_torch:,}" + ("" if n_jax == n_torch else "  MISMATCH"))
    if n_jax != n_torch:
        raise SystemExit("the two models differ: parameter counts do not match")
    rows = slice(0, 2)

    def loss_fn(p):
        logits = model.apply({"params": p}, jbatch["inputs"][rows], deterministic=True)
        s = ce(logits, jbatch["targets"][rows], jbatch["weights"][rows])
        return s["nll_sum"] / s["weight_sum"]

    j_loss, j_grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    j_norm = float(jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(j_grads))))
    tmodel.eval()
    tmodel.zero_grad(set_to_none=True)
    t_loss = tmodel(tbatch[0][rows], tbatch[1][rows])
    t_loss.backward()
    t_loss = t_loss.detach()
    t_norm = float(torch.sqrt(sum(torch.sum(p.grad ** 2) for p in tmodel.parameters())))
    tmodel.zero_grad(set_to_none=True)
    tmodel.train()
    d_loss, d_norm = abs(float(j_loss) - float(t_loss)), abs(j_norm - t_norm) / max(j_norm, 1e-12)
    ok = d_loss < 1e-4 and d_norm < 1e-3
    print(f"same weights, dropout off: loss llmjax {float(j_loss):.6f} PyTorch {float(t_loss):.6f} "
          f"(|diff| {d_loss:.1e}); grad norm {j_norm:.6f} vs {t_norm:.6f} (rel diff {d_norm:.1e})"
          + ("" if ok else "  MISMATCH"))
    if not ok:
        raise SystemExit("the two models compute different functions")


def _breakdown(torch, jax, model, tx, ce, state, tmodel, topt, clip, jbatch, tbatch, n=5):
    """ms of forward (train mode, loss), forward+backward, and the clip+AdamW update, per side."""
    import optax

    def loss_fn(p, rng):
        logits = model.apply({"params": p}, jbatch["inputs"], deterministic=False, rngs={"dropout": rng})
        s = ce(logits, jbatch["targets"], jbatch["weights"])
        return s["nll_sum"] / s["weight_sum"]

    fwd = jax.jit(loss_fn)
    fwd_bwd = jax.jit(jax.value_and_grad(loss_fn))
    upd = jax.jit(lambda g, o, p: optax.apply_updates(p, tx.update(g, o, p)[0]))
    key = jax.random.key(1)
    params, grads = state.params, fwd_bwd(state.params, key)[1]

    def jtime(f, *a):
        jax.block_until_ready(f(*a))
        t0 = time.perf_counter()
        for _ in range(n):
            out = f(*a)
        jax.block_until_ready(out)
        return 1e3 * (time.perf_counter() - t0) / n

    j = (jtime(fwd, params, key), jtime(fwd_bwd, params, key), jtime(upd, grads, state.opt_state, params))

    def ttime(f):
        f()
        t0 = time.perf_counter()
        for _ in range(n):
            f()
        return 1e3 * (time.perf_counter() - t0) / n

    def t_fwd():
        with torch.no_grad():
            tmodel(*tbatch)

    def t_fwd_bwd():
        tmodel(*tbatch).backward()

    def t_upd():  # the grads of the last backward stay; the update repeats on them
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
        topt.step()

    t = (ttime(t_fwd), ttime(t_fwd_bwd), ttime(t_upd))
    topt.zero_grad(set_to_none=True)
    return t, j


def _print_table(cfg, seq, rows, real_text, threads) -> None:
    n_torch, n_jax = rows[0]["params"]
    print(f"\nmodel: {cfg.num_layers} layers, d_model {cfg.d_model}, {cfg.num_heads} heads, "
          f"mlp {cfg.mlp_dim}, "
          f"seq {seq}, vocab {cfg.vocab_size}, dropout {cfg.dropout}, bias {cfg.use_bias}, float32; "
          f"params llmjax {n_jax:,} / PyTorch {n_torch:,}; "
          f"{'tinyshakespeare windows' if real_text else 'synthetic tokens'}; "
          f"median of {_REPEATS.value} interleaved blocks of {_STEPS.value} steps")
    print(f"{'':>5} | {'PyTorch':^34} | {'llmjax':^34} |")
    print(f"{'batch':>5} | {'ms/step':>8} {'(min-max)':>11} {'tokens/s':>8} {'cores':>5} | "
          f"{'ms/step':>8} {'(min-max)':>11} {'tokens/s':>8} {'cores':>5} | {'ratio':>6} | "
          "reference tokens/s (experiments/README.md)")
    for r in rows:
        b = r["batch"]
        cells = []
        for side in ("torch", "jax"):
            med, lo, hi, cores = r[side]
            spread = f"({lo:.0f}-{hi:.0f})" if lo >= 100 else f"({lo:.1f}-{hi:.1f})"
            cells.append(f"{med:>8.1f} {spread:>11} {b * seq / med * 1e3:>8,.0f} {cores:>5.2f}")
        ratio = r["torch"][0] / r["jax"][0]
        print(f"{b:>5} | {cells[0]} | {cells[1]} | {ratio:>5.2f}x | {r['ref']}")
    print("(ratio = llmjax tokens/s / PyTorch tokens/s; last loss PyTorch/llmjax: "
          + ", ".join(f"{r['losses'][0]:.3f}/{r['losses'][1]:.3f}" for r in rows)
          + "; warm-up s PyTorch/llmjax: "
          + ", ".join(f"{r['warm'][0]:.1f}/{r['warm'][1]:.1f}" for r in rows) + ")")
    busy = min(r["torch"][3] for r in rows)
    if busy < 0.75 * threads:
        print(f"WARNING: PyTorch kept only {busy:.2f} of its {threads} threads' cores busy: other work is "
              "running on this machine, and PyTorch's OpenMP threads suffer far more from it than XLA's "
              "(they wait for each other at every op). Rerun on an idle machine.")
    if any("breakdown" in r for r in rows):
        print("\nwhere the time goes (ms, first batch of the run, dropout on):")
        print(f"{'batch':>5} | {'':>7} {'forward':>8} {'fwd+bwd':>8} {'update':>8}")
        for r in rows:
            if "breakdown" in r:
                for name, vals in zip(("PyTorch", "llmjax"), r["breakdown"]):
                    print(f"{r['batch']:>5} | {name:>7} " + " ".join(f"{v:>8.1f}" for v in vals))


if __name__ == "__main__":
    app.run(main)
