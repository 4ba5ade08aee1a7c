"""Entry point: `python -m llmjax.main --config=configs/gpt_small.py [--config.KEY=VALUE ...]`.

llmjax.cli reads the command line (a bad flag, override, config file or value is one line on
stderr, exit code 2, before any data preparation or compile). The config is recorded in the
workdir, then the training loop runs.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

from llmjax import allocator
from llmjax import config as config_lib
from llmjax.cli import CONFIG, die, parse

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>).")


def _workdir(config_path: str) -> str:
    """--workdir as given (check_writable refuses URLs, then makes it absolute), or runs/<config>."""
    name = os.path.splitext(os.path.basename(config_path))[0]
    return _WORKDIR.value or os.path.join("runs", name)


def _check_recorded(cfg, workdir: str) -> None:
    """A workdir's config.json must be readable and compatible with cfg (before any work)."""
    from llmjax import experiment
    from llmjax.training.workdir import CONFIG_JSON

    path = os.path.join(workdir, CONFIG_JSON)
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except json.JSONDecodeError as e:
        raise config_lib.ConfigError(
            f"{path} is not valid JSON ({e}): it records the run's config, which a resume is "
            "checked against: restore it from a backup, or pass a new --workdir") from e
    experiment.check_resumable(saved, cfg.to_dict(), workdir)


def _check_converted(run_cfg, cfg, workdir: str) -> None:
    """A workdir llmjax.convert wrote starts from its pretrained/ parameters: this config's model
    keys must be theirs (before any work)."""
    from llmjax.training import warm_start

    if not run_cfg.init_from and warm_start.converted(workdir):
        warm_start.check_model(workdir, cfg.model.to_dict())


def _write_config(cfg, workdir: str) -> None:
    """Record the run's config: only once the run is known to start (data ready, model built,
    state created or restored), so a command that fails earlier leaves no record behind that
    would refuse its corrected version."""
    import jax

    from llmjax.training.workdir import CONFIG_JSON

    if jax.process_index() == 0:
        path = os.path.join(workdir, CONFIG_JSON)
        os.makedirs(workdir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        die(f"unexpected arguments {argv[1:]}: overrides look like --config.train.num_steps=50")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.WARNING)  # Orbax and tfds narrate every step at INFO
    from llmjax import sharding

    try:
        sharding.initialize_distributed()  # before anything touches the devices
    except sharding.DistributedSetupError as e:
        die(str(e))
    import jax

    from llmjax import experiment
    from llmjax.training.workdir import WorkdirLock, check_writable

    cfg = CONFIG.value
    config_path = flags.FLAGS["config"].config_filename
    workdir = _workdir(config_path)
    try:
        run_cfg = experiment.resolve(cfg, jax.device_count())
        _check_recorded(cfg, os.path.abspath(workdir))
        _check_converted(run_cfg, cfg, os.path.abspath(workdir))
        workdir = check_writable(workdir)  # the absolute local path; before any data or compile
    except config_lib.ConfigError as e:
        die(str(e))
    log = (lambda msg: print(msg, flush=True)) if jax.process_index() == 0 else (lambda msg: None)
    log(f"workdir: {workdir}")
    lock = WorkdirLock(workdir)
    try:
        if jax.process_index() == 0:  # one run per workdir (the others of this run share it)
            lock.acquire(wait=float(os.environ.get("LLMJAX_LOCK_WAIT", "30")), log=log)
        experiment.train_and_evaluate(run_cfg, workdir, log=log,
                                      on_start=lambda: _write_config(cfg, workdir))
    except config_lib.UserError as e:  # bad input found late, a fault, divergence: one line
        die(str(e))
    finally:
        lock.release()


def run() -> None:
    """The console entry point: malloc on huge pages first (a re-exec), then absl."""
    allocator.reexec_with_huge_pages()
    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    run()
