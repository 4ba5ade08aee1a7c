"""The run config's command line, shared by the entry points that take one (`llmjax.main`,
`llmjax.prepare`): `--config PATH` and `--config=PATH` both work, and a bad flag, override,
config file or value is one line on stderr (`llmjax: error: ...`), exit code 2, before any work.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

import ml_collections
from absl import flags
from ml_collections import config_flags

from llmjax import config as config_lib

CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file with get_config().")
_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")
_OVERRIDE = re.compile(r"-{1,2}(?:no)?config\.([^=]+)")  # as config_flags finds overrides


def die(msg: str) -> None:
    print(f"llmjax: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def _config_problem() -> str | None:
    """Why the parsed --config cannot be used (absent, missing file, failed to load), if so."""
    flag = flags.FLAGS["config"]
    if flag.value is None:
        return "no config given: pass --config=configs/gpt_small.py (or another file in configs/)"
    path = flag.config_filename.split(":", 1)[0]
    if not os.path.isfile(path):
        return f"config file {path!r} does not exist: pass a path like configs/gpt_small.py"
    try:
        flag.value.keys()  # a config that failed to load raises on any access
    except OSError as e:
        return _load_error(e)
    return None


def _load_error(e: OSError) -> str:
    cause = [l.strip() for l in str(e).splitlines() if l.strip()][-1]
    return f"config file could not be loaded ({cause}): pass a path like configs/gpt_small.py"


def _override_value(argv: list[str], i: int) -> str:
    """The value of argv[i], a flag given as --flag=VALUE or --flag VALUE."""
    if "=" in argv[i]:
        return argv[i].split("=", 1)[1]
    return argv[i + 1] if i + 1 < len(argv) else ""


def _names(argv: list[str]) -> dict[str, str]:
    """{"model": family, "task": task} the command trains: its --config.model.name and
    --config.task.name, else the config file's, else the defaults. The keys of config.model and
    config.task depend on them."""
    names = {}
    for i, arg in enumerate(argv):
        match = _OVERRIDE.match(arg)
        if match and match.group(1) in ("model.name", "task.name"):
            names[match.group(1).split(".")[0]] = _override_value(argv, i)
    path = next((_override_value(argv, i) for i, a in enumerate(argv[1:], 1)
                 if a.lstrip("-").split("=")[0] == "config"), None)
    if len(names) < 2 and path:
        try:  # the file alone, without the overrides that failed
            loaded = flags.FLAGS["config"].parser.parse(path)
            names = {group: loaded[group].get("name", "") for group in ("model", "task")} | names
        except Exception:  # noqa: BLE001  (a file that fails to load has its own error)
            pass
    return names


def _unknown_override(argv: list[str]) -> str | None:
    """The first --config.KEY=... whose KEY the command's config lacks (the keys of its model
    family and task), with the keys that exist there."""
    from llmjax import experiment  # imported late: run() re-executes first (see allocator)
    from llmjax.models.registry import FAMILIES
    from llmjax.tasks.registry import TASKS

    names = {"model": "gpt", "task": "lm", **_names(argv)}
    try:
        base = experiment.base_config(names["model"], names["task"])
    except config_lib.ConfigError as e:  # an unknown family or task
        return str(e)
    owner = {"model": f"{FAMILIES.what} {names['model']!r}", "task": f"{TASKS.what} {names['task']!r}"}
    for arg in argv[1:]:
        match = _OVERRIDE.match(arg)
        parts = match.group(1).split(".") if match else []
        node = base
        for i, part in enumerate(parts):
            key = f"unknown config key config.{match.group(1)}"
            if not isinstance(node, ml_collections.ConfigDict):
                return f"{key}: config.{'.'.join(parts[:i])} is a value, not a group"
            if part not in node:
                whose = f" for {owner[parts[0]]}" if i == 1 and parts[0] in owner else ""
                return f"{key}{whose}: known keys here: {', '.join(node.keys())}"
            node = node[part]
    return None


def _one_line(msg: str) -> str:
    """First and last line of a message that carries a traceback (config_flags adds one)."""
    lines = [l.strip() for l in msg.splitlines() if l.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


def parse(argv: list[str], unknown_key: Callable[[list[str]], str | None] | None = None) -> list[str]:
    """absl/config_flags parse the command line; their errors become one line and exit code 2.
    unknown_key names an unknown --config.KEY override (default: for llmjax.main's configs)."""
    unknown_key = unknown_key or _unknown_override
    try:
        rest = flags.FLAGS(argv)
    except SystemExit as e:  # a help flag printed the usage; absl exits 1 after it
        asked = any(a.lstrip("-").split("=")[0] in _HELP_FLAGS for a in argv[1:] if a.startswith("-"))
        sys.exit(0 if asked else e.code)
    except flags.UnrecognizedFlagError as e:
        if not e.flagname.startswith("config."):
            die(f"unknown flag --{e.flagname}: see --helpfull")
        die(_config_problem() or unknown_key(argv) or f"unknown config key {e.flagname}")
    except flags.Error as e:
        die(f"{_one_line(str(e))} (see --helpfull)")
    except OSError as e:  # config_flags applying overrides to a config file that failed to load
        die(_load_error(e))
    except (KeyError, AttributeError) as e:  # config_flags: an override names no field
        die(unknown_key(argv) or f"{_one_line(str(e))} (see --helpfull)")
    problem = _config_problem()
    if problem:
        die(problem)
    return rest
