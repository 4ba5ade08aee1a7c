"""Train-state shardings on a real GPT tree: parameters follow their logical names, and every
optimizer-state leaf gets a sharding derived from its shape (the parameter's when the shapes
agree, replicated otherwise), so factored statistics never inherit a parameter's axis names."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from llmjax import sharding
from llmjax.config import OptimConfig
from llmjax.models.gpt import GPTConfig
from llmjax.models import registry
from llmjax.training import optim
from llmjax.training.state import abstract_state, create, init_fn

GPT = GPTConfig(vocab_size=512, num_layers=2, d_model=128, num_heads=4, num_kv_heads=4, mlp_dim=512,
                  max_len=64)


def _state(name: str):
    mesh = sharding.make_mesh((2, 2, 2))
    tx = optim.optimizer(OptimConfig(name=name), 100)
    with sharding.use_mesh(mesh):
        model = registry.build(GPT)
        tokens = jnp.zeros((1, GPT.max_len), jnp.int32)
        init = init_fn(lambda rng: model.init(rng, tokens)["params"], tx, seed=0)
        abstract, state_sh = abstract_state(init, mesh)
        state = create(init, state_sh)
    return mesh, tx, abstract, state_sh, state


@pytest.mark.parametrize("name", ["adamw", "adafactor", "lion", "sgd"])
def test_optimizer_state_shardings_derive_from_shapes(name):
    mesh, tx, abstract, state_sh, state = _state(name)
    replicated = NamedSharding(mesh, P())
    # Parameters: as the logical rules say (vocab -> tensor, embed -> fsdp, heads -> tensor).
    assert state_sh.params["embed"]["embedding"].spec == P("tensor", "fsdp")
    assert state_sh.params["layer_0"]["attn"]["query"]["kernel"].spec == P("fsdp", "tensor", None)
    assert state_sh.params["layer_0"]["attn"]["query"]["bias"].spec == P("tensor", None)

    # Every optimizer-state leaf: its parameter's sharding when param-shaped, else replicated.
    def expected(leaf, param, param_sh):
        return param_sh if leaf.shape == param.shape else replicated

    want = optax.tree_map_params(tx, expected, state.opt_state, state.params, state_sh.params,
                                 transform_non_params=lambda _: replicated)
    assert jax.tree.all(jax.tree.map(lambda s, w: s == w, state_sh.opt_state, want))
    # What was created is what abstract_state promised (the checkpoint restores into it).
    leaves = jax.tree.leaves(state)
    assert all(not isinstance(x, nn.Partitioned) for x in leaves)
    for x, a, s in zip(leaves, jax.tree.leaves(abstract), jax.tree.leaves(state_sh), strict=True):
        assert x.shape == a.shape and x.dtype == a.dtype and x.sharding == a.sharding == s

    if name == "adafactor":  # factored statistics exist and are of lower rank than their parameter
        lower = optax.tree_map_params(tx, lambda leaf, p: leaf.ndim < p.ndim, state.opt_state, state.params,
                                      transform_non_params=lambda _: False)
        assert any(jax.tree.leaves(lower))
    if name == "adamw":  # Adam moments are sharded exactly like their parameter
        for moment in ("mu", "nu"):
            kernel = optax.tree_utils.tree_get(state.opt_state, moment)["layer_0"]["attn"]["query"]["kernel"]
            assert kernel.sharding.spec == P("fsdp", "tensor", None)
