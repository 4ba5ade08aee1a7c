"""Entry point: Hugging Face checkpoints in and out of llmjax workdirs.

  python -m llmjax.convert --from_hf=DIR --workdir=RUN
      a Hugging Face model directory (GPT-2, BERT, Llama) -> an llmjax workdir: model.json,
      tokenizer/ (the checkpoint's own, kind "hf") and pretrained/0 (the parameters, an Orbax
      checkpoint). `llmjax.sample --workdir=RUN` generates from it at once, and
      `llmjax.main --config=... --workdir=RUN` trains from it (its model keys must be the
      checkpoint's, and config.data.tokenizer=hf).
  python -m llmjax.convert --to_hf=DIR --workdir=RUN [--step=N]
      a run's newest checkpoint that restores (or step N) -> a Hugging Face directory that
      transformers' from_pretrained loads with the same logits (config.json, model.safetensors,
      and the tokenizer's files when the run's tokenizer is a Hugging Face one). A run still
      training there may rotate checkpoints out meanwhile: the newest is looked for again.

A bad flag or input is one line on stderr and exit code 1, before any weights are read.
"""
from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging

from llmjax.config import ConfigError, UserError

FLAGS = flags.FlagValues()
_FROM_HF = flags.DEFINE_string("from_hf", None, "A Hugging Face model directory to import.", flag_values=FLAGS)
_TO_HF = flags.DEFINE_string("to_hf", None, "A new directory to export the run to.", flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string("workdir", None, "The llmjax run directory (written by --from_hf, read "
                               "by --to_hf).", flag_values=FLAGS)
_STEP = flags.DEFINE_integer("step", None, "--to_hf: the checkpoint step (default: the newest).",
                             flag_values=FLAGS)
_HELP = ("-h", "--help", "-help", "--helpfull", "--helpshort")  # FLAGS is its own: absl's help flags are not in it


def import_hf(source: str, workdir: str, log=print) -> str:
    """Write the llmjax workdir of the Hugging Face model at source; returns its pretrained/ path."""
    from llmjax.interop import hf
    from llmjax.training.workdir import WorkdirLock, check_writable

    try:
        hf.read_config(source)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--from_hf: {str(e).splitlines()[0]}") from None
    if not hf.is_hf_dir(source):
        raise ConfigError(f"--from_hf={source}: no weights file (model.safetensors, its shards or "
                          "pytorch_model.bin) beside config.json")
    workdir = check_writable(workdir)
    lock = WorkdirLock(workdir)  # a run (or another convert) using this workdir refuses it
    lock.acquire(log=log)
    try:
        return _import_into(source, workdir, log)
    finally:
        lock.release()


def _import_into(source: str, workdir: str, log) -> str:
    from llmjax.interop import hf
    from llmjax.models import registry
    from llmjax.training.checkpoint import Checkpointer
    from llmjax.training.metrics import write_json
    from llmjax.training.state import count_params
    from llmjax.training.warm_start import TOKENIZER_DIR
    from llmjax.training.workdir import CONVERTED_DIR, MODEL_JSON

    taken = [n for n in ("checkpoints", CONVERTED_DIR, MODEL_JSON) if os.path.exists(os.path.join(workdir, n))]
    if taken:
        raise ConfigError(f"--workdir={workdir} already holds {', '.join(taken)}: convert into a new workdir")
    start = time.time()
    try:
        tokenizer = hf.tokenizer(source)  # checked against the model's rows before any weight is read
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _, params, config = hf.load(source, log=log)
    tokenizer.save(os.path.join(workdir, TOKENIZER_DIR))
    ckpt = Checkpointer(os.path.join(workdir, CONVERTED_DIR), keep=1, async_save=False, log=log)
    ckpt.save(0, {"params": params}, {"converted_from": os.path.abspath(source)})
    write_json(workdir, MODEL_JSON, registry.config_to_dict(config))  # last: marks the workdir complete
    n = count_params(params)
    log(f"converted {source} ({config.name}, {n / 1e6:.1f}M parameters, {config.summary()}) into "
        f"{workdir} in {time.time() - start:.1f}s")
    return ckpt.directory


def export_hf(workdir: str, target: str, step: int | None = None, log=print) -> str:
    """Write the run's checkpoint (newest, or step) as a Hugging Face directory at target."""
    from llmjax.interop import hf
    from llmjax.models import registry
    from llmjax import saved_run

    target = os.path.abspath(os.path.expanduser(target))
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise ConfigError(f"--to_hf={target} already exists and is not empty: export to a new directory")
    config = saved_run.model_config(workdir)
    tokenizer = saved_run.load_tokenizer(workdir)
    hf.export_config(config)  # a format that cannot express the model fails here, before any read
    path = saved_run.checkpoint_path(workdir, step)
    model = registry.build(config)
    params, path = saved_run.read_params_and_path(hf.param_shapes(model), path, log=log)  # the step read
    start = time.time()
    hf.save(target, model, params, config, extra_config={"eos_token_id": tokenizer.eos_id})
    saved = _export_tokenizer(tokenizer, target)
    log(f"exported {path} to {target} in {time.time() - start:.1f}s "
        f"({'with its tokenizer' if saved else 'weights and config; llmjax tokenizers are not a transformers format'})")
    return target


def _export_tokenizer(tokenizer, target: str) -> bool:
    """Copy a Hugging Face tokenizer's own files beside the weights (whether there was one)."""
    if tokenizer.kind != "hf":
        return False
    for name, data in tokenizer.files.items():
        with open(os.path.join(target, name), "wb") as f:
            f.write(data)
    return True


def _die(msg: str) -> None:
    print(f"llmjax.convert: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _die(f"unexpected arguments {argv[1:]}: use --from_hf=DIR or --to_hf=DIR with --workdir=RUN")
    logging.set_verbosity(logging.WARNING)
    if not _WORKDIR.value or bool(_FROM_HF.value) == bool(_TO_HF.value):
        _die("pass --workdir=RUN and exactly one of --from_hf=DIR (import) or --to_hf=DIR (export)")
    if _STEP.value is not None and _FROM_HF.value:
        _die("--step selects the checkpoint to export: use it with --to_hf")
    workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
    try:
        if _FROM_HF.value:
            import_hf(os.path.abspath(os.path.expanduser(_FROM_HF.value)), workdir)
        else:
            export_hf(workdir, _TO_HF.value, _STEP.value)
    except (UserError, ValueError) as e:
        _die(str(e).splitlines()[0])


def parse(argv: list[str]) -> list[str]:
    """Flags into FLAGS (--help prints the usage, exit 0); a bad flag is one line and exit code 1."""
    if any(a.split("=")[0] in _HELP for a in argv[1:]):
        print(__doc__ + "\nFlags:\n" + FLAGS.get_help(), flush=True)
        sys.exit(0)
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        _die(f"{str(e).splitlines()[0]} (see --help)")
    flags.FLAGS.mark_as_parsed()
    return rest


def run() -> None:
    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    run()
