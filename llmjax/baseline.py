"""Entry point of the classic baselines: `python -m llmjax.baseline --config=configs/tfidf_classify.py
[--workdir=DIR] [--config.KEY=VALUE ...]`.

Bag of words, TF-IDF or averaged Word2Vec vectors with logistic regression (llmjax.classic) on
the classify or tag task's data and splits, scored with that task's metrics into the workdir's
results.json and metrics.jsonl (default workdir: runs/<config name>). The command line reads as
llmjax.main's: a bad flag, override, config file or value, and bad input found before fitting,
are one line on stderr and exit code 2.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

from llmjax import config as config_lib
from llmjax.cli import CONFIG, die, parse

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config name>).")


def _unknown_key(argv: list[str]) -> str | None:
    """The first --config.KEY=... the baseline config file lacks, with the keys that exist."""
    path = next((a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
                 for i, a in enumerate(argv) if a.lstrip("-").split("=")[0] == "config"), None)
    try:
        loaded = flags.FLAGS["config"].parser.parse(path)
    except Exception:  # noqa: BLE001  (a file that fails to load has its own error)
        return None
    for arg in argv[1:]:
        if not arg.lstrip("-").startswith("config."):
            continue
        parts = arg.lstrip("-").split("=", 1)[0].split(".")[1:]
        node = loaded
        for i, part in enumerate(parts):
            if not hasattr(node, "keys"):
                return f"unknown config key config.{'.'.join(parts)}: config.{'.'.join(parts[:i])} is a value"
            if part not in node:
                return (f"unknown config key config.{'.'.join(parts)}: known keys here: "
                        f"{', '.join(node.keys())}")
            node = node[part]
    return None


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        die(f"unexpected arguments {argv[1:]}: overrides look like --config.features.kind=bow")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.WARNING)
    from llmjax.classic.config import resolve
    from llmjax.classic.run import run_baseline
    from llmjax.training.workdir import check_writable

    cfg = CONFIG.value
    name = os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0]
    try:
        run = resolve(cfg)
        workdir = check_writable(_WORKDIR.value or os.path.join("runs", name))
        print(f"workdir: {workdir}", flush=True)
        run_baseline(run, workdir, log=lambda msg: print(msg, flush=True))
        with open(os.path.join(workdir, "config.json"), "w") as f:  # what made its results.json
            json.dump(cfg.to_dict(), f, indent=2, sort_keys=True)
    except config_lib.UserError as e:  # a bad key, bad input found before fitting: one line
        die(str(e))


def run() -> None:
    app.run(main, flags_parser=lambda argv: parse(argv, unknown_key=_unknown_key))


if __name__ == "__main__":
    run()
