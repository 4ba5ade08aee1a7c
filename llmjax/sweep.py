"""Entry point: `python -m llmjax.sweep --config=configs/sweeps/tiny.py [--parallel=N]`.

Runs every run of a sweep (see llmjax.scaling.sweep for the config format) that is not done
yet, each a normal `python -m llmjax.main` run in SWEEPDIR/<run name>, then writes the results
table SWEEPDIR/results.jsonl and results.csv (llmjax.scaling.results), the fitted scaling laws
SWEEPDIR/fits.json (llmjax.scaling.analysis, summarised on stdout) and the plots in
SWEEPDIR/plots/ (llmjax.scaling.plots). --analyze redoes the last three without running (runs
are matched by their config, so a moved or copied sweep directory keeps them; it refuses to
replace the table when none of the sweep's runs is done but finished runs of another sweep config
are on disk). --list prints the runs with their status, --commands one llmjax.main command per
run (for a cluster scheduler); both exit without running anything. --only=NAME restricts to that
run. A sweep with a `forks` key runs each run as a constant-LR parent and forks cooldowns from
its checkpoints (llmjax.scaling.forks); --list and --commands then prepare each parent's data
first (its parameter count sets the fork steps), and --commands prints the parents' commands
(one per fork step) before the forks', which only work once their parents have run.

Exit codes: 0 every selected run done (or --help), 1 some run failed (the others ran; see its
run.log), 2 a bad flag or sweep config (one line on stderr, nothing run).
"""
from __future__ import annotations

import os
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from llmjax.config import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a sweep config file with get_config().")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "The sweep's directory (default: runs/sweeps/<name>).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Runs at a time.")
_LIST = flags.DEFINE_bool("list", False, "Print the runs (name, status, overrides) and exit.")
_COMMANDS = flags.DEFINE_bool("commands", False, "Print one llmjax.main command per run and exit.")
_ONLY = flags.DEFINE_string("only", "", "Only this run (a name from --list).")
_ANALYZE = flags.DEFINE_bool("analyze", False, "Run nothing: rewrite the results table, fits and plots "
                             "from the runs already in the sweep directory.")
_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def _die(msg: str) -> None:
    print(f"llmjax.sweep: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def _parse(argv: list[str]) -> list[str]:
    """absl/config_flags errors (a bad flag, a missing or broken sweep file) as one line, exit 2."""
    try:
        rest = flags.FLAGS(argv)
        sweep = _CONFIG.value
    except SystemExit as e:  # a help flag printed the usage; absl exits 1 after it
        asked = any(a.lstrip("-").split("=")[0] in _HELP_FLAGS for a in argv[1:] if a.startswith("-"))
        sys.exit(0 if asked else e.code)
    except (KeyError, AttributeError) as e:
        if any(a.startswith("--config.") for a in argv):  # an override of a key the sweep config lacks
            _die(f"a --config.* override names a key the sweep config lacks ({e}): see its file for the keys")
        _die(f"the sweep config file failed to load ({type(e).__name__}: {e}): fix its get_config()")
    except (flags.Error, OSError, SyntaxError, ImportError) as e:
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        _die(f"{lines[-1] if lines else type(e).__name__} (see --helpfull)")
    if sweep is None:
        _die("no sweep config given: pass --config=configs/sweeps/tiny.py (or another in configs/sweeps/)")
    path = flags.FLAGS["config"].config_filename.split(":", 1)[0]
    if not os.path.isfile(path):
        _die(f"sweep config file {path!r} does not exist: pass a path like configs/sweeps/tiny.py")
    try:
        sweep.keys()  # a file that failed to load raises on any access
    except OSError as e:
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        _die(f"sweep config file {path!r} could not be loaded ({lines[-1]})")
    return rest


def _sweep_dir(sweep) -> str:
    if _SWEEP_DIR.value:
        return _SWEEP_DIR.value
    name = sweep.get("name") or os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0]
    return os.path.join("runs", "sweeps", name)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _die(f"unexpected arguments {argv[1:]}: flags look like --parallel=2")
    logging.set_verbosity(logging.WARNING)  # tfds narrates at INFO (a forks sweep counts parameters here)
    from llmjax.scaling import analysis, forks
    from llmjax.scaling import sweep as sweep_lib

    sweep = _CONFIG.value
    sweep_dir = _sweep_dir(sweep)
    try:
        runs = sweep_lib.select(sweep_lib.expand(sweep), _ONLY.value)
        analysis_cfg = analysis.AnalysisConfig.from_sweep(sweep)
        if _PARALLEL.value < 1:
            raise ConfigError(f"--parallel={_PARALLEL.value}: run at least 1 at a time")
        plan = forks.plan(sweep, runs, sweep_dir)  # the sweep's forks key: parents and their cooldown forks
    except ConfigError as e:
        _die(str(e))
    runs = plan.runs if plan else runs
    if _COMMANDS.value and plan:
        print("\n".join(forks.commands(plan, sweep_dir)))
        return
    if _LIST.value or _COMMANDS.value:
        for run in runs:
            if _COMMANDS.value:
                print(shlex.join(run.command(sweep_dir)))
            else:
                overrides = " ".join(shlex.quote(a) for a in run.command(sweep_dir)[4:])
                print(f"{run.name}  {sweep_lib.status(run, sweep_dir)}  {overrides}")
        return
    from llmjax.scaling import results

    records = {}
    if _ANALYZE.value and not _ONLY.value:  # never a table of none done over finished runs on disk
        try:
            sweep_lib.check_analyzable(runs, sweep_dir)
        except ConfigError as e:
            _die(str(e))
    if not _ANALYZE.value:
        print(f"sweep: {len(runs)} runs in {sweep_dir}, {_PARALLEL.value} at a time", flush=True)
        log = lambda msg: print(msg, flush=True)  # noqa: E731
        records = (forks.run_all(plan, sweep_dir, _PARALLEL.value, log) if plan else
                   sweep_lib.run_all(runs, sweep_dir, _PARALLEL.value, log=log))
    rows = results.write(runs, sweep_dir)
    failed = [name for name, r in records.items() if r["returncode"] != 0]
    print(f"results: {os.path.join(sweep_dir, 'results.csv')} ({sum(r['status'] == 'done' for r in rows)} of "
          f"{len(rows)} done{', failed: ' + ', '.join(failed) if failed else ''})", flush=True)
    _fit_and_plot(rows, analysis_cfg, sweep_dir)
    sys.exit(1 if failed else 0)


def _fit_and_plot(rows: list[dict], cfg, sweep_dir: str) -> None:
    """fits.json and the plots; a missing matplotlib skips the plots with one line."""
    from llmjax.scaling import analysis, plots

    fits = analysis.analyze(rows, cfg)
    path = analysis.write(fits, sweep_dir)
    for line in analysis.summary(fits):
        print(line, flush=True)
    print(f"fits: {path}", flush=True)
    try:
        paths = plots.write_all(rows, fits, cfg, sweep_dir)
    except ImportError as e:
        print(f"plots: skipped ({e})", flush=True)
        return
    print(f"plots: {', '.join(paths) if paths else 'none (no finished runs)'}", flush=True)


def run() -> None:
    """The console entry point."""
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
