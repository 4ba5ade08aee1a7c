"""The device mesh and every logical-axis rule, as data.

Blocks name their parameter and activation axes with the constants below and nothing else;
this file alone decides how those names land on the mesh axes `data`, `fsdp` and `tensor`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Iterator, Mapping, Sequence

import flax.linen as nn
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
EMBED_OUT = "embed_out"  # the output side of a (d_model, d_model) kernel (BERT's pooler, MLM transform)
LABELS = "labels"  # classes of a classifier or NSP head: few, not divisible by a mesh axis
TYPE_VOCAB = "type_vocab"  # BERT's token-type (segment A/B) table rows: two
RNN_HIDDEN = "rnn_hidden"  # a recurrent cell's units (each gate's output side, its biases)
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
    # The output side of a square kernel (fsdp already splits its input side). Not "tensor":
    # XLA's partitioner then returns gradients wrong by over 100% for BERT's MLM head on a
    # (2, 2, 2) mesh (forward exact) when the head runs on few rows per sequence (2 or 3 masked
    # positions): tests/test_sharding_xla_bug.py reproduces it in ten lines, xfail on the jax
    # versions seen broken. Replicating these few d x d kernels over tensor costs little.
    (EMBED_OUT, None),
    (LABELS, None),
    (TYPE_VOCAB, None),
    # Replicated: every time step reads all of h, so splitting the units would put a collective
    # inside the recurrence; fsdp still splits the input side (EMBED) of each gate kernel.
    (RNN_HIDDEN, None),
)


Rules = Sequence[tuple[str, Any]]


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules = RULES) -> Iterator[None]:
    """The mesh and the logical-axis rules, set together: parameter shardings (read with
    `active_rules` by llmjax.training.state) and the activation constraints inside the model come
    from this one rule table, so a caller (a test) that passes other rules changes both."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def active_rules() -> Rules:
    """The rule table `use_mesh` set; an error outside it (parameters would be replicated while
    activations are unconstrained, silently)."""
    rules = nn.get_logical_axis_rules()
    if not rules:
        raise ValueError("no logical-axis rules are active: run inside llmjax.sharding.use_mesh(mesh)")
    return rules


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


class DistributedSetupError(ValueError):
    """The environment asks for several processes but cannot start them."""


# Launchers whose process count makes a run multi-process, and the variables jax then reads
# (jax/_src/clusters): the count alone, left over in a plain shell, cannot start anything.
_LAUNCHERS = (
    ("SLURM_NTASKS", "srun", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")),
    ("OMPI_COMM_WORLD_SIZE", "mpirun",
     ("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK")),
)
TIMEOUT_VAR = "LLMJAX_DISTRIBUTED_TIMEOUT"  # seconds to wait for every process to join


def _multi_process_cause(env: Mapping[str, str]) -> str | None:
    """The variable (as NAME=value) that says this run has several processes, if any."""
    if "JAX_COORDINATOR_ADDRESS" in env:
        return f"JAX_COORDINATOR_ADDRESS={env['JAX_COORDINATOR_ADDRESS']}"
    for count_var, _, _ in _LAUNCHERS:
        if env.get(count_var, "1").strip() not in ("", "0", "1"):
            return f"{count_var}={env[count_var]}"
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "TPU_WORKER_HOSTNAMES=" + env["TPU_WORKER_HOSTNAMES"]
    return None


def _fix(cause: str) -> str:
    var = cause.split("=", 1)[0]
    launcher = next((name for count_var, name, _ in _LAUNCHERS if count_var == var), None)
    run_under = f"run it under {launcher} (`{launcher} python -m llmjax.main ...`)" if launcher else \
        "start every process with the same coordinator"
    return f"{run_under}, or unset {var} for a single-process run"


def _give_up(cause: str, timeout_s: float) -> None:
    """Watchdog: jax's own timeout aborts the process with a C++ stack trace instead."""
    print(f"llmjax: error: {cause} asks for several processes, but no other process joined within "
          f"{timeout_s:g} s ({TIMEOUT_VAR} sets the wait): {_fix(cause)}", file=sys.stderr, flush=True)
    os._exit(2)


def initialize_distributed() -> None:
    """Start JAX's distributed runtime when the environment describes several processes
    (TPU pod slice, SLURM or Open MPI GPU cluster, or explicit JAX_COORDINATOR_ADDRESS).
    JAX reads the coordinator, process count and index from that environment itself.

    A launcher's count without the rest of its variables (SLURM_NTASKS=2 left in a plain shell)
    raises DistributedSetupError at once; processes that never all join end the run after
    LLMJAX_DISTRIBUTED_TIMEOUT seconds (default 120) with one line, not a hang."""
    env = os.environ
    cause = _multi_process_cause(env)
    if cause is None or jax.distributed.is_initialized():
        return
    var = cause.split("=", 1)[0]
    for count_var, launcher, needed in _LAUNCHERS:
        missing = [v for v in needed if v not in env]
        if count_var == var and missing:
            raise DistributedSetupError(
                f"{cause} is set but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: "
                f"this process was not started by {launcher}; {_fix(cause)}")
    try:
        timeout_s = float(env.get(TIMEOUT_VAR, "120"))
    except ValueError:
        raise DistributedSetupError(
            f"{TIMEOUT_VAR}={env[TIMEOUT_VAR]!r} is not a number of seconds") from None
    watchdog = threading.Timer(timeout_s, _give_up, args=(cause, timeout_s))
    watchdog.daemon = True
    watchdog.start()  # initialize blocks in C++ with the GIL released, so the timer still fires
    try:
        jax.distributed.initialize(initialization_timeout=int(timeout_s) + 60)
    except (ValueError, TypeError, RuntimeError) as e:
        raise DistributedSetupError(f"jax.distributed.initialize failed with {cause}: "
                                    f"{str(e).splitlines()[0]}; {_fix(cause)}") from e
    finally:
        watchdog.cancel()
