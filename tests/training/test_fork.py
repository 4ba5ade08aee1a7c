"""config.fork_from: a cooldown forked from a constant-LR run's checkpoint is the wsd run of
the same length, exactly; bad forks are one-line errors before any data work."""
import json
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest

from llmjax.config import ConfigError, UserError
from llmjax.experiment import resolve, train_and_evaluate
from tests.helpers import tiny_config, truncate_checkpoint, write_corpus

T, F, S = 20, 0.25, 15  # wsd over T steps decays over the last round(F*T) = 5: the fork step S = 15


def _cfg(spec, fork_from="", **overrides):
    c = tiny_config(spec, train__num_steps=T, train__eval_every=T, optim__schedule="wsd",
                    optim__decay_fraction=F, checkpoint__every_steps=S)
    c.fork_from = fork_from
    for key, value in overrides.items():
        group, leaf = key.split("__")
        c[group][leaf] = value
    return c


def _params(workdir, step):
    manager = ocp.CheckpointManager(str(workdir / "checkpoints"), item_handlers={"state": ocp.PyTreeCheckpointHandler()})
    try:
        state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))["state"]
    finally:
        manager.close()
    return {k: np.asarray(v) for k, v in ocp.tree.to_flat_dict(state["params"], sep="/").items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A: wsd over T; B: constant LR (same warm-up) to S, checkpoint at S; the corpus."""
    root = tmp_path_factory.mktemp("fork")
    spec = write_corpus(root / "corpus", num_files=4, max_chars=6000)
    quiet = lambda _: None  # noqa: E731
    train_and_evaluate(resolve(_cfg(spec), num_devices=8), str(root / "a"), log=quiet)
    parent = _cfg(spec, train__num_steps=S, optim__schedule="constant")
    train_and_evaluate(resolve(parent, num_devices=8), str(root / "b"), log=quiet)
    (root / "b" / "config.json").write_text(json.dumps(parent.to_dict()))  # as llmjax.main records it
    return root, spec


def _fork(root, spec, workdir, **overrides):
    logs = []
    cfg = resolve(_cfg(spec, str(root / "b" / "checkpoints" / str(S)), **overrides), num_devices=8)
    train_and_evaluate(cfg, str(workdir), log=logs.append)
    return logs


def test_a_fork_lands_on_the_wsd_run_exactly_and_resumes_from_its_own_checkpoints(runs):
    root, spec = runs
    logs = _fork(root, spec, root / "c", checkpoint__every_steps=18)
    assert any(f"forked from step {S} of {root / 'b'}" in m for m in logs), logs
    a, c = _params(root / "a", T), _params(root / "c", T)
    assert a.keys() == c.keys()
    for k in a:
        np.testing.assert_allclose(c[k], a[k], rtol=0, atol=1e-6, err_msg=k)
    rows = [json.loads(l) for l in (root / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"][0] == S + 1
    # Killed after its own save at 18 (and the parent gone): it resumes from there, not the parent.
    shutil.copytree(root / "c", root / "d", ignore=shutil.ignore_patterns(str(T)))
    shutil.move(root / "b" / "checkpoints", root / "b_checkpoints")
    try:
        logs = _fork(root, spec, root / "d", checkpoint__every_steps=18)
    finally:
        shutil.move(root / "b_checkpoints", root / "b" / "checkpoints")
    assert any("resumed from step 18" in m for m in logs), logs
    d = _params(root / "d", T)
    for k in a:
        np.testing.assert_allclose(d[k], a[k], rtol=0, atol=1e-6, err_msg=k)


def test_a_fork_with_another_cooldown_does_not_land_on_it(runs):
    root, spec = runs
    _fork(root, spec, root / "e", optim__cooldown_shape="1-sqrt")  # same lr up to S, another decay after
    a, e = _params(root / "a", T), _params(root / "e", T)
    assert max(float(np.abs(a[k] - e[k]).max()) for k in a) > 1e-4


@pytest.mark.parametrize("overrides, needle", [
    ({"train__num_steps": S}, f"config.train.num_steps={S}: a fork from step {S} must train past it"),
    ({"optim__decay_fraction": 0.5}, "the fork's learning rate at update 11 is"),
    ({"optim__lr": 1e-3}, "the fork's learning rate at update 1 is"),
    ({"optim__warmup_steps": 3}, "the fork's learning rate at update 1 is"),
    ({"model__d_model": 64}, "config.model.d_model=64 but the parent"),
    ({"data__seq_len": 16}, "config.data.seq_len=16 but the parent"),
    ({"train__batch_size": 16}, "config.train.batch_size=16 but the parent"),
    ({"train__seed": 1}, "config.train.seed=1 but the parent"),
    ({"optim__b2": 0.99}, "config.optim.b2=0.99 but the parent"),
    ({"optim__name": "lion"}, "config.optim.name='lion' but the parent"),
])
def test_a_fork_that_would_not_continue_its_parent_is_refused_before_any_data(runs, overrides, needle, tmp_path):
    root, spec = runs
    with pytest.raises(ConfigError) as e:
        _fork(root, spec, tmp_path / "refused", **overrides)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "refused" / "data").exists()  # refused before the data was prepared


@pytest.mark.parametrize("source, overrides, needle", [
    ("b/checkpoints/7", {}, "no checkpoint of step 7 there (saved steps: [15])"),
    ("b", {}, "name one step's directory of a run, PARENT/checkpoints/STEP"),
    ("b/checkpoints/15", {"train__budget_flops": 1e9}, "set that instead of config.train.budget_flops"),
    ("b/checkpoints/15", {"init_from": True}, "a run either forks"),
])
def test_bad_fork_sources_are_one_line_errors(runs, source, overrides, needle, tmp_path):
    root, spec = runs
    cfg = _cfg(spec, str(root / source), **{k: v for k, v in overrides.items() if "__" in k})
    if "init_from" in overrides:
        cfg.init_from = str(root / "b")
    with pytest.raises(ConfigError) as e:
        train_and_evaluate(resolve(cfg, num_devices=8), str(tmp_path / "refused"), log=lambda _: None)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_corrupt_fork_step_is_one_line(runs, tmp_path):
    """The parent's step S reads back truncated: one line naming it, not tensorstore's traceback."""
    root, spec = runs
    shutil.copytree(root / "b", tmp_path / "b")
    truncate_checkpoint(tmp_path / "b" / "checkpoints" / str(S))
    cfg = _cfg(spec, str(tmp_path / "b" / "checkpoints" / str(S)))
    with pytest.raises(UserError) as e:
        train_and_evaluate(resolve(cfg, num_devices=8), str(tmp_path / "fork"), log=lambda _: None)
    msg = str(e.value)
    assert "\n" not in msg and f"checkpoint step {S}" in msg and "config.fork_from" in msg, msg
