"""Checkpointer: exact round trip, resharding on restore, and a corrupt latest step."""
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from llmjax import sharding
from llmjax.training.checkpoint import Checkpointer


def _state(mesh, spec):
    w = jnp.arange(64, dtype=jnp.float32).reshape(8, 8)
    return {"w": jax.device_put(w, NamedSharding(mesh, spec)), "step": jnp.int32(3)}


def _abstract(mesh, spec):
    return {"w": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=NamedSharding(mesh, spec)),
            "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, P()))}


def test_round_trip_and_restore_on_another_mesh(tmp_path):
    mesh8 = sharding.make_mesh((8, 1, 1))
    ck = Checkpointer(str(tmp_path / "ck"), keep=2, async_save=True)
    ck.save(3, _state(mesh8, P("data", None)), {"data_step": 3})
    ck.wait()
    mesh2 = sharding.make_mesh((1, 2, 4))
    state, meta = Checkpointer(str(tmp_path / "ck"), keep=2).restore(_abstract(mesh2, P("fsdp", "tensor")))
    assert meta == {"data_step": 3}
    np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(64).reshape(8, 8))
    assert state["w"].sharding.spec == P("fsdp", "tensor")  # the target sharding is honoured


def test_corrupt_latest_falls_back_and_is_kept(tmp_path):
    mesh = sharding.make_mesh((8, 1, 1))
    ck = Checkpointer(str(tmp_path / "ck"), keep=5, async_save=False)
    for step in (10, 20):
        s = _state(mesh, P())
        s["w"] = s["w"] + step
        ck.save(step, s, {"data_step": step})
    ck.close()
    # Corrupt every file of step 20's state.
    for root, _, files in os.walk(tmp_path / "ck" / "20" / "state"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    msgs = []
    ck2 = Checkpointer(str(tmp_path / "ck"), keep=5, log=msgs.append)
    state, meta = ck2.restore(_abstract(mesh, P()))
    assert meta["data_step"] == 10
    np.testing.assert_array_equal(np.asarray(state["w"]), np.arange(64).reshape(8, 8) + 10)
    assert any("step 20 failed to restore" in m for m in msgs)
    assert ck2.all_steps() == [10]
    kept = os.listdir(tmp_path / "checkpoints_corrupt")
    assert len(kept) == 1 and kept[0].startswith("20-")  # moved aside, not deleted
    s = _state(mesh, P())
    ck2.save(20, s, {"data_step": 20})  # the step can be written again
    ck2.close()
    assert Checkpointer(str(tmp_path / "ck"), keep=5).all_steps() == [10, 20]


def test_empty_directory_restores_nothing(tmp_path):
    mesh = sharding.make_mesh((8, 1, 1))
    assert Checkpointer(str(tmp_path / "ck"), keep=1).restore(_abstract(mesh, P())) is None
