"""The tensors of a Hugging Face model directory, read lazily one at a time and written back.

Reading accepts what the Hub holds: model.safetensors, sharded model-0000i-of-0000n.safetensors
with model.safetensors.index.json, or pytorch_model.bin (and its sharded index) loaded with
torch.load(weights_only=True, mmap=True), which never unpickles code. A converter asks for one
tensor at a time, so converting a large model needs one copy of it, not two. Floating tensors
come back as float32 numpy arrays (llmjax keeps its parameters in float32; bfloat16 files are
read through ml_dtypes, which numpy needs to know the dtype).

Writing produces model.safetensors, or shards plus model.safetensors.index.json once the
tensors exceed max_shard_bytes, with the metadata {"format": "pt"} that transformers expects.
"""
from __future__ import annotations

import json
import os
import pickle
from typing import Callable, Iterable

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, so safe_open(framework="numpy") reads it)
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from llmjax.config import UserError

SAFE_FILE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFE_FILE, SAFE_INDEX, BIN_FILE, BIN_INDEX)  # in order of preference
MAX_SHARD_BYTES = 5 * 10**9  # transformers' usual shard size

Get = Callable[[str], np.ndarray]


def weights_file(path: str) -> str | None:
    """The first of WEIGHT_FILES present in directory `path`, or None."""
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(path, name)):
            return name
    return None


def read_tensors(path: str) -> tuple[Get, frozenset[str]]:
    """(get, names) over the weights in directory `path`: get(name) reads that one tensor
    (floating dtypes as float32); names are every tensor the checkpoint holds."""
    found = weights_file(path)
    if found is None:
        raise ValueError(f"{path} holds no Hugging Face weights: expected one of {', '.join(WEIGHT_FILES)}")
    opener = _open_safetensors if found.startswith(SAFE_FILE) else _open_bin
    if not found.endswith(".index.json"):
        names, get = opener(os.path.join(path, found))
        return _checked(get, names, path), names
    shard_of = _read_index(path, found)
    opened: dict[str, Get] = {}

    def get(name: str) -> np.ndarray:
        shard = shard_of[name]
        if shard not in opened:
            opened[shard] = opener(os.path.join(path, shard))[1]
        return opened[shard](name)

    names = frozenset(shard_of)
    return _checked(get, names, path), names


def check_complete(path: str) -> None:
    """A one-line UserError when a safetensors file or shard in directory `path` is cut short,
    from the headers alone (no tensor is read), so a run refuses it before any data work.
    pytorch_model.bin is checked as it is read (its check would read it)."""
    found = weights_file(path)
    if found is None or not found.startswith(SAFE_FILE):
        return
    shards = sorted(set(_read_index(path, found).values())) if found.endswith(".index.json") else [found]
    for shard in shards:
        _open_safetensors(os.path.join(path, shard))


def _checked(get: Get, names: frozenset[str], path: str) -> Get:
    def checked_get(name: str) -> np.ndarray:
        if name not in names:
            raise ValueError(f"tensor {name!r} is not in the checkpoint at {path}: it holds "
                             f"{len(names)} tensors, e.g. {sorted(names)[:3]}")
        return get(name)
    return checked_get


def read_json(file: str) -> object:
    """A checkpoint's JSON file (config.json, an index); a one-line UserError naming it when it is
    cut short or garbled (an interrupted download)."""
    with open(file, encoding="utf-8") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{file} is not valid JSON ({e}): download it again, or re-save the model "
                            "with transformers' save_pretrained") from None


def _read_index(path: str, index_name: str) -> dict[str, str]:
    """tensor name -> shard file, from a sharded checkpoint's index; every shard must exist."""
    index = read_json(os.path.join(path, index_name))
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{os.path.join(path, index_name)} has no weight_map: re-save the checkpoint "
                         "(save_pretrained) or replace the index")
    missing = sorted({s for s in weight_map.values() if not os.path.isfile(os.path.join(path, s))})
    if missing:
        raise ValueError(f"{index_name} in {path} names shards that are not there: {', '.join(missing)}; "
                         "download every shard")
    return weight_map


def _float32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype.kind in "iub" else x.astype(np.float32, copy=False)


def _open_safetensors(file: str) -> tuple[frozenset[str], Get]:
    """The header is read and checked against the file's size here; tensors on demand (mmap)."""
    try:
        handle = safe_open(file, framework="numpy")
    except SafetensorError as e:
        raise UserError(f"{file} is not a complete safetensors file ({e}): download it again (an "
                        "interrupted download or a full disk cuts it short)") from None
    return frozenset(handle.keys()), lambda name: _float32(handle.get_tensor(name))


def _open_bin(file: str) -> tuple[frozenset[str], Get]:
    import torch  # only .bin checkpoints need torch

    try:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # the pre-1.6 (non-zip) format cannot be memory-mapped: read it whole
            if "mmap" not in str(e):
                raise
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{file} holds objects other than tensors, which torch.load(weights_only=True) refuses "
                         "to unpickle: re-save it with torch.save(model.state_dict()) or as safetensors") from None
    except (OSError, RuntimeError, EOFError) as e:  # cut short: mmap fails, or the zip or pickle ends early
        cause = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{file} is not a complete PyTorch checkpoint ({cause}): download "
                        "it again (an interrupted download or a full disk cuts it short)") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{file} is not a plain dict of name -> tensor: re-save it with "
                         "torch.save(model.state_dict()) or as safetensors")

    def get(name: str) -> np.ndarray:
        tensor = state[name]
        return (tensor.to(torch.float32) if tensor.is_floating_point() else tensor).numpy()

    return frozenset(state), get


def write_tensors(path: str, tensors: Iterable[tuple[str, np.ndarray]],
                  max_shard_bytes: int = MAX_SHARD_BYTES) -> list[str]:
    """Write (name, array) pairs into directory `path` (created if needed) as model.safetensors,
    or as model-0000i-of-0000n.safetensors + model.safetensors.index.json when they exceed
    max_shard_bytes (a tensor larger than that gets a shard of its own). Holds one shard in
    memory at a time. Returns the files written."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes={max_shard_bytes}: must be positive")
    os.makedirs(path, exist_ok=True)
    parts: list[tuple[str, list[str]]] = []  # (temporary file, its tensor names)
    shard: dict[str, np.ndarray] = {}
    shard_bytes = total_bytes = 0
    seen: set[str] = set()
    for name, array in tensors:
        if name in seen:
            raise ValueError(f"tensor {name!r} is written twice: each name must be unique")
        seen.add(name)
        array = np.ascontiguousarray(array)
        if shard and shard_bytes + array.nbytes > max_shard_bytes:
            parts.append(_write_part(path, len(parts), shard))
            shard, shard_bytes = {}, 0
        shard[name] = array
        shard_bytes += array.nbytes
        total_bytes += array.nbytes
    if not parts:
        save_file(shard, os.path.join(path, SAFE_FILE), metadata={"format": "pt"})
        return [SAFE_FILE]
    if shard:
        parts.append(_write_part(path, len(parts), shard))
    return _name_shards(path, parts, total_bytes)


def _write_part(path: str, i: int, shard: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    """One shard under a temporary name (the final name needs the shard count)."""
    name = f"part-{i:05d}.safetensors.tmp"
    save_file(shard, os.path.join(path, name), metadata={"format": "pt"})
    return name, list(shard)


def _name_shards(path: str, parts: list[tuple[str, list[str]]], total_bytes: int) -> list[str]:
    """Rename the parts to transformers' shard names and write the index."""
    weight_map, files = {}, []
    for i, (part, names) in enumerate(parts):
        final = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
        os.replace(os.path.join(path, part), os.path.join(path, final))
        weight_map.update((n, final) for n in names)
        files.append(final)
    with open(os.path.join(path, SAFE_INDEX), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total_bytes}, "weight_map": weight_map}, f, indent=2)
    return files + [SAFE_INDEX]
