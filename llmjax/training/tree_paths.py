"""Pytrees as flat {"a/b/c": leaf} dicts: one naming for checkpoints (a state against Orbax's
metadata of it) and warm starts (parameters matched by path), so the two always agree."""
from __future__ import annotations

from typing import Any

import jax


def _name(key: Any) -> str:
    """A key path entry as Orbax names it: dict key, attribute (a dataclass field), index."""
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    return str(getattr(key, "key", key))  # FlattenedIndexKey


def flat_paths(tree: Any) -> dict[str, Any]:
    """{'params/embed/embedding': leaf, ...} in the tree's leaf order (empty nodes dropped)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(_name(k) for k in path): leaf for path, leaf in leaves}
