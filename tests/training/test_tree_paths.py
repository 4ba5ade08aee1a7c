"""One flattener for checkpoints and warm starts: Orbax's names, the tree's leaf order."""
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from llmjax.training.state import TrainState
from llmjax.training.tree_paths import flat_paths


def test_flat_paths_name_leaves_as_orbax_does_in_leaf_order():
    params = {"embed": {"embedding": jnp.zeros((4, 2))}, "layer_0": {"w": jnp.ones(3), "b": jnp.ones(1)},
              "empty": {}}
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       opt_state=(jnp.zeros(2), {"mu": jnp.zeros(1)}))
    flat = flat_paths(state)
    assert flat == ocp.tree.to_flat_dict(state, sep="/")
    assert list(flat) == ["step", "params/embed/embedding", "params/layer_0/b", "params/layer_0/w",
                          "opt_state/0", "opt_state/1/mu"]
    assert list(flat.values()) == jax.tree.leaves(state)

