"""config.init_from reads another run's newest checkpoint that restores, as resume does: a
corrupt one is skipped with one line and nothing in that run's directory is moved; a step named
explicitly that is corrupt is a one-line error."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.experiment import base_config, resolve
from llmjax.models import registry
from llmjax.training import warm_start
from llmjax.training.checkpoint import Checkpointer, CheckpointError
from llmjax.training.state import values
from tests.helpers import truncate_checkpoint


def _params(seed):
    """A real 2-layer GPT's parameters (d_model 32)."""
    c = base_config()
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 2, 32, 4, 64
    model = registry.build(resolve(c, 8).model.finalize(vocab_size=64, max_len=16, platform="cpu",
                                                        dtype="float32"))
    return values(model.init(jax.random.key(seed), jnp.zeros((1, 16), jnp.int32))["params"])


def test_init_from_skips_a_corrupt_newest_checkpoint_unless_it_is_named(tmp_path):
    parent = tmp_path / "parent"
    ck = Checkpointer(str(parent / "checkpoints"), keep=5, async_save=False)
    for step in (1, 2):
        ck.save(step, {"params": _params(step)}, {"data_step": step})
    ck.close()
    truncate_checkpoint(parent / "checkpoints" / "2")
    msgs = []
    restored = warm_start.restore_params(str(parent), _params(0), msgs.append)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(_params(1))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert len(msgs) == 2 and "checkpoint step 2" in msgs[0] and "corrupt" in msgs[0], msgs
    assert msgs[1].startswith(f"init_from {parent / 'checkpoints' / '1'}: restored"), msgs
    assert sorted(os.listdir(parent / "checkpoints")) == ["1", "2"] and not (parent / "checkpoints_corrupt").exists()

    with pytest.raises(CheckpointError) as e:
        warm_start.restore_params(str(parent / "checkpoints" / "2"), _params(0), msgs.append)
    assert "\n" not in str(e.value) and "checkpoint step 2" in str(e.value) and "config.init_from" in str(e.value)
