"""Sharded training equals one device: data, FSDP and tensor parallel, alone and combined;
parameters are really sharded as the rules say; gradient accumulation and remat are exact."""
import functools
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from llmjax import sharding
from llmjax.config import DataConfig, OptimConfig, TrainConfig
from llmjax.models import registry
from llmjax.models.gpt import GPTConfig
from llmjax.tasks.lm import LMTask
from llmjax.training import optim
from llmjax.training.state import abstract_state, create, init_fn
from llmjax.training.step import jit_train_step, make_train_step

CFG = GPTConfig(vocab_size=128, num_layers=2, d_model=32, num_heads=8, num_kv_heads=8, mlp_dim=64,
                  max_len=16, dropout=0.0)
OPT = OptimConfig(lr=3e-3, warmup_steps=2)


def _batches(n, batch=16, length=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start = rng.integers(0, 100, size=(batch, 1))
        seq = (start + np.arange(length + 1)[None] * rng.integers(1, 3, size=(batch, 1))) % 128
        out.append({"inputs": seq[:, :-1].astype(np.int32), "targets": seq[:, 1:].astype(np.int32),
                    "weights": np.ones((batch, length), np.float32)})
    return out


def _train(shape, devices=None, steps=10, cfg=CFG, accum=1, batch=16):
    mesh = sharding.make_mesh(shape, devices)
    model = registry.build(cfg)
    task = LMTask(SimpleNamespace(model=cfg, train=TrainConfig(), data=DataConfig(seq_len=cfg.max_len)))
    tx, lr = optim.optimizer(OPT, 100), optim.schedule(OPT, 100)
    bsh = sharding.batch_shardings(mesh, _batches(1, batch)[0])
    with sharding.use_mesh(mesh):
        init = init_fn(functools.partial(task.init_params, model), tx, seed=0)
        _, state_sh = abstract_state(init, mesh)
        state = create(init, state_sh)
        step = jit_train_step(make_train_step(task, model, tx, lr, seed=0, grad_accum_steps=accum),
                              state_sh, bsh)
        losses = []
        for b in _batches(steps, batch):
            state, m = step(state, jax.device_put(b, bsh))
            losses.append(float(m["loss"]))
    return np.array(losses), state


@pytest.fixture(scope="module")
def reference():
    return _train((1, 1, 1), devices=jax.devices()[:1])


# (2, 4, 1) is slow: data x fsdp is in (2, 2, 2) with tensor too. (1, 1, 8) is slow: its gradients
# equal one device's in tests/test_sharded_gradients.py (gpt, (1, 1, 8)), and tensor parallelism
# through the train step and Adam is (2, 2, 2) here.
@pytest.mark.parametrize("shape", [(8, 1, 1), pytest.param((2, 4, 1), marks=pytest.mark.slow), (2, 2, 2),
                                   pytest.param((1, 1, 8), marks=pytest.mark.slow), (1, 8, 1)])
def test_mesh_matches_one_device(reference, shape):
    losses, _ = _train(shape)
    ref, _ = reference
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, ref, rtol=1e-5)


def test_parameters_are_sharded_by_the_rules():
    _, state = _train((2, 2, 2), steps=1)
    p = state.params
    assert p["embed"]["embedding"].sharding.spec == P("tensor", "fsdp")
    q = p["layer_0"]["attn"]["query"]["kernel"]
    assert q.sharding.spec == P("fsdp", "tensor", None)
    assert q.addressable_shards[0].data.shape == (16, 4, 4)
    adam_mu = state.opt_state[1][0].mu  # clip, then adamw's scale_by_adam state
    assert adam_mu["layer_0"]["attn"]["query"]["kernel"].sharding.spec == P("fsdp", "tensor", None)


def test_grad_accumulation_equals_the_large_batch():
    big, s1 = _train((8, 1, 1), steps=3)
    acc, s4 = _train((8, 1, 1), steps=3, accum=2)
    np.testing.assert_allclose(acc, big, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)  # Adam rescales tiny grads


# dots_saveable is slow: its loss and gradients equal no remat's in tests/models/test_gpt.py
# (test_remat_policies_identical_loss_and_grads); "full" keeps remat through the train step here.
@pytest.mark.parametrize("remat", ["full", pytest.param("dots_saveable", marks=pytest.mark.slow)])
def test_remat_is_exact(reference, remat):
    import dataclasses

    losses, _ = _train((1, 1, 1), devices=jax.devices()[:1], cfg=dataclasses.replace(CFG, remat=remat))
    np.testing.assert_allclose(losses, reference[0], rtol=1e-6)


def test_stray_slurm_variable_is_a_one_line_error_not_an_init(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID",
                "JAX_COORDINATOR_ADDRESS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(sharding.DistributedSetupError,
                       match=r"SLURM_NTASKS=2 .*not started by srun.*unset SLURM_NTASKS") as e:
        sharding.initialize_distributed()
    assert "\n" not in str(e.value)
    assert not jax.distributed.is_initialized()
