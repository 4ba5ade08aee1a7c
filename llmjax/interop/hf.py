"""Hugging Face model directories <-> llmjax (model, params, config).

transformers no longer has Flax models, so the bridge is the files themselves: config.json and
the safetensors (or pytorch_model.bin) weights, as Levanter and MaxText do. One converter module
per HF family (llmjax/interop/hf_<family>.py) maps the two; each defines
  MODEL_TYPES                              config.json "model_type" values it handles
  config_from_hf(hf) -> config             the runtime llmjax config (unpadded vocabulary)
  params_from_hf(get, names, cfg) -> (params, fresh)   numpy params built one tensor at a time;
                                           fresh = llmjax paths the checkpoint lacks (initialised)
  config_to_hf(cfg) -> dict                the transformers config.json
  params_to_hf(params, cfg) -> iterator of (hf name, float32 array)
Options one side cannot express are one-line ConfigErrors, raised before any weights are read.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from types import ModuleType
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax import sharding as sh
from llmjax.config import ConfigError
from llmjax.interop import hf_files
from llmjax.models import registry

CONVERTERS = ("hf_gpt2", "hf_llama", "hf_bert")  # modules of llmjax.interop; a new family adds its name here
CONFIG_FILE = "config.json"
Log = Callable[[str], None]


def converters() -> list[ModuleType]:
    return [importlib.import_module(f"llmjax.interop.{name}") for name in CONVERTERS]


def converter_for(model_type: str) -> ModuleType:
    """The converter whose MODEL_TYPES has model_type; a one-line ConfigError listing them if none."""
    modules = converters()
    for module in modules:
        if model_type in module.MODEL_TYPES:
            return module
    supported = ", ".join(t for m in modules for t in m.MODEL_TYPES)
    raise ConfigError(f"{CONFIG_FILE} model_type={model_type!r} is not supported: llmjax converts {supported}")


def read_config(path: str) -> dict:
    """config.json of an HF model directory; a one-line ValueError if it is missing, garbled or has no
    model_type."""
    file = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(file):
        raise ValueError(f"{path} has no {CONFIG_FILE}: not a Hugging Face model directory (it needs "
                         f"{CONFIG_FILE} and one of {', '.join(hf_files.WEIGHT_FILES)})")
    hf = hf_files.read_json(file)
    if not isinstance(hf, dict) or "model_type" not in hf:
        raise ValueError(f"{file} has no model_type: re-save it with transformers' save_pretrained")
    return hf


def model_config(path: str) -> Any:
    """The runtime llmjax config of the HF model directory `path`, from config.json alone."""
    hf_config = read_config(path)
    return converter_for(hf_config["model_type"]).config_from_hf(hf_config)


def tokenizer(path: str) -> Any:
    """The tokenizer of the HF model directory `path` as an llmjax tokenizer (kind "hf"), its
    vocab_size the model's embedding rows; a tokenizer with more ids than the model has rows is a
    one-line ValueError (before any weights are read)."""
    from llmjax.data.hf_tokenizer import HFTokenizer

    rows = model_config(path).vocab_size
    out = HFTokenizer.from_dir(path, model_vocab=rows)
    if out.vocab_size > rows:
        raise ValueError(f"{path}: the tokenizer has {out.vocab_size} ids but the model {rows} "
                         "embeddings: the directory mixes two checkpoints")
    return out


def save_tokenizer(path: str, directory: str) -> Any:
    """`tokenizer(path)`, saved in directory; returns it."""
    out = tokenizer(path)
    out.save(directory)
    return out


def is_hf_dir(path: str) -> bool:
    """True when `path` is a directory with a config.json naming a model_type and a weights file."""
    try:
        read_config(path)
    except (ValueError, OSError):
        return False
    return hf_files.weights_file(path) is not None


def load(path: str, *, shardings: Any = None, log: Log | None = None) -> tuple[nn.Module, Any, Any]:
    """(model, params, config) of the HF model directory `path`: config is the runtime llmjax
    config (the family's finalized dataclass), params plain jnp arrays. With `shardings` (a
    pytree of jax shardings matching params, e.g. the training loop's) each leaf is placed onto
    its sharding, replacing its host copy as it goes. Prints nothing; `log`: see read_params."""
    params, config, _ = read_params(path, log=log)
    model = registry.build(config)
    with nn.logical_axis_rules(()):  # shapes only: no mesh constraint applies
        _check_tree(model, params, "the converted checkpoint")
    _place(params, shardings)
    return model, params, config


def read_params(path: str, *, log: Log | None = None) -> tuple[dict, Any, list[str]]:
    """(numpy params tree, runtime llmjax config, the "/"-joined paths of the leaves the checkpoint
    lacks) of the HF model directory `path`, converted one tensor at a time. `log` (e.g. print)
    gets "hf: initialised fresh: ..." for parameters the checkpoint lacks (the converter's deterministic init) and "hf: not read: ..." for checkpoint
    tensors the model does not use."""
    hf_config = read_config(path)
    converter = converter_for(hf_config["model_type"])
    config = converter.config_from_hf(hf_config)
    get, names = hf_files.read_tensors(path)
    read: set[str] = set()

    def get_recorded(name: str) -> np.ndarray:
        read.add(name)
        return get(name)

    with nn.logical_axis_rules(()):  # a fresh head's init runs unconstrained, even under a mesh
        params, fresh = converter.params_from_hf(get_recorded, names, config)
    if log is not None:
        if fresh:
            log(f"hf: initialised fresh: {', '.join(fresh)}")
        unread = sorted(names - read)
        if unread:
            log(f"hf: not read: {len(unread)} checkpoint tensors ({', '.join(unread[:4])}"
                f"{', ...' if len(unread) > 4 else ''})")
    return params, config, list(fresh)


def param_shapes(model: nn.Module) -> Any:
    """The parameter tree of a converted family's model as ShapeDtypeStructs (cheap: eval_shape)."""
    dummy = jnp.zeros((1, 1), jnp.int32)
    return nn.unbox(jax.eval_shape(model.init, jax.random.key(0), dummy))["params"]


def _check_tree(model: nn.Module, params: Any, what: str) -> None:
    """params must have exactly the paths and shapes of model.init's params."""
    expected = param_shapes(model)
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    if want != got:
        diff = sorted(p for p in want.keys() | got.keys() if want.get(p) != got.get(p))
        raise ValueError(f"{what} does not fit the model: {len(diff)} parameters differ in path or shape, "
                         f"e.g. {diff[0]} ({got.get(diff[0])} vs the model's {want.get(diff[0])})")


def _place(params: dict, shardings: Any) -> None:
    """Replace each numpy leaf, in place, by a jax array (on its sharding when given)."""
    for key, value in params.items():
        try:
            sharding = None if shardings is None else shardings[key]
        except (KeyError, TypeError):
            raise ValueError(f"shardings has no entry {key!r}: pass a pytree matching the model's "
                             "params") from None
        if isinstance(value, dict):
            _place(value, sharding)
        else:
            params[key] = jax.device_put(np.asarray(value, np.float32), sharding)


def save(path: str, model: nn.Module, params: Any, config: Any, *, model_type: str | None = None,
         extra_config: dict | None = None,
         max_shard_bytes: int = hf_files.MAX_SHARD_BYTES) -> str:
    """Write an HF model directory at `path` (config.json + safetensors) that transformers'
    from_pretrained loads. model_type picks the format (None: the first converter whose format
    expresses the config, e.g. gpt2 for a GPT-2-like GPT, llama for a rope/rmsnorm/swiglu one);
    extra_config adds config.json keys (e.g. bos_token_id / eos_token_id from the tokenizer).
    Written into a temporary sibling directory, then renamed; refuses an existing non-empty
    path. Returns path."""
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise ValueError(f"{path} already exists and is not an empty directory: save to a new path")
    params = nn.unbox(params)
    _check_tree(model, params, "params")
    params, config = _unpadded(model, params, config)
    converter, hf_config = export_config(config, model_type)
    hf_config.update({"torch_dtype": "float32", **(extra_config or {})})
    if getattr(config, "scan_layers", False):
        params, config = _unscanned(params, config)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp", dir=parent)
    try:
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(hf_config, f, indent=2, sort_keys=True)
        hf_files.write_tensors(tmp, converter.params_to_hf(params, config), max_shard_bytes)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def export_config(config: Any, model_type: str | None = None) -> tuple[ModuleType, dict]:
    """(converter, config.json dict) for model_type, or for the first format that fits."""
    if model_type is not None:
        converter = converter_for(model_type)
        return converter, converter.config_to_hf(config)
    reasons = []
    for converter in converters():
        try:
            return converter, converter.config_to_hf(config)
        except ConfigError as e:
            reasons.append(f"{converter.MODEL_TYPES[0]}: {e}")
    raise ConfigError(f"no Hugging Face format expresses this model ({'; '.join(reasons)})")


def _unpadded(model: nn.Module, params: dict, config: Any) -> tuple[dict, Any]:
    """The vocabulary's padding rows cut from every parameter axis named VOCAB, and the config's
    vocab_size the tokenizer's: llmjax masks those ids' logits, transformers has nothing to mask
    them with, so an exported model must not have them."""
    real = getattr(config, "real_vocab_size", 0)
    if not real or real >= config.vocab_size:
        return params, config
    dummy = jnp.zeros((1, 1), jnp.int32)
    specs = nn.get_partition_spec(jax.eval_shape(model.init, jax.random.key(0), dummy))["params"]

    def cut(spec, x):
        return x[tuple(slice(0, real) if name == sh.VOCAB else slice(None) for name in spec or ())]

    params = jax.tree.map(cut, specs, params, is_leaf=lambda x: x is None or isinstance(x, jax.sharding.PartitionSpec))
    return params, dataclasses.replace(config, vocab_size=real)


def _unscanned(params: dict, config: Any) -> tuple[dict, Any]:
    """Scanned params (layers stacked under "layers") as layer_0..layer_{n-1}, and the config
    without scan_layers: converters see one layout."""
    params = dict(params)
    stacked = params.pop("layers")
    for i in range(config.num_layers):
        params[f"layer_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
    return params, dataclasses.replace(config, scan_layers=False)
