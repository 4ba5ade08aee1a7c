"""Checkpointer: exact round trip, resharding, and what counts as corrupt versus a config change.

Restore rules under test: only an unreadable (or non-finite) checkpoint is corrupt, and it is
moved aside only when an older one restores; a state that does not fit the run's abstract state
(another optimizer, another shape) is a one-line error that moves nothing; a save never writes
a non-finite state; a failed save is one prompt line, not a traceback and a 5-minute hang.
"""
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from llmjax import sharding
from llmjax.experiment import base_config, resolve, train_and_evaluate
from llmjax.models import registry
from llmjax.training import checkpoint, optim
from llmjax.training.checkpoint import Checkpointer, CheckpointError, read_newest
from llmjax.training.state import abstract_state, create, init_fn
from tests.helpers import tiny_config, write_corpus

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _gpt(optimizer: str = "adamw", mlp_dim: int = 512):
    """(abstract state, initial state) of a real 2-layer GPT (d_model 128) with its AdamW state."""
    c = base_config()
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 2, 128, 4, mlp_dim
    c.optim.name = optimizer
    run = resolve(c, 8)
    mesh = sharding.make_mesh((8, 1, 1))
    model = registry.build(run.model.finalize(vocab_size=256, max_len=32, platform="cpu", dtype="float32"))
    tokens = jnp.zeros((1, 32), jnp.int32)
    with sharding.use_mesh(mesh):
        init = init_fn(lambda rng: model.init(rng, tokens)["params"], optim.optimizer(run.optim, 100), 0)
        abstract, shardings = abstract_state(init, mesh)
        return abstract, create(init, shardings)


@pytest.fixture(scope="module")
def gpt():
    return _gpt()


def _shift(state, step):
    """A distinguishable state per step: every float leaf moved by step/1000."""
    return jax.tree.map(lambda x: x + step / 1000 if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        state)


def _save_steps(directory, state, steps, keep=5):
    ck = Checkpointer(directory, keep=keep, async_save=False)
    for step in steps:
        ck.save(step, _shift(state, step), {"data_step": step})
    ck.close()


def _garble(step_dir):
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")


def _emb(state):
    return np.asarray(state.params["embed"]["embedding"])


def test_round_trip_and_restore_on_another_mesh(tmp_path):
    mesh8 = sharding.make_mesh((8, 1, 1))
    w = jnp.arange(128 * 256, dtype=jnp.float32).reshape(128, 256)
    ck = Checkpointer(str(tmp_path / "ck"), keep=2, async_save=True)
    ck.save(3, {"w": jax.device_put(w, NamedSharding(mesh8, P("data", None))), "step": jnp.int32(3)},
            {"data_step": 3})
    ck.wait()
    mesh2 = sharding.make_mesh((1, 2, 4))
    target = {"w": jax.ShapeDtypeStruct((128, 256), jnp.float32,
                                        sharding=NamedSharding(mesh2, P("fsdp", "tensor"))),
              "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh2, P()))}
    state, meta = Checkpointer(str(tmp_path / "ck"), keep=2).restore(target)
    assert meta == {"data_step": 3}
    np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(w))
    assert state["w"].sharding.spec == P("fsdp", "tensor")  # the target sharding is honoured


def test_corrupt_latest_falls_back_and_is_kept(tmp_path, gpt):
    abstract, state = gpt
    _save_steps(str(tmp_path / "ck"), state, (10, 20))
    _garble(tmp_path / "ck" / "20")
    msgs = []
    ck = Checkpointer(str(tmp_path / "ck"), keep=5, log=msgs.append)
    restored, meta = ck.restore(abstract)
    assert meta["data_step"] == 10
    np.testing.assert_array_equal(_emb(restored), _emb(_shift(state, 10)))
    assert len([m for m in msgs if "step 20" in m]) == 1  # one line per moved checkpoint
    assert ck.all_steps() == [10]
    kept = os.listdir(tmp_path / "checkpoints_corrupt")
    assert len(kept) == 1 and kept[0].startswith("20-")  # moved aside, not deleted
    ck.save(20, state, {"data_step": 20})  # the step can be written again
    ck.close()
    assert Checkpointer(str(tmp_path / "ck"), keep=5).all_steps() == [10, 20]


@pytest.mark.parametrize("change, path, shapes", [
    (dict(optimizer="lion"), "opt_state/", False),  # another optimizer: another state tree
    (dict(mlp_dim=256), "params/layer_0/ffn/", True),
])
def test_a_config_change_is_a_mismatch_that_moves_nothing(tmp_path, gpt, change, path, shapes):
    _, state = gpt
    _save_steps(str(tmp_path / "ck"), state, (10, 20))
    other, _ = _gpt(**change)
    with pytest.raises(CheckpointError) as e:
        Checkpointer(str(tmp_path / "ck"), keep=5).restore(other)
    msg = str(e.value)
    assert "\n" not in msg and path in msg and "--workdir" in msg and "config" in msg
    if shapes:
        assert "(512,)" in msg and "(256,)" in msg  # both shapes are named
    assert sorted(os.listdir(tmp_path / "ck")) == ["10", "20"]
    assert not (tmp_path / "checkpoints_corrupt").exists()


def test_nothing_restores_raises_and_moves_nothing(tmp_path, gpt):
    abstract, state = gpt
    _save_steps(str(tmp_path / "ck"), state, (10, 20))
    for step in ("10", "20"):
        _garble(tmp_path / "ck" / step)
    with pytest.raises(CheckpointError, match=r"2 checkpoints.*step 20") as e:
        Checkpointer(str(tmp_path / "ck"), keep=5).restore(abstract)
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(tmp_path / "ck")) == ["10", "20"]
    assert not (tmp_path / "checkpoints_corrupt").exists()


def _write_nan_checkpoint(directory, state, step):
    """What flipped bytes can leave: a checkpoint that reads back fine but holds NaN."""
    bad = state.replace(params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), state.params))
    manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(bad),
                                               meta=ocp.args.JsonSave({"data_step": step})))
    manager.wait_until_finished()
    manager.close()


def test_a_nonfinite_checkpoint_counts_as_corrupt(tmp_path, gpt):
    abstract, state = gpt
    _save_steps(str(tmp_path / "ck"), state, (10,))
    _write_nan_checkpoint(str(tmp_path / "ck"), state, 20)
    ck = Checkpointer(str(tmp_path / "ck"), keep=5, log=lambda _: None)
    restored, meta = ck.restore(abstract)
    assert meta["data_step"] == 10 and ck.all_steps() == [10]
    assert os.listdir(tmp_path / "checkpoints_corrupt")[0].startswith("20-")

    _write_nan_checkpoint(str(tmp_path / "only"), state, 5)
    with pytest.raises(CheckpointError, match="NaN"):
        Checkpointer(str(tmp_path / "only"), keep=5).restore(abstract)


def test_save_refuses_a_nonfinite_state(tmp_path, gpt):
    abstract, state = gpt
    _save_steps(str(tmp_path / "ck"), state, (10, 20), keep=2)
    ck = Checkpointer(str(tmp_path / "ck"), keep=2, async_save=True)
    bad = state.replace(opt_state=jax.tree.map(
        lambda x: x * jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else x, state.opt_state))
    with pytest.raises(CheckpointError, match="refusing to save step 30") as e:
        ck.save(30, bad, {"data_step": 30})
    assert "\n" not in str(e.value) and "opt_state/" in str(e.value)
    ck.close()
    assert ck.all_steps() == [10, 20]  # the finite checkpoints stay in the rotation


def test_a_background_save_error_is_one_prompt_line(tmp_path):
    """The checkpoint directory turns into a file between two async saves: the next save
    reports it as a CheckpointError at once, and the process exits without waiting out
    Orbax's 300 s signal timeout."""
    script = textwrap.dedent(f"""
        import os, shutil, time
        import jax.numpy as jnp
        from llmjax.training.checkpoint import Checkpointer, CheckpointError
        d = {str(tmp_path / "ck")!r}
        ck = Checkpointer(d, keep=3, async_save=True)
        ck.save(1, {{"w": jnp.ones((256, 256))}}, {{"data_step": 1}})
        ck.wait()
        shutil.rmtree(d)
        open(d, "w").close()
        t = time.time()
        try:
            ck.save(2, {{"w": jnp.ones((256, 256))}}, {{"data_step": 2}})
            ck.wait()
        except CheckpointError as e:
            assert "\\n" not in str(e), str(e)
            print("ONE LINE", round(time.time() - t, 1), e)
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ONE LINE" in out.stdout and "step 2" in out.stdout, out.stdout


def test_empty_directory_restores_nothing(tmp_path):
    assert Checkpointer(str(tmp_path / "ck"), keep=1).restore(
        {"w": jax.ShapeDtypeStruct((128,), jnp.float32)}) is None


def _tiny_steps(directory, steps, keep=5):
    """Checkpoints of a tiny state whose one leaf holds its step."""
    ck = Checkpointer(directory, keep=keep, async_save=False)
    for step in steps:
        ck.save(step, {"w": jnp.full((4,), float(step))}, {"data_step": step})
    ck.close()


def _reader(directory):
    """A reader as the entry points make theirs: a fresh Orbax manager per step read."""
    def read(step):
        manager = ocp.CheckpointManager(directory, item_handlers={"state": ocp.StandardCheckpointHandler()})
        try:
            state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        finally:
            manager.close()
        return float(state["w"][0])
    return read


def test_read_newest_skips_corrupt_steps_with_one_line_each_and_moves_nothing(tmp_path):
    d = str(tmp_path / "ck")
    _tiny_steps(d, (1, 2, 3))
    _garble(tmp_path / "ck" / "3")
    msgs = []
    found = read_newest(d, _reader(d), fix="FIX", log=msgs.append)
    assert (found.step, found.value) == (2, 2.0) and [s for s, _ in found.corrupt] == [3]
    assert len(msgs) == 1 and "step 3" in msgs[0] and d in msgs[0]
    assert sorted(os.listdir(d)) == ["1", "2", "3"]  # another run's directory: nothing moved

    with pytest.raises(CheckpointError) as e:  # a step asked for is never replaced by another
        read_newest(d, _reader(d), fix="pass another --step", step=3, log=msgs.append)
    assert "\n" not in str(e.value) and f"step 3 in {d} is corrupt" in str(e.value)
    assert str(e.value).endswith("pass another --step")

    for step in ("1", "2"):
        _garble(tmp_path / "ck" / step)
    with pytest.raises(CheckpointError, match=r"none of the 3 checkpoints .*step 3.*; FIX$") as e:
        read_newest(d, _reader(d), fix="FIX", log=lambda _: None)
    assert "\n" not in str(e.value)


def test_read_newest_follows_a_step_rotated_out_while_read(tmp_path, caplog):
    """A run trains in the directory: between the listing and the read, it saves step 4 and
    rotates 1-3 out (keep=1), or is still deleting step 3's files. The read is retried on the new
    listing, not reported corrupt, and Orbax's warnings about the vanishing step are not shown."""
    d = str(tmp_path / "ck")
    _tiny_steps(d, (1, 2, 3))
    read, msgs, tried = _reader(d), [], []

    def read_while_training(step):
        tried.append(step)
        if len(tried) == 1:
            _tiny_steps(d, (4,), keep=1)
        return read(step)

    found = read_newest(d, read_while_training, fix="FIX", log=msgs.append)
    assert (found.step, found.value, tried, msgs) == (4, 4.0, [3, 4], [])

    tried.clear()

    def read_while_deleting(step):
        tried.append(step)
        if len(tried) == 1:
            _tiny_steps(d, (5,), keep=5)
            os.remove(os.path.join(d, "4", "_CHECKPOINT_METADATA"))  # the deletion of step 4 under way
            shutil.rmtree(os.path.join(d, "4", "state"))
        return read(step)

    found = read_newest(d, read_while_deleting, fix="FIX", log=msgs.append)
    assert (found.step, found.value, tried, msgs) == (5, 5.0, [4, 5], [])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text[-2000:]

    tried.clear()
    _tiny_steps(d, (5,), keep=1)
    with pytest.raises(CheckpointError) as e:  # an asked-for step gone is said so, in one line
        read_newest(d, lambda step: (_tiny_steps(d, (6,), keep=1), read(step)), fix="FIX", step=5)
    assert "\n" not in str(e.value) and "no checkpoint step 5" in str(e.value) and "6" in str(e.value)


def test_a_full_disk_in_a_background_save_stops_at_the_next_check(tmp_path, monkeypatch, caplog):
    """The write of step 2 fails with ENOSPC in Orbax's background thread: check() (the loop
    calls it every step) raises one line naming step 2 without any further save, the partial
    directory is removed, step 1 stays, and Orbax's tracebacks are not logged."""
    d = str(tmp_path / "ck")
    ck = Checkpointer(d, keep=3, async_save=True)
    ck.save(1, {"w": jnp.ones((4,))}, {"data_step": 1})
    ck.wait()

    async def full_disk(self, item, directory):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", full_disk)
    ck.save(2, {"w": jnp.ones((4,))}, {"data_step": 2})
    deadline = time.time() + 60
    with pytest.raises(CheckpointError) as e:
        while time.time() < deadline:
            ck.check()
            time.sleep(0.01)
    msg = str(e.value)
    assert "\n" not in msg and "saving step 2" in msg and "No space left on device" in msg, msg
    assert "[1] are kept" in msg
    assert os.listdir(d) == ["1"]  # no *.orbax-checkpoint-tmp* left
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]
    ck.close()  # the failure is not raised a second time
    assert Checkpointer(d, keep=3).restore({"w": jax.ShapeDtypeStruct((4,), jnp.float32)})[1] == {"data_step": 1}


def test_a_run_whose_background_save_fails_stops_at_its_next_step(tmp_path, monkeypatch):
    """Step 10's save fails in the background (a full disk): the run stops within a few steps
    with that one line, not at step 15's save, and steps 5's checkpoint stays as the only one."""
    real = ocp.JsonCheckpointHandler._save_fn

    async def full_at_10(self, item, directory):
        if item.get("data_step") == 10:
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        await real(self, item, directory)

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", full_at_10)
    cfg = tiny_config(write_corpus(tmp_path / "corpus", num_files=4), train__num_steps=20,
                      train__eval_every=20, checkpoint__every_steps=5, checkpoint__async_save=True)
    work = tmp_path / "run"
    with pytest.raises(CheckpointError) as e:
        train_and_evaluate(resolve(cfg, num_devices=8), str(work), log=lambda _: None)
    assert "\n" not in str(e.value) and "saving step 10" in str(e.value) and "[5] are kept" in str(e.value)
    assert os.listdir(work / "checkpoints") == ["5"]
    trained = [json.loads(line)["step"] for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert max(trained) < 14, trained


def test_a_parameter_renamed_since_the_checkpoint_is_named_as_such():
    """A BERT checkpoint from before its token-type table became an Embed says so, not 'another config'."""
    leaf = jax.ShapeDtypeStruct((2, 8), np.float32)
    saved = {"params": {"embeddings": {"token_type_embedding": leaf}}}
    target = {"params": {"embeddings": {"token_type": {"embedding": leaf}}}}
    assert "renamed embeddings/token_type/embedding" in checkpoint.first_difference(saved, target)
    assert "but not in the checkpoint" in checkpoint.first_difference({"params": {"x": leaf}}, target)
