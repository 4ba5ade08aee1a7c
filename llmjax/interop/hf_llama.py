"""Hugging Face Llama (LlamaForCausalLM / LlamaModel, model_type "llama") <-> llmjax GPT.

A Llama is llmjax's GPT with RoPE (the rotate-half layout of apply_rope, as in HF's Llama
checkpoints), RMSNorm, SwiGLU, no biases, grouped-query attention and, usually, an untied head.
torch Linear weights are (out, in): q_proj (H D, E) becomes the query kernel (E, H, D),
o_proj (E, H D) the out kernel (H, D, E); gate_proj is llmjax's w1 (the SiLU branch), up_proj
w3, down_proj w2.

config.json keys read (transformers' defaults when absent): hidden_size, intermediate_size,
num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps,
rope_theta / rope_parameters.rope_theta -> rope_base, max_position_embeddings -> max_len,
vocab_size (exactly: no padding), hidden_act, attention_dropout, initializer_range,
tie_word_embeddings. Options llmjax cannot express (rope scaling, biases, another activation
or head_dim) are a one-line ConfigError.

Shape key: E embed width, H query heads, K key/value heads, D head dim, M mlp width, V vocabulary.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from llmjax.config import ConfigError
from llmjax.models.gpt import GPTConfig

MODEL_TYPES = ("llama",)


def _unsupported(key: str, value, why: str) -> ConfigError:
    return ConfigError(f"Hugging Face Llama config {key}={value!r}: {why}")


def _rope_base(hf: dict) -> float:
    """rope_theta from transformers >= 5's rope_parameters or the older top-level keys; any
    rope scaling is a ConfigError (llmjax's RoPE has none)."""
    if hf.get("rope_scaling") is not None:
        raise _unsupported("rope_scaling", hf["rope_scaling"], "llmjax's RoPE has no scaling (must be null)")
    rope = hf.get("rope_parameters") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise _unsupported("rope_parameters.rope_type", kind, "llmjax's RoPE supports only 'default'")
    return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict) -> GPTConfig:
    """The runtime GPTConfig of a Llama config.json (unpadded vocabulary, float32, xla attention)."""
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key, False):
            raise _unsupported(key, hf[key], "llmjax's Llama-style GPT has no biases (must be false)")
    if hf.get("hidden_act", "silu") != "silu":
        raise _unsupported("hidden_act", hf["hidden_act"], "llmjax's swiglu uses silu only")
    d_model, num_heads = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    if hf.get("head_dim") not in (None, d_model // num_heads):
        raise _unsupported("head_dim", hf["head_dim"], f"llmjax's head dim is hidden_size / "
                           f"num_attention_heads = {d_model // num_heads}")
    cfg = GPTConfig(
        num_layers=hf.get("num_hidden_layers", 32), d_model=d_model, num_heads=num_heads,
        num_kv_heads=hf.get("num_key_value_heads") or num_heads, mlp_dim=hf.get("intermediate_size", 11008),
        position="rope", rope_base=_rope_base(hf), ffn="swiglu", norm="rmsnorm",
        norm_epsilon=hf.get("rms_norm_eps", 1e-6), norm_position="pre", dropout=0.0,
        attention_dropout=float(hf.get("attention_dropout", 0.0)), use_bias=False,
        attention_backend="xla", init_std=hf.get("initializer_range", 0.02),
        tie_embeddings=hf.get("tie_word_embeddings", False), vocab_multiple=1)
    cfg.validate()
    return cfg.finalize(hf.get("vocab_size", 32000), hf.get("max_position_embeddings", 2048), "cpu", "float32")


def params_from_hf(get: Callable[[str], np.ndarray], names: frozenset[str],
                   cfg: GPTConfig) -> tuple[dict, list[str]]:
    """The GPT params tree from a Llama checkpoint, one tensor at a time. Names carry the
    "model." prefix (LlamaForCausalLM) or not (LlamaModel). Nothing is initialised fresh."""
    prefix = "model." if "model.embed_tokens.weight" in names else ""
    if prefix + "embed_tokens.weight" not in names:
        raise ValueError("the checkpoint has no embed_tokens.weight (nor model.embed_tokens.weight): it "
                         "is not a Llama checkpoint; check config.json's model_type")

    def take(name: str, shape: tuple) -> np.ndarray:
        x = get(name)
        if x.shape != shape:
            raise ValueError(f"checkpoint tensor {name} has shape {x.shape}, config.json implies "
                             f"{shape}: the weights do not belong to this config.json")
        return x

    E, H, K, D, M, V = (cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.head_dim, cfg.mlp_dim,
                        cfg.vocab_size)
    params = {"embed": {"embedding": take(prefix + "embed_tokens.weight", (V, E))},
              "final_norm": {"scale": take(prefix + "norm.weight", (E,))}}
    for i in range(cfg.num_layers):
        a, m = f"{prefix}layers.{i}.self_attn.", f"{prefix}layers.{i}.mlp."
        attn = {"query": {"kernel": take(a + "q_proj.weight", (H * D, E)).T.reshape(E, H, D)},
                "key": {"kernel": take(a + "k_proj.weight", (K * D, E)).T.reshape(E, K, D)},
                "value": {"kernel": take(a + "v_proj.weight", (K * D, E)).T.reshape(E, K, D)},
                "out": {"kernel": take(a + "o_proj.weight", (E, H * D)).T.reshape(H, D, E)}}
        ffn = {"w1": {"kernel": take(m + "gate_proj.weight", (M, E)).T},
               "w3": {"kernel": take(m + "up_proj.weight", (M, E)).T},
               "w2": {"kernel": take(m + "down_proj.weight", (E, M)).T}}
        params[f"layer_{i}"] = {
            "attn": attn, "ffn": ffn,
            "attn_norm": {"scale": take(f"{prefix}layers.{i}.input_layernorm.weight", (E,))},
            "ffn_norm": {"scale": take(f"{prefix}layers.{i}.post_attention_layernorm.weight", (E,))}}
    if not cfg.tie_embeddings:
        if "lm_head.weight" not in names:
            raise ValueError("config.json has tie_word_embeddings=false but the checkpoint has no "
                             "lm_head.weight: use the LlamaForCausalLM checkpoint")
        params["head"] = {"kernel": take("lm_head.weight", (V, E)).T}
    return params, []


def config_to_hf(cfg: GPTConfig) -> dict:
    """The LlamaForCausalLM config.json of a Llama-style GPT (rope, rmsnorm, swiglu, no biases,
    pre-norm). vocab_size is the model's own: for a model trained in llmjax that is the padded
    vocabulary (transformers accepts any size; the tokenizer's ids all lie below it). Residual
    dropout, a training setting Llama lacks, is not written; bos/eos ids are left to the
    tokenizer (None). rope_theta is written both ways transformers has read it."""
    _check_exportable(cfg)
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.mlp_dim,
            "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
            "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
            "max_position_embeddings": cfg.max_len, "rms_norm_eps": cfg.norm_epsilon or 1e-6,
            "rope_theta": cfg.rope_base,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
            "attention_bias": False, "mlp_bias": False, "attention_dropout": cfg.attention_dropout,
            "initializer_range": cfg.init_std, "tie_word_embeddings": cfg.tie_embeddings,
            "bos_token_id": None, "eos_token_id": None}


def _check_exportable(cfg) -> None:
    """A ConfigError naming the first llmjax key Llama's format cannot express."""
    if getattr(cfg, "name", None) != "gpt":
        raise ConfigError(f"config.model.name={getattr(cfg, 'name', None)!r}: Llama export takes a gpt model")
    if cfg.width_multiplier != 1.0:
        raise ConfigError(f"config.model.parametrization='mup' at width multiplier {cfg.width_multiplier:g} "
                          f"(d_model {cfg.d_model} / base_width {cfg.base_width}): Llama has no logit and "
                          "attention-scale multipliers; export a standard model or one at its base width")
    for key, needed in (("position", "rope"), ("norm", "rmsnorm"), ("ffn", "swiglu"),
                        ("norm_position", "pre"), ("use_bias", False), ("head", "")):
        if getattr(cfg, key) != needed:
            raise ConfigError(f"config.model.{key}={getattr(cfg, key)!r}: Llama supports only {needed!r}")


def params_to_hf(params: dict, cfg: GPTConfig) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) in LlamaForCausalLM's layout; lm_head.weight only when untied."""
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    E, H, K, D = cfg.d_model, cfg.num_heads, cfg.kv_heads, cfg.head_dim
    yield "model.embed_tokens.weight", f32(params["embed"]["embedding"])
    for i in range(cfg.num_layers):
        layer, a, m = params[f"layer_{i}"], f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        attn = layer["attn"]
        yield a + "q_proj.weight", f32(attn["query"]["kernel"]).reshape(E, H * D).T
        yield a + "k_proj.weight", f32(attn["key"]["kernel"]).reshape(E, K * D).T
        yield a + "v_proj.weight", f32(attn["value"]["kernel"]).reshape(E, K * D).T
        yield a + "o_proj.weight", f32(attn["out"]["kernel"]).reshape(H * D, E).T
        for hf_name, ours in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
            yield m + hf_name + ".weight", f32(layer["ffn"][ours]["kernel"]).T
        yield f"model.layers.{i}.input_layernorm.weight", f32(layer["attn_norm"]["scale"])
        yield f"model.layers.{i}.post_attention_layernorm.weight", f32(layer["ffn_norm"]["scale"])
    yield "model.norm.weight", f32(params["final_norm"]["scale"])
    if not cfg.tie_embeddings:
        yield "lm_head.weight", f32(params["head"]["kernel"]).T
