"""Entry point: `python -m llmjax.main --config=configs/gpt_small.py [--config.KEY=VALUE ...]`.

Reads the config once, checks it (a bad value is one line on stderr, exit code 2, before any
data preparation or compile), records it in the workdir, and calls the training loop.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from llmjax import config as config_lib
from llmjax import experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>).")


def _die(msg: str) -> None:
    print(f"llmjax: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def _precheck(argv: list[str]) -> None:
    """What absl would report as a traceback, reported as one line instead."""
    path = None
    base = experiment.base_config()
    for arg in argv[1:]:
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1].split(":", 1)[0]
        elif arg.startswith("--config."):
            key = arg[len("--config."):].split("=", 1)[0]
            group, _, leaf = key.partition(".")
            if group not in base or (leaf and leaf not in base[group]) or not leaf or "." in leaf:
                known = (", ".join(base[group].keys()) if group in base
                         else ", ".join(base.keys()))
                _die(f"unknown config key config.{key}: known keys here: {known}")
    if path is None:
        _die("no config given: pass --config=configs/gpt_small.py (or another file in configs/)")
    if not os.path.isfile(path):
        _die(f"config file {path!r} does not exist: pass a path like configs/gpt_small.py")


def _parse(argv: list[str]) -> list[str]:
    _precheck(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _die(f"{e} (see --helpfull)")
    return []


def _workdir(config_path: str) -> str:
    name = os.path.splitext(os.path.basename(config_path))[0]
    return os.path.abspath(_WORKDIR.value or os.path.join("runs", name))


def _record_config(cfg, workdir: str) -> None:
    """Write config.json, or check that a resumed run keeps what the checkpoint depends on."""
    path = os.path.join(workdir, "config.json")
    resolved = cfg.to_dict()
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        experiment.check_resumable(saved, resolved, workdir)
    import jax

    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(resolved, f, indent=2, sort_keys=True)
        os.replace(tmp, path)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _die(f"unexpected arguments {argv[1:]}: overrides look like --config.train.num_steps=50")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.WARNING)  # Orbax and tfds narrate every step at INFO
    from llmjax import sharding

    sharding.initialize_distributed()  # before anything touches the devices
    import jax

    cfg = _CONFIG.value
    config_path = flags.FLAGS["config"].config_filename
    workdir = _workdir(config_path)
    try:
        run_cfg = experiment.resolve(cfg, jax.device_count())
        _record_config(cfg, workdir)
    except config_lib.ConfigError as e:
        _die(str(e))
    log = (lambda msg: print(msg, flush=True)) if jax.process_index() == 0 else (lambda msg: None)
    log(f"workdir: {workdir}")
    try:
        experiment.train_and_evaluate(run_cfg, workdir, log=log)
    except config_lib.UserError as e:  # bad input found late, a fault, divergence: one line
        _die(str(e))


def run() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
