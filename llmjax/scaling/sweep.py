"""A sweep: many normal llmjax runs from one base config, each in its own workdir.

A sweep config (an ml_collections file, see configs/sweeps/tiny.py) has
  name       the sweep's name (its default directory is runs/sweeps/<name>)
  base       the base run config file every run starts from, e.g. "configs/gpt_small.py"
  set        nested overrides for every run, e.g. {"data": {"tokenizer": "byte"}}
  axes       a list of axes; the runs are their cartesian product. An axis is either
             {"dotted.key": [values]} (one key, its values) or a list of override dicts
             [{"model.d_model": 32, "model.num_heads": 2}, ...] (keys that move together).
             The key "config" in an override dict replaces the base file for that run (an
             architecture axis, e.g. the LSTM, whose model keys differ from the GPT's).
  analysis   (optional) the fits' columns (llmjax.scaling.analysis.AnalysisConfig)
  forks      (optional) cooldown forks of each run (llmjax.scaling.forks)
Any other key is refused (a typo would otherwise drop its overrides from every run).
A run's name joins its axis values, "leaf=value" with ",", e.g. "d_model=32,num_layers=2":
stable and readable. Each run is `python -m llmjax.main --config=BASE --workdir=SWEEPDIR/NAME
--config.k=v ...` as a subprocess, its output in SWEEPDIR/NAME/run.log and its outcome (command,
exit code, last log line, wall seconds summed over attempts) in SWEEPDIR/NAME/sweep.json.
A run whose workdir has results.json from the same command (up to where the sweep directory
is: a moved or copied one keeps its runs) is skipped; an unfinished one is run again and
llmjax.main resumes it from its newest checkpoint; a failed one is recorded and the others go on.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable, Iterable

from llmjax.config import ConfigError

RECORD = "sweep.json"  # per run: command, returncode, error, wall_sec
KEYS = ("name", "base", "set", "axes", "analysis", "forks")  # a sweep config's keys
LOG = "run.log"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    base: str  # the run config file
    overrides: dict[str, Any]  # dotted config key -> value (the sweep's set, then its axes)
    axis_values: dict[str, Any]  # the keys the axes set, for the results table
    fork_of: str = ""  # a cooldown fork (llmjax.scaling.forks): its parent run's name
    fork_step: int = 0  # and the parent's step it starts from

    def command(self, sweep_dir: str, python: str = "python") -> list[str]:
        """The llmjax.main command line of this run (argv, no shell). Runs of the same corpus
        (base file and data.* overrides) share one prepared corpus, SWEEPDIR/data/<digest>,
        unless the sweep sets data.prepared_dir itself."""
        shared = []
        if "data.prepared_dir" not in self.overrides:
            data = {k: v for k, v in self.overrides.items() if k.startswith("data.")}
            digest = hashlib.sha1(json.dumps([self.base, data], sort_keys=True, default=str)
                                  .encode()).hexdigest()[:12]
            shared = [f"--config.data.prepared_dir={os.path.join(sweep_dir, 'data', digest)}"]
        return [python, "-m", "llmjax.main", f"--config={self.base}",
                f"--workdir={os.path.join(sweep_dir, self.name)}",
                *(f"--config.{k}={_cli_value(v)}" for k, v in self.overrides.items()), *shared]


def _cli_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"data": {"seq_len": 64}} -> {"data.seq_len": 64} (ConfigDicts and dicts alike)."""
    if not hasattr(tree, "items"):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def _axis_points(axis: Any, i: int) -> list[dict[str, Any]]:
    """An axis as its list of override dicts."""
    if hasattr(axis, "items"):
        if len(axis) != 1:
            raise ConfigError(f"sweep axes[{i}] has keys {list(axis)}: a dict axis names one key and "
                              "its values; keys that move together go in a list of override dicts")
        (key, values), = axis.items()
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"sweep axes[{i}] {{{key!r}: {values!r}}}: give a list of values")
        values = list(values)
        if not values:
            raise ConfigError(f"sweep axes[{i}] {key!r} has no values (the sweep would have no runs): "
                              "give at least one, or drop the axis")
        return [{key: v} for v in values]
    points = list(axis)
    if not points or not all(hasattr(p, "items") and p for p in points):
        raise ConfigError(f"sweep axes[{i}] must be {{'dotted.key': [values]}} or a non-empty list of "
                          "non-empty {'dotted.key': value} dicts")
    return [dict(p) for p in points]


def _short(value: Any) -> str:
    """A value for a run name: floats in %g form where that is exact (1e+11, not 100000000000.0)."""
    if isinstance(value, float) and "e" in f"{value:g}" and float(f"{value:g}") == value:
        return f"{value:g}"
    return _cli_value(value)


def _piece(key: str, value: Any) -> str:
    if key == "config":
        return os.path.splitext(os.path.basename(str(value)))[0]
    return _UNSAFE.sub("_", f"{key.rsplit('.', 1)[-1]}={_short(value)}")


def check_keys(sweep: Any) -> None:
    """Every key of the sweep config is one of KEYS: a misspelt one is an error, not ignored."""
    for key in sweep.keys():
        if key not in KEYS:
            near = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{key!r} is not a key of a sweep config{hint}: the keys are "
                              f"{', '.join(sorted(KEYS))} (see configs/sweeps/tiny.py)")


def expand(sweep: Any) -> list[Run]:
    """The sweep's runs, in axis order (the last axis varies fastest)."""
    check_keys(sweep)
    for key in ("base", "axes"):
        if key not in sweep:
            raise ConfigError(f"the sweep config lacks '{key}': see configs/sweeps/tiny.py for the format")
    fixed = flatten(sweep.get("set", {}))
    axes = [_axis_points(a, i) for i, a in enumerate(sweep.axes)]
    runs: dict[str, Run] = {}
    for combo in itertools.product(*axes):
        chosen = {k: v for point in combo for k, v in point.items()}
        name = ",".join(_piece(k, v) for k, v in chosen.items()) or "base"
        if name in runs:
            raise ConfigError(f"two runs of the sweep are both named {name!r}: give the axes "
                              "distinct values")
        overrides = {**fixed, **{k: v for k, v in chosen.items() if k != "config"}}
        runs[name] = Run(name, str(chosen.get("config", sweep.base)), overrides, chosen)
    return list(runs.values())


def select(runs: list[Run], only: str) -> list[Run]:
    """The run named `only` (names hold commas, so one name), all of them for ''."""
    if not only:
        return runs
    chosen = [r for r in runs if r.name == only]
    if not chosen:
        raise ConfigError(f"--only: no run named {only!r}; the runs are {'  '.join(r.name for r in runs)}")
    return chosen


def read_record(workdir: str) -> dict[str, Any]:
    path = os.path.join(workdir, RECORD)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


_PLACEHOLDER = "<sweep_dir>" + os.sep


def _relative(args: list[str], name: str) -> list[str]:
    """A run's command with its sweep directory (where --workdir ends in the run's name) written
    <sweep_dir>, in --workdir and any other value under it (a fork's fork_from)."""
    workdir = next((a.split("=", 1)[1] for a in args if a.startswith("--workdir=")), "")
    prefix = workdir[:-len(name)] if workdir.endswith(os.sep + name) else ""
    if not prefix:
        return args
    out = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        out.append(f"{flag}={_PLACEHOLDER}{value[len(prefix):]}" if eq and value.startswith(prefix) else arg)
    return out


def _shared_data_flag(args: list[str]) -> str:
    prefix = f"--config.data.prepared_dir={_PLACEHOLDER}data{os.sep}"
    return next((a for a in args if a.startswith(prefix)), "")


def made_by(record: dict[str, Any], run: Run, sweep_dir: str) -> bool:
    """Whether the record's command is this run's: the same config (base, name, overrides),
    wherever the sweep directory was then (a moved or copied sweep keeps its finished runs)."""
    recorded = record.get("command")
    if not isinstance(recorded, list):
        return False
    now = _relative(run.command(sweep_dir)[1:], run.name)
    # Runs recorded before sweeps shared a prepared corpus lack its flag: still this run's.
    return _relative(recorded, run.name) in (now, [a for a in now if a != _shared_data_flag(now)])


def status(run: Run, sweep_dir: str) -> str:
    """done (results.json from this command) | failed | unfinished | pending."""
    workdir = os.path.join(sweep_dir, run.name)
    record = read_record(workdir)
    if not record:
        return "pending"
    if not made_by(record, run, sweep_dir):
        return "unfinished"  # another command made it: run this one (llmjax.main checks they fit)
    if record.get("returncode") not in (0, None):
        return "failed"
    return "done" if os.path.exists(os.path.join(workdir, "results.json")) else "unfinished"


def finished_dirs(sweep_dir: str) -> list[str]:
    """The run directories in the sweep directory that a finished sweep run left (its record and
    results.json), whichever sweep config made them."""
    if not os.path.isdir(sweep_dir):
        return []
    return sorted(n for n in os.listdir(sweep_dir)
                  if all(os.path.isfile(os.path.join(sweep_dir, n, f)) for f in (RECORD, "results.json")))


def check_analyzable(runs: list[Run], sweep_dir: str) -> None:
    """Before --analyze rewrites the results table: none of the runs done while finished runs
    are on disk means they came from another sweep config; refuse rather than replace
    results.csv with a table of none done."""
    if any(status(r, sweep_dir) == "done" for r in runs):
        return
    finished = finished_dirs(sweep_dir)
    if finished:
        shown = ", ".join(finished[:3]) + (", ..." if len(finished) > 3 else "")
        raise ConfigError(f"--analyze: none of the {len(runs)} runs of this sweep config is done in {sweep_dir}, "
                          f"but it holds {len(finished)} finished run directories ({shown}) from other commands: "
                          "pass the --config that ran them (results.csv is left as it was)")


def _last_line(path: str) -> str:
    with open(path, errors="replace") as f:
        lines = [l.strip() for l in re.split(r"[\r\n]", f.read()) if l.strip()]
    return lines[-1] if lines else ""


def _write_record(workdir: str, record: dict[str, Any]) -> None:
    path = os.path.join(workdir, RECORD)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)


def run_one(run: Run, sweep_dir: str, earlier: tuple[Run, ...] = ()) -> dict[str, Any]:
    """One run as a subprocess of llmjax.main (appending to its run.log); returns its record.
    wall_sec adds the recorded time of this command's earlier attempts, and of `earlier` runs
    (a forks parent's previous legs: the same workdir, continued to a later step)."""
    workdir = os.path.join(sweep_dir, run.name)
    os.makedirs(workdir, exist_ok=True)
    command = run.command(sweep_dir, python=sys.executable)
    previous = read_record(workdir)
    same_run = any(made_by(previous, r, sweep_dir) for r in (*earlier, run))
    record = {"command": command[1:], "returncode": None, "error": "",
              "wall_sec": previous.get("wall_sec", 0.0) if same_run else 0.0}
    _write_record(workdir, record)  # returncode None: started (a killed sweep leaves it so)
    t0 = time.time()
    log_path = os.path.join(workdir, LOG)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    record.update(returncode=code, wall_sec=record["wall_sec"] + time.time() - t0,
                  error=_last_line(log_path) if code else "")
    _write_record(workdir, record)
    return record


def run_all(runs: list[Run], sweep_dir: str, parallel: int = 1,
            log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Every run not done yet, `parallel` at a time; a failure is logged and the others go on.
    Returns name -> record of the runs started now."""
    if parallel < 1:
        raise ConfigError(f"--parallel={parallel}: run at least 1 at a time")
    todo = []
    for run in runs:
        state = status(run, sweep_dir)
        if state == "done":
            log(f"{run.name}: done, skipped")
        else:
            todo.append(run)
    records = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(run_one, run, sweep_dir): run for run in todo}
        for future in concurrent.futures.as_completed(futures):
            run, record = futures[future], future.result()
            records[run.name] = record
            outcome = (f"done in {record['wall_sec']:.0f}s" if record["returncode"] == 0 else
                       f"FAILED (exit code {record['returncode']}): {record['error']}")
            log(f"{run.name}: {outcome}")
    return records
