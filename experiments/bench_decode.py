"""Decode throughput of a config's model: new tokens/s of `generate` with and without the KV
cache, per batch size, compile excluded (one untimed warm-up call), median of --repeats calls.

A call is the whole of generate (prefill of the prompt, then one token per step, sampling at
temperature 1); tokens/s = batch * new tokens / its wall time. Without the cache every step
runs the whole (prompt + new tokens) buffer, so it may use fewer new tokens (--uncached_new_tokens;
the table says how many). Parameters are random (throughput does not depend on them); the
vocabulary is the one the config's tokenizer would give, padded as in training.

  python experiments/bench_decode.py                                  # configs/gpt_small.py (~2 min, 2 CPU cores)
  python experiments/bench_decode.py --config=configs/gpt2_124m.py    # a GPU

Like bench_step, the script first re-executes itself with malloc on transparent huge pages
(llmjax.allocator; LLMJAX_NO_REEXEC=1 opts out), so its figures are the main job's.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from llmjax import allocator  # noqa: E402

if __name__ == "__main__":
    allocator.reexec_with_huge_pages()  # before jax is imported: glibc reads it at start

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from llmjax.data.tokenizers import ByteTokenizer  # noqa: E402
from llmjax.experiment import resolve  # noqa: E402
from llmjax.generation import generate  # noqa: E402
from llmjax.models import registry  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/gpt_small.py", "Config whose model is timed.")
_BATCHES = flags.DEFINE_list("batch_sizes", ["1", "16"], "Batch sizes (prompts decoded together).")
_PROMPT = flags.DEFINE_integer("prompt_len", 16, "Prompt tokens per row.")
_NEW = flags.DEFINE_integer("new_tokens", 112, "New tokens per row with the cache.")
_UNCACHED_NEW = flags.DEFINE_integer("uncached_new_tokens", 112, "New tokens per row without the cache "
                                     "(fewer where it is too slow; 0: skip the uncached rows).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per row (the median is reported).")

# New tokens/s from a published source on the same device kind, by (device kind, (layers, width), batch,
# cached). None found yet: the column prints "-" rather than an invented figure.
REFERENCE: dict[tuple[str, tuple[int, int], int, bool], str] = {}


def _vocab(run) -> int:
    """The vocabulary the config's tokenizer would give, without training one (as bench_step):
    byte 262; char (tinyshakespeare's 65) + EOS + the five specials; sentencepiece its pieces + 4."""
    return {"byte": ByteTokenizer.vocab_size, "char": 71}.get(run.data.tokenizer, run.data.vocab_size + 4)


def _machine() -> str:
    device = jax.devices()[0]
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"jax {jax.device_count()} x {device.device_kind} ({device.platform})")


def _time(model, params, vocab: int, batch: int, new_tokens: int, use_cache: bool) -> float:
    """Median wall time of generate, after an untimed warm-up call (compilation)."""
    prompts = np.random.default_rng(0).integers(0, vocab, (batch, _PROMPT.value), np.int32)
    call = lambda seed: generate(model, params, prompts, max_new_tokens=new_tokens,  # noqa: E731
                                 rng=jax.random.key(seed), temperature=1.0, use_cache=use_cache)
    call(0)
    times = []
    for seed in range(1, _REPEATS.value + 1):
        t0 = time.perf_counter()
        call(seed)  # returns a host array: the work is done
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv):
    del argv
    run = resolve(_CONFIG.value, jax.device_count())
    platform_name = jax.devices()[0].platform
    cfg = run.model.finalize(vocab_size=_vocab(run), max_len=run.data.seq_len, platform=platform_name,
                             dtype=run.train.dtype)
    model = registry.build(cfg)
    longest = _PROMPT.value + max(_NEW.value, _UNCACHED_NEW.value)
    if longest > cfg.max_len:
        raise app.UsageError(f"--prompt_len + new tokens = {longest} exceeds the model's max_len "
                             f"{cfg.max_len}: lower them")
    params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
    n_params = sum(x.size for x in jax.tree.leaves(params))
    print(f"machine: {_machine()}")
    print(f"model: {cfg.num_layers} layers, d_model {cfg.d_model}, {cfg.num_heads} heads, vocab "
          f"{cfg.vocab_size}, max_len {cfg.max_len}, {n_params / 1e6:.2f}M params, {cfg.dtype} compute; "
          f"prompt {_PROMPT.value} tokens, sampling at temperature 1, median of {_REPEATS.value}")
    kind = jax.devices()[0].device_kind
    print(f"{'batch':>5} {'cache':>5} {'new tokens':>10} {'ms/call':>10} {'new tokens/s':>13}  reference")
    for batch in (int(b) for b in _BATCHES.value):
        for use_cache, new in ((True, _NEW.value), (False, _UNCACHED_NEW.value)):
            if new <= 0:
                continue
            seconds = _time(model, params, cfg.vocab_size, batch, new, use_cache)
            ref = REFERENCE.get((kind, (cfg.num_layers, cfg.d_model), batch, use_cache), "-")
            print(f"{batch:>5} {'yes' if use_cache else 'no':>5} {new:>10} {1e3 * seconds:>10.3f} "
                  f"{batch * new / seconds:>13,.0f}  {ref}", flush=True)


if __name__ == "__main__":
    app.run(main)
