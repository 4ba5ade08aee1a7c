"""The train state and its shardings.

The state is a plain pytree of arrays (step, params, opt_state): everything a checkpoint
holds. The model and optimizer are not in it, so Orbax never sees a function. Parameter
shardings come from the parameters' logical axis names through the active rules (the ones
llmjax.sharding.use_mesh set, which also constrain the activations);
optimizer-state shardings come from shapes: a leaf shaped like its parameter (Adam moments,
momentum) is sharded like it, any other leaf (Adafactor's factored statistics, counters) is
replicated. All of it is resolved once with `jax.eval_shape`, so the full state is never
materialised on one device.
"""
from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class StateInit:
    """A function of no arguments that builds the initial state (to jit with out_shardings).
    It keeps the optimizer so that abstract_state can map optimizer-state leaves to params."""

    init_params: Callable[[jax.Array], Any]  # rng -> the model's boxed params (the task's example input)
    tx: optax.GradientTransformation
    seed: int

    def __call__(self) -> TrainState:
        """Params still boxed with their logical names; the optimizer state built from the
        unboxed params, so it carries no names of its own."""
        params = self.init_params(jax.random.key(self.seed))
        opt_state = self.tx.init(values(params))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)


def values(tree: Any) -> Any:
    """The arrays of a logically boxed tree. Not nn.unbox: that also applies each box's sharding
    constraint, which is wrong here (abstract shapes under a mesh, and init with rules off)."""
    return jax.tree.map(lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.Partitioned) else x,
                        tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def init_fn(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
            seed: int) -> StateInit:
    """The initial-state builder that abstract_state and create take."""
    return StateInit(init_params, tx, seed)


def _param_shardings(boxed_params: Any, mesh: Mesh, rules: sharding.Rules) -> Any:
    """From logical names; leaves that carry none are replicated."""
    specs = nn.get_partition_spec(boxed_params)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    return jax.tree.map(
        lambda s: s if isinstance(s, NamedSharding) else NamedSharding(mesh, P()), shardings,
        is_leaf=lambda x: isinstance(x, (NamedSharding, P)) or x is None)


def _opt_state_shardings(tx: optax.GradientTransformation, opt_state: Any, params: Any,
                         param_shardings: Any, mesh: Mesh) -> Any:
    """A parameter's sharding for a leaf of the parameter's shape, replicated otherwise."""
    replicated = NamedSharding(mesh, P())
    return optax.tree_map_params(
        tx, lambda leaf, p, s: s if leaf.shape == p.shape else replicated, opt_state, params,
        param_shardings, transform_non_params=lambda _: replicated)


def abstract_state(init: StateInit, mesh: Mesh) -> tuple[TrainState, TrainState]:
    """(unboxed abstract state, its NamedShardings), without allocating anything. Runs inside
    sharding.use_mesh: parameters are sharded by the rules that constrain the activations."""
    rules = sharding.active_rules()
    with nn.logical_axis_rules(()):  # no activation constraints during init (see create)
        boxed = jax.eval_shape(init)
    params = values(boxed.params)
    param_sh = _param_shardings(boxed.params, mesh, rules)
    shardings = TrainState(step=NamedSharding(mesh, P()), params=param_sh,
                           opt_state=_opt_state_shardings(init.tx, boxed.opt_state, params, param_sh, mesh))
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            boxed.replace(params=params), shardings)
    return abstract, shardings


def create(init: StateInit, shardings: TrainState) -> TrainState:
    """Initialise directly into the target shardings. Activation constraints are switched off:
    flax's DenseGeneral constrains its kernel while still flat during init, and out_shardings
    already places every parameter."""
    with nn.logical_axis_rules(()):
        return jax.jit(lambda: values(init()), out_shardings=shardings)()


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
