"""The device mesh and every logical-axis rule, as data.

Blocks name their parameter and activation axes with the constants below and nothing else;
this file alone decides how those names land on the mesh axes `data`, `fsdp` and `tensor`.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Parameter axes.
VOCAB = "vocab"
EMBED = "embed"
MLP = "mlp"
HEADS = "heads"
KV_HEADS = "kv_heads"
HEAD_DIM = "head_dim"
LENGTH = "length"  # learned position table
NORM = "norm"  # norm scales and biases: tiny, replicated
LAYERS = "layers"  # the stacking axis of scanned layers' parameters
# Activation axes.
BATCH = "act_batch"
ACT_LENGTH = "act_length"
ACT_EMBED = "act_embed"
ACT_HEADS = "act_heads"
ACT_KV_HEADS = "act_kv_heads"
ACT_MLP = "act_mlp"
ACT_VOCAB = "act_vocab"

# Megatron-style tensor parallelism splits heads, the MLP hidden width and the vocabulary;
# FSDP splits the other (embed) dimension of every matrix; the batch is split over data and fsdp.
RULES: tuple[tuple[str, Any], ...] = (
    (BATCH, ("data", "fsdp")),
    (ACT_LENGTH, None),
    (ACT_EMBED, None),
    (ACT_HEADS, "tensor"),
    (ACT_KV_HEADS, "tensor"),
    (ACT_MLP, "tensor"),
    (ACT_VOCAB, "tensor"),
    (VOCAB, "tensor"),
    (EMBED, "fsdp"),
    (MLP, "tensor"),
    (HEADS, "tensor"),
    (KV_HEADS, "tensor"),
    (HEAD_DIM, None),
    (LENGTH, None),
    (NORM, None),
    (LAYERS, None),
)


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh with Auto axes: shardings propagate GSPMD-style from the
    parameter and batch shardings plus the logical constraints inside the model."""
    devices = list(devices if devices is not None else jax.devices())
    n = int(np.prod(shape))
    if n != len(devices):
        raise ValueError(f"mesh shape {tuple(shape)} needs {n} devices, got {len(devices)}")
    if devices == jax.devices():
        return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 3)
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def process_rows(mesh: Mesh, global_batch: int) -> slice:
    """The contiguous rows of the global batch that this host's devices hold: each host
    reads only its slice (its own shard of the data), then the global array is assembled."""
    index_map = leaf_sharding(mesh, 2).addressable_devices_indices_map((global_batch, 1))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [idx[0].stop if idx[0].stop is not None else global_batch for idx in index_map.values()]
    return slice(min(starts), max(stops))


def leaf_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Sharding of a batch leaf: rows (axis 0) split over data and fsdp, the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def batch_shardings(mesh: Mesh, batch: dict[str, Any]) -> dict[str, NamedSharding]:
    return {k: leaf_sharding(mesh, np.ndim(v)) for k, v in batch.items()}


def global_batch(local: dict[str, np.ndarray], mesh: Mesh, global_rows: int) -> dict[str, jax.Array]:
    """Host-local rows -> global jax.Arrays sharded over the mesh (single- or multi-host)."""
    return {k: jax.make_array_from_process_local_data(leaf_sharding(mesh, v.ndim), v,
                                                      (global_rows, *v.shape[1:]))
            for k, v in local.items()}


def initialize_distributed() -> None:
    """Start JAX's distributed runtime when the environment describes several processes
    (TPU pod slice, SLURM or Open MPI GPU cluster, or explicit JAX_COORDINATOR_ADDRESS).
    JAX reads the coordinator, process count and index from that environment itself."""
    import os

    env = os.environ
    multi = (
        "JAX_COORDINATOR_ADDRESS" in env
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
        or len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
    )
    if multi and not jax.distributed.is_initialized():
        jax.distributed.initialize()
