"""The train state and its shardings.

The state is a plain pytree of arrays (step, params, opt_state): everything a checkpoint
holds. The model and optimizer are not in it, so Orbax never sees a function. The shardings
come from the parameters' logical axis names through the rules in llmjax.sharding, resolved
once with `jax.eval_shape`, so the full state is never materialised on one device.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from llmjax import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates done
    params: Any
    opt_state: Any


def init_fn(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
            seed: int) -> Callable[[], TrainState]:
    """A function of no arguments that builds the initial state (to jit with out_shardings);
    init_params(rng) gives the model's parameters (the task knows the example input)."""

    def init() -> TrainState:
        params = init_params(jax.random.key(seed))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    return init


def _unbox(tree: Any) -> Any:
    return jax.tree.map(lambda x: x.value if isinstance(x, nn.Partitioned) else x, tree,
                        is_leaf=lambda x: isinstance(x, nn.Partitioned))


def abstract_state(init: Callable[[], Any], mesh: Mesh) -> tuple[Any, Any]:
    """(unboxed abstract state, its NamedShardings), without allocating anything."""
    with nn.logical_axis_rules(()):  # no activation constraints during init (see create)
        boxed = jax.eval_shape(init)
    specs = nn.get_partition_spec(boxed)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, sharding.RULES)
    # Leaves that carry no logical names (step, optimizer counters) are replicated.
    shardings = jax.tree.map(
        lambda s: s if isinstance(s, NamedSharding) else NamedSharding(mesh, P()), shardings,
        is_leaf=lambda x: isinstance(x, (NamedSharding, P)) or x is None)
    abstract = _unbox(boxed)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            abstract, shardings)
    return abstract, shardings


def create(init: Callable[[], Any], shardings: Any) -> TrainState:
    """Initialise directly into the target shardings. Activation constraints are switched off:
    flax's DenseGeneral constrains its kernel while still flat during init, and out_shardings
    already places every parameter."""
    with nn.logical_axis_rules(()):
        return jax.jit(lambda: _unbox(init()), out_shardings=shardings)()


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
