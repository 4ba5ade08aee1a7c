"""Hugging Face GPT-2 (GPT2LMHeadModel / GPT2Model, model_type "gpt2") <-> llmjax GPT.

GPT-2 is llmjax's default GPT: learned positions, pre-LayerNorm, tanh-GELU MLP, biases, tied
head. HF keeps its projections in Conv1D layers whose weights are (in, out), and the query,
key and value projections as one c_attn of width 3E.

config.json keys read (with transformers' defaults when absent): n_layer, n_embd, n_head,
n_inner (None = 4 n_embd), n_positions -> max_len, vocab_size (exactly: no padding),
layer_norm_epsilon, activation_function, initializer_range, resid_pdrop -> dropout (llmjax has
one rate for embedding and residual dropout: embd_pdrop is not used), attn_pdrop,
tie_word_embeddings. Options llmjax cannot express are a one-line ConfigError.

Shape key: E embed width, H heads, D head dim, M mlp width, V vocabulary, P positions.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from llmjax.config import ConfigError
from llmjax.models.gpt import GPTConfig

MODEL_TYPES = ("gpt2",)
# HF activation_function -> llmjax ffn (gelu_new and gelu_pytorch_tanh are the tanh GELU)
_FFN_OF = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact", "relu": "relu"}
_ACTIVATION_OF = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu"}
# Options that change the function away from what llmjax computes, with the value it needs.
_MUST_BE = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "add_cross_attention": False}


def _unsupported(key: str, value, why: str) -> ConfigError:
    return ConfigError(f"Hugging Face GPT-2 config {key}={value!r}: {why}")


def config_from_hf(hf: dict) -> GPTConfig:
    """The runtime GPTConfig of a GPT-2 config.json (unpadded vocabulary, float32, xla attention)."""
    for key, needed in _MUST_BE.items():
        if hf.get(key, needed) != needed:
            raise _unsupported(key, hf[key], f"llmjax's GPT supports only {needed}")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in _FFN_OF:
        raise _unsupported("activation_function", activation, f"llmjax supports {', '.join(_FFN_OF)}")
    d_model = hf.get("n_embd", 768)
    cfg = GPTConfig(
        num_layers=hf.get("n_layer", 12), d_model=d_model, num_heads=hf.get("n_head", 12),
        mlp_dim=hf.get("n_inner") or 4 * d_model, position="learned", ffn=_FFN_OF[activation],
        norm="layernorm", norm_epsilon=hf.get("layer_norm_epsilon", 1e-5), norm_position="pre",
        dropout=hf.get("resid_pdrop", 0.1), attention_dropout=hf.get("attn_pdrop", 0.1),
        use_bias=True, attention_backend="xla", init_std=hf.get("initializer_range", 0.02),
        tie_embeddings=hf.get("tie_word_embeddings", True), vocab_multiple=1)
    cfg.validate()
    return cfg.finalize(hf.get("vocab_size", 50257), hf.get("n_positions", 1024), "cpu", "float32")


def _reader(get: Callable[[str], np.ndarray], prefix: str) -> Callable[[str, tuple], np.ndarray]:
    def take(name: str, shape: tuple) -> np.ndarray:
        x = get(prefix + name)
        if x.shape != shape:
            raise ValueError(f"checkpoint tensor {prefix + name} has shape {x.shape}, config.json implies "
                             f"{shape}: the weights do not belong to this config.json")
        return x
    return take


def params_from_hf(get: Callable[[str], np.ndarray], names: frozenset[str],
                   cfg: GPTConfig) -> tuple[dict, list[str]]:
    """The GPT params tree from a GPT-2 checkpoint, one tensor at a time. Names may carry the
    "transformer." prefix (GPT2LMHeadModel) or not (GPT2Model); the attn.bias / attn.masked_bias
    buffers of old .bin files are not parameters and are not read. Nothing is initialised fresh."""
    prefix = "transformer." if "transformer.wte.weight" in names else ""
    if prefix + "wte.weight" not in names:
        raise ValueError("the checkpoint has no wte.weight (nor transformer.wte.weight): it is not a "
                         "GPT-2 checkpoint; check config.json's model_type")
    take = _reader(get, prefix)
    E, H, D, M, V = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
    params = {"embed": {"embedding": take("wte.weight", (V, E))},
              "pos_embed": {"embedding": take("wpe.weight", (cfg.max_len, E))},
              "final_norm": _norm(take, "ln_f", E)}
    for i in range(cfg.num_layers):
        h = f"h.{i}."
        qkv_Ex3E = take(h + "attn.c_attn.weight", (E, 3 * E))
        qkv_3E = take(h + "attn.c_attn.bias", (3 * E,))
        attn = {name: {"kernel": w_ExE.reshape(E, H, D), "bias": b_E.reshape(H, D)}
                for name, w_ExE, b_E in zip(("query", "key", "value"), np.split(qkv_Ex3E, 3, axis=1),
                                            np.split(qkv_3E, 3))}
        attn["out"] = {"kernel": take(h + "attn.c_proj.weight", (E, E)).reshape(H, D, E),
                       "bias": take(h + "attn.c_proj.bias", (E,))}
        ffn = {"w1": {"kernel": take(h + "mlp.c_fc.weight", (E, M)), "bias": take(h + "mlp.c_fc.bias", (M,))},
               "w2": {"kernel": take(h + "mlp.c_proj.weight", (M, E)), "bias": take(h + "mlp.c_proj.bias", (E,))}}
        params[f"layer_{i}"] = {"attn": attn, "attn_norm": _norm(take, h + "ln_1", E),
                                "ffn": ffn, "ffn_norm": _norm(take, h + "ln_2", E)}
    if not cfg.tie_embeddings:
        if "lm_head.weight" not in names:
            raise ValueError("config.json has tie_word_embeddings=false but the checkpoint has no "
                             "lm_head.weight: use the GPT2LMHeadModel checkpoint")
        params["head"] = {"kernel": _reader(get, "")("lm_head.weight", (V, E)).T}
    return params, []


def _norm(take, name: str, E: int) -> dict:
    return {"scale": take(name + ".weight", (E,)), "bias": take(name + ".bias", (E,))}


def config_to_hf(cfg: GPTConfig) -> dict:
    """The GPT2LMHeadModel config.json of a GPT. vocab_size is the model's own: for a model
    trained in llmjax that is the padded vocabulary (transformers accepts any size; the
    tokenizer's ids all lie below it). bos/eos ids are left to the tokenizer (None)."""
    _check_exportable(cfg)
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": cfg.vocab_size, "n_positions": cfg.max_len, "n_embd": cfg.d_model,
            "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.mlp_dim,
            "activation_function": _ACTIVATION_OF[cfg.ffn],
            "layer_norm_epsilon": cfg.norm_epsilon or 1e-5, "initializer_range": cfg.init_std,
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.attention_dropout,
            "tie_word_embeddings": cfg.tie_embeddings, "bos_token_id": None, "eos_token_id": None,
            **_MUST_BE}


def _check_exportable(cfg) -> None:
    """A ConfigError naming the first llmjax key GPT-2's format cannot express."""
    if getattr(cfg, "name", None) != "gpt":
        raise ConfigError(f"config.model.name={getattr(cfg, 'name', None)!r}: GPT-2 export takes a gpt model")
    if cfg.width_multiplier != 1.0:
        raise ConfigError(f"config.model.parametrization='mup' at width multiplier {cfg.width_multiplier:g} "
                          f"(d_model {cfg.d_model} / base_width {cfg.base_width}): GPT-2 has no logit and "
                          "attention-scale multipliers; export a standard model or one at its base width")
    for key, needed in (("position", "learned"), ("norm", "layernorm"), ("norm_position", "pre"),
                        ("use_bias", True), ("head", "")):
        if getattr(cfg, key) != needed:
            raise ConfigError(f"config.model.{key}={getattr(cfg, key)!r}: GPT-2 supports only {needed!r}")
    if cfg.ffn not in _ACTIVATION_OF:
        raise ConfigError(f"config.model.ffn={cfg.ffn!r}: GPT-2 supports {', '.join(_ACTIVATION_OF)}")
    if cfg.kv_heads != cfg.num_heads:
        raise ConfigError(f"config.model.num_kv_heads={cfg.num_kv_heads!r}: GPT-2 has no grouped-query "
                          "attention (num_kv_heads must equal num_heads)")


def params_to_hf(params: dict, cfg: GPTConfig) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) in GPT2LMHeadModel's layout; lm_head.weight only when untied
    (transformers omits the tied copy)."""
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    E = cfg.d_model
    yield "transformer.wte.weight", f32(params["embed"]["embedding"])
    yield "transformer.wpe.weight", f32(params["pos_embed"]["embedding"])
    for i in range(cfg.num_layers):
        layer, h = params[f"layer_{i}"], f"transformer.h.{i}."
        attn = layer["attn"]
        qkv = [attn[n] for n in ("query", "key", "value")]
        yield h + "attn.c_attn.weight", np.concatenate([f32(p["kernel"]).reshape(E, E) for p in qkv], axis=1)
        yield h + "attn.c_attn.bias", np.concatenate([f32(p["bias"]).reshape(E) for p in qkv])
        yield h + "attn.c_proj.weight", f32(attn["out"]["kernel"]).reshape(E, E)
        yield h + "attn.c_proj.bias", f32(attn["out"]["bias"])
        for hf_name, ours in (("mlp.c_fc", "w1"), ("mlp.c_proj", "w2")):
            yield h + hf_name + ".weight", f32(layer["ffn"][ours]["kernel"])
            yield h + hf_name + ".bias", f32(layer["ffn"][ours]["bias"])
        for hf_name, ours in (("ln_1", "attn_norm"), ("ln_2", "ffn_norm")):
            yield h + hf_name + ".weight", f32(layer[ours]["scale"])
            yield h + hf_name + ".bias", f32(layer[ours]["bias"])
    yield "transformer.ln_f.weight", f32(params["final_norm"]["scale"])
    yield "transformer.ln_f.bias", f32(params["final_norm"]["bias"])
    if not cfg.tie_embeddings:
        yield "lm_head.weight", f32(params["head"]["kernel"]).T
