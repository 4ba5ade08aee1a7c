"""Hugging Face BERT (model_type "bert") <-> llmjax BERT, tensor by tensor.

llmjax BERT is HF BERT's architecture (post-LN, learned positions, GELU, tied MLM decoder), so
the conversion is a renaming plus layout: torch Linear weights are (out, in), llmjax kernels
are (in..., out...) with attention heads split out: query/key/value (E, H, D), attention
output (H, D, E). Import reads BertForPreTraining, BertForMaskedLM (no pooler, no NSP head),
BertModel (no "bert." prefix, no heads) and the task models BertForSequenceClassification,
BertForTokenClassification and BertForQuestionAnswering (llmjax's sequence, token and span heads,
ARCHITECTURES); heads the checkpoint lacks start fresh. Export writes BertForPreTraining, or the
task model of a run's head.

Shape key: V vocabulary, E width (hidden_size), H heads, D head dim, M mlp width
(intermediate_size), T token types, C classes.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
from flax import traverse_util
import jax
import numpy as np

from llmjax.config import ConfigError, fail
from llmjax.models.bert import BertConfig
from llmjax.models.heads import HEAD_PARAMS as HEADS_OF
from llmjax.models.registry import build

MODEL_TYPES = ("bert",)
# HF hidden_act -> llmjax ffn; the llmjax MLM head's GELU follows ffn as HF's follows hidden_act
ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}
EXPORT_ACTIVATIONS = {"gelu_exact": "gelu", "gelu": "gelu_new"}
HEADS = ("pooler", "mlm_head", "nsp_head", "classifier", "token_classifier", "qa_outputs")  # may be fresh; everything else is required
# llmjax task head -> the HF architecture that has it, and that head's HF module
ARCHITECTURES = {"sequence": "BertForSequenceClassification", "token": "BertForTokenClassification",
                 "span": "BertForQuestionAnswering"}
HF_HEAD_MODULES = {"sequence": "classifier", "token": "classifier", "span": "qa_outputs"}
REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
# Older (TF-converted) checkpoints name LayerNorm parameters gamma/beta, and the MLM output bias
# may only be present as the decoder's (tied) bias.
ALIASES = {".LayerNorm.weight": ".LayerNorm.gamma", ".LayerNorm.bias": ".LayerNorm.beta",
           "cls.predictions.bias": "cls.predictions.decoder.bias"}

# (llmjax leaf, HF tensor, kind). kind: "table" copies as is, "vector" reshapes a bias,
# "kernel<k>" is a torch Linear weight whose llmjax kernel has k input axes.
Entry = tuple[str, str, str]


def _linear(path: str, module: str, in_dims: int = 1) -> list[Entry]:
    return [(f"{path}/kernel", f"{module}.weight", f"kernel{in_dims}"),
            (f"{path}/bias", f"{module}.bias", "vector")]


def _norm(path: str, module: str) -> list[Entry]:
    return [(f"{path}/scale", f"{module}.weight", "vector"), (f"{path}/bias", f"{module}.bias", "vector")]


def _layout(cfg: BertConfig, prefix: str) -> list[Entry]:
    """Every llmjax leaf of cfg's unrolled model with its HF tensor, embeddings first."""
    emb = f"{prefix}embeddings"
    entries = [("embeddings/token/embedding", f"{emb}.word_embeddings.weight", "table"),
               ("embeddings/token_type/embedding", f"{emb}.token_type_embeddings.weight", "table"),
               ("embeddings/position/embedding", f"{emb}.position_embeddings.weight", "table"),
               *_norm("embeddings/norm", f"{emb}.LayerNorm")]
    for i in range(cfg.num_layers):
        hf, ours = f"{prefix}encoder.layer.{i}", f"layer_{i}"
        for name in ("query", "key", "value"):
            entries += _linear(f"{ours}/attn/{name}", f"{hf}.attention.self.{name}")
        entries += [*_linear(f"{ours}/attn/out", f"{hf}.attention.output.dense", in_dims=2),
                    *_norm(f"{ours}/attn_norm", f"{hf}.attention.output.LayerNorm"),
                    *_linear(f"{ours}/ffn/w1", f"{hf}.intermediate.dense"),
                    *_linear(f"{ours}/ffn/w2", f"{hf}.output.dense"),
                    *_norm(f"{ours}/ffn_norm", f"{hf}.output.LayerNorm")]
    if cfg.head in ("token", "span"):  # no pooler, as llmjax's and HF's token and QA models
        return entries + _linear(HEADS_OF[cfg.head], HF_HEAD_MODULES[cfg.head])
    entries += _linear("pooler", f"{prefix}pooler.dense")
    if cfg.head == "sequence":
        return entries + _linear(HEADS_OF[cfg.head], HF_HEAD_MODULES[cfg.head])
    return entries + [*_linear("mlm_head/transform", "cls.predictions.transform.dense"),
                      *_norm("mlm_head/norm", "cls.predictions.transform.LayerNorm"),
                      ("mlm_head/output_bias", "cls.predictions.bias", "vector"),
                      *_linear("nsp_head", "cls.seq_relationship")]


# ---------------------------------------------------------------- config


def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    """The runtime llmjax BertConfig of a config.json: exact vocabulary (vocab_multiple 1), max_len
    = max_position_embeddings, xla attention, float32; the task head of a task architecture
    (ARCHITECTURES). What llmjax cannot express is a one-line ConfigError."""
    def unsupported(key: str, fix: str) -> None:
        raise ConfigError(f"config.json {key}={hf.get(key)!r}: {fix}")

    if hf.get("model_type") not in MODEL_TYPES:
        unsupported("model_type", f"this converter reads {', '.join(MODEL_TYPES)}")
    for key in REQUIRED:
        if key not in hf:
            unsupported(key, "a BERT config.json must set it (the file is incomplete)")
    for key in ("is_decoder", "add_cross_attention"):
        if hf.get(key):
            unsupported(key, "llmjax BERT is an encoder (no causal or cross-attention); load an encoder")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        unsupported("position_embedding_type", "llmjax BERT has absolute (learned) positions only")
    if not hf.get("tie_word_embeddings", True):
        unsupported("tie_word_embeddings", "llmjax BERT ties the MLM decoder to the word embeddings")
    if hf.get("hidden_act", "gelu") not in ACTIVATIONS:
        unsupported("hidden_act", f"llmjax BERT supports {', '.join(ACTIVATIONS)}")
    if not hf.get("layer_norm_eps", 1e-12) > 0:
        unsupported("layer_norm_eps", "must be positive (llmjax reads 0 as its default 1e-5)")
    head = next((h for h, arch in ARCHITECTURES.items() if arch in (hf.get("architectures") or ())), "")
    num_labels = 0
    if head in ("sequence", "token"):
        num_labels = len(hf["id2label"]) if "id2label" in hf else hf.get("num_labels", 2)
    if head:
        if hf.get("classifier_dropout") not in (None, hf.get("hidden_dropout_prob", 0.1)):
            unsupported("classifier_dropout", "llmjax's classifier dropout is hidden_dropout_prob; "
                        "set it to null")
    cfg = BertConfig(
        num_layers=hf["num_hidden_layers"], d_model=hf["hidden_size"], num_heads=hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"], ffn=ACTIVATIONS[hf.get("hidden_act", "gelu")],
        norm_epsilon=float(hf.get("layer_norm_eps", 1e-12)),
        dropout=hf.get("hidden_dropout_prob", 0.1), attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        max_len=hf.get("max_position_embeddings", 512), type_vocab_size=hf.get("type_vocab_size", 2),
        init_std=hf.get("initializer_range", 0.02), vocab_multiple=1, attention_backend="xla",
        head=head, num_labels=num_labels)
    cfg.validate()
    return cfg.finalize(hf["vocab_size"], cfg.max_len, "cpu", "float32")


def _check_exportable(cfg: BertConfig) -> None:
    """A one-line ConfigError for the first llmjax option a HF BERT cannot express."""
    supported = (("norm_position", "post", "HF BERT is post-LN"),
                 ("position", "learned", "HF BERT has learned absolute positions"),
                 ("norm", "layernorm", "HF BERT uses LayerNorm"),
                 ("use_bias", True, "HF BERT has biases in every dense layer"))
    if cfg.name != "bert":
        fail("model.name", cfg.name, "this converter writes BERT models only")
    for key, value, why in supported:
        if getattr(cfg, key) != value:
            fail(f"model.{key}", getattr(cfg, key), f"{why}; export a model with {key}={value!r}")
    if cfg.ffn not in EXPORT_ACTIVATIONS:
        fail("model.ffn", cfg.ffn, f"HF BERT's GELU head needs ffn in {', '.join(EXPORT_ACTIVATIONS)}")
    if cfg.kv_heads != cfg.num_heads:
        fail("model.num_kv_heads", cfg.num_kv_heads, "HF BERT has no grouped-query attention; "
             "export a model with num_kv_heads=0")


def config_to_hf(cfg: BertConfig) -> dict[str, Any]:
    """config.json of cfg as BertForPreTraining, or the task architecture of its head.

    vocab_size is cfg.vocab_size: exact for an imported model, padded to vocab_multiple for one
    trained in llmjax (transformers accepts any size; the tokenizer's ids are all below it)."""
    _check_exportable(cfg)
    hf = {"architectures": [ARCHITECTURES.get(cfg.head, "BertForPreTraining")], "model_type": "bert",
          "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_hidden_layers": cfg.num_layers,
          "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.mlp_dim,
          "hidden_act": EXPORT_ACTIVATIONS[cfg.ffn], "hidden_dropout_prob": cfg.dropout,
          "attention_probs_dropout_prob": cfg.attention_dropout, "max_position_embeddings": cfg.max_len,
          "type_vocab_size": cfg.type_vocab_size, "initializer_range": cfg.init_std,
          "layer_norm_eps": cfg.norm_epsilon or 1e-5,  # llmjax's 0 is LayerNorm's default 1e-5
          "position_embedding_type": "absolute", "tie_word_embeddings": True, "dtype": "float32"}
    if cfg.num_labels:
        hf["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        hf["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return hf


# ---------------------------------------------------------------- parameters


def _shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    """Leaf path -> shape of cfg's model.init tree, traced (nothing allocated)."""
    model = build(cfg)
    tree = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), np.zeros((1, 1), np.int32))["params"]))
    return {path: leaf.shape for path, leaf in _flatten(tree).items()}


def _flatten(tree: Any) -> dict[str, Any]:
    return traverse_util.flatten_dict(tree, sep="/")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    return traverse_util.unflatten_dict(flat, sep="/")


def _hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if kind.startswith("kernel"):
        k = int(kind[-1])
        return (math.prod(shape[k:]), math.prod(shape[:k]))
    return shape if kind == "table" else (math.prod(shape),)


def _fresh(cfg: BertConfig, paths: list[str]) -> dict[str, np.ndarray]:
    """The model's own init from jax.random.key(0) for `paths`, jitted so only those leaves are
    computed (XLA drops the others)."""
    model = build(cfg)

    def init():
        params = _flatten(nn.unbox(model.init(jax.random.key(0), np.zeros((1, 1), np.int32))["params"]))
        return {p: params[p] for p in paths}
    return {p: np.asarray(a, np.float32) for p, a in jax.jit(init)().items()}


def params_from_hf(get: Callable[[str], np.ndarray], names: frozenset[str],
                   cfg: BertConfig) -> tuple[dict[str, Any], list[str]]:
    """cfg's llmjax params (numpy float32, the exact model.init tree) from HF tensors read one at a
    time, and the leaf paths the checkpoint lacks (a whole head: pooler, mlm_head, nsp_head,
    classifier), which get the model's own init from jax.random.key(0). Tensors cfg has no place
    for (another task's head) are not read."""
    prefix = "bert." if any(n.startswith("bert.") for n in names) else ""
    unrolled = dataclasses.replace(cfg, scan_layers=False)
    shapes = _shapes(unrolled)
    layout = _layout(unrolled, prefix)
    if {path for path, _, _ in layout} != set(shapes):
        raise ValueError(f"llmjax BERT's parameter tree differs from this converter's layout: "
                         f"{sorted(set(shapes) ^ {p for p, _, _ in layout})}")

    def present(name: str) -> str | None:
        alias = next((name[:-len(s)] + a for s, a in ALIASES.items() if name.endswith(s)), None)
        return name if name in names else alias if alias in names else None

    # a head is fresh when the checkpoint has none of its tensors (a partial head is an error)
    missing_heads = set(HEADS) - {path.split("/")[0] for path, name, _ in layout if present(name)}
    flat: dict[str, np.ndarray] = {}
    for path, name, kind in layout:
        if path.split("/")[0] in missing_heads:
            continue
        found = present(name)
        if found is None:
            raise ValueError(f"the checkpoint lacks {name}: not a BERT checkpoint of this config.json")
        flat[path] = _convert_in(get(found), found, kind, shapes[path])
        if path == "embeddings/token/embedding":
            _check_tied(get, names, flat[path])
    fresh = sorted(p for p in shapes if p.split("/")[0] in missing_heads)
    flat.update(_fresh(unrolled, fresh) if fresh else {})
    if cfg.scan_layers:
        flat = _stack_layers(flat, cfg.num_layers)
    return _nest(flat), fresh


def _convert_in(tensor: np.ndarray, name: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    tensor = np.asarray(tensor, np.float32)
    if tensor.shape != _hf_shape(kind, shape):
        raise ValueError(f"{name} has shape {tensor.shape}, expected {_hf_shape(kind, shape)} from "
                         "config.json: the weights and the config are of different models")
    return np.ascontiguousarray(tensor.T if kind.startswith("kernel") else tensor).reshape(shape)


def _check_tied(get: Callable[[str], np.ndarray], names: frozenset[str], embedding_VxE: np.ndarray) -> None:
    """llmjax ties the MLM decoder to the word embeddings: a stored decoder must equal them."""
    name = "cls.predictions.decoder.weight"
    if name in names and not np.array_equal(np.asarray(get(name), np.float32), embedding_VxE):
        raise ConfigError(f"{name} differs from the word embeddings: llmjax BERT ties the MLM decoder; "
                          "this checkpoint's untied decoder cannot be loaded")


def _stack_layers(flat: dict[str, np.ndarray], num_layers: int) -> dict[str, np.ndarray]:
    """layer_i/... leaves -> layers/... with a leading layer axis (the scanned tree), filled in
    place one layer at a time."""
    out = {p: a for p, a in flat.items() if not p.startswith("layer_")}
    for path in [p for p in flat if p.startswith("layer_0/")]:
        rest = path.split("/", 1)[1]
        stacked = np.empty((num_layers, *flat[path].shape), np.float32)
        for i in range(num_layers):
            stacked[i] = flat.pop(f"layer_{i}/{rest}")
        out[f"layers/{rest}"] = stacked
    return out


def params_to_hf(params: dict[str, Any], cfg: BertConfig) -> Iterator[tuple[str, np.ndarray]]:
    """(HF tensor name, float32 array) of cfg's params in BertForPreTraining's (or
    BertForSequenceClassification's) layout; the tied decoder weight is not written (transformers
    ties it on load)."""
    _check_exportable(cfg)
    flat = _flatten(nn.unbox(params))
    for path, name, kind in _layout(cfg, "bert."):
        head, _, rest = path.partition("/")
        if cfg.scan_layers and head.startswith("layer_"):
            key, index = f"layers/{rest}", int(head.removeprefix("layer_"))
        else:
            key, index = path, None
        if key not in flat:
            raise ValueError(f"params lack {key}: they are not the parameters of this model config")
        array = np.asarray(flat[key] if index is None else flat[key][index], np.float32)
        yield name, _convert_out(array, kind)


def _convert_out(array: np.ndarray, kind: str) -> np.ndarray:
    if kind.startswith("kernel"):
        k = int(kind[-1])
        return np.ascontiguousarray(array.reshape(math.prod(array.shape[:k]), -1).T)
    return array if kind == "table" else array.reshape(-1)
