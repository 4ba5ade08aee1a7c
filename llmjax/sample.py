"""Entry point: continue prompts with a trained run's model.

  python -m llmjax.sample --workdir=runs/gpt_small --prompt="def main(" [--prompt=...]
  python -m llmjax.sample --workdir=runs/gpt_small --prompts_file=prompts.txt --method=beam --num_return=3
  python -m llmjax.sample --workdir=runs/gpt_small --interactive

The run's workdir gives everything: model.json (the finalized model config), tokenizer/ and
checkpoints/<step>/ (the newest, or --step). Generation stops at the tokenizer's EOS; a fixed
--seed gives the same output. Every bad input is one line on stderr and exit code 1, found
before anything heavy is loaded where it can be.

The run's config.json gives its task: a prompt is read as the task read its inputs (for a
seq2seq run, a source with its identifiers split as in training, cut to its source length), and
the decoding flags not given default to the task's own (a seq2seq run's beam search, as its
eval decoded).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, NamedTuple

from absl import app, flags, logging

from llmjax.config import ConfigError, UserError

FLAGS = flags.FlagValues()  # its own: llmjax.main's --workdir may share a process (tests)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory (holds model.json, tokenizer/, "
                               "checkpoints/).", flag_values=FLAGS)
_PROMPT = flags.DEFINE_multi_string("prompt", [], "A prompt (repeat the flag for several).", flag_values=FLAGS)
_PROMPTS_FILE = flags.DEFINE_string("prompts_file", None, "A file of prompts, one per line.", flag_values=FLAGS)
_METHOD = flags.DEFINE_enum("method", "sample", ["greedy", "sample", "beam"], "How tokens are chosen.",
                            flag_values=FLAGS)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature (0: greedy).", flag_values=FLAGS)
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0: all).", flag_values=FLAGS)
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sample within this probability mass (1: all).", flag_values=FLAGS)
_BEAM_SIZE = flags.DEFINE_integer("beam_size", 4, "Beams (--method=beam).", flag_values=FLAGS)
_ALPHA = flags.DEFINE_float("alpha", 0.6, "Beam length penalty exponent: ((5 + len) / 6) ** alpha.",
                            flag_values=FLAGS)
_LENGTH_REWARD = flags.DEFINE_float("length_reward", 0.0, "Beam score bonus per new token (Murray & Chiang "
                                    "2018's word reward: lengthens short output; 0: off).", flag_values=FLAGS)
_NO_REPEAT = flags.DEFINE_integer("no_repeat_ngram", 0, "Beam search never repeats an n-gram of this many "
                                  "new tokens (0: off).", flag_values=FLAGS)
_NUM_RETURN = flags.DEFINE_integer("num_return", 1, "Best hypotheses printed per prompt (--method=beam).",
                                   flag_values=FLAGS)
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "New tokens at most per prompt.", flag_values=FLAGS)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.", flag_values=FLAGS)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=FLAGS)
_INTERACTIVE = flags.DEFINE_bool("interactive", False, "Read prompts at a '> ' prompt and stream the "
                                 "output (empty line or EOF quits; Ctrl-C stops one generation).",
                                 flag_values=FLAGS)
_USE_CACHE = flags.DEFINE_bool("use_cache", True, "Decode on the KV cache (false: recompute every step, "
                               "the slow reference).", flag_values=FLAGS)
_HELP = ("-h", "--help", "-help", "--helpfull", "--helpshort")


class Run(NamedTuple):
    model: Any
    params: Any
    tokenizer: Any
    cfg: Any  # the finalized model config (its limits, whether a prompt is a source)
    trained: Any = None  # saved_run.task(): a TrainedTask, or None
    path: str = ""  # the checkpoint step's directory read


_BEAM_ONLY = ("beam_size", "alpha", "no_repeat_ngram", "length_reward")  # settings only beam search reads


# ---------------------------------------------------------------- checks before loading


def check_flags() -> None:
    """Flag combinations that cannot work; a one-line ConfigError."""
    beam = _METHOD.value == "beam"
    given = bool(_PROMPT.value or _PROMPTS_FILE.value)
    problems = [
        (not _WORKDIR.value, "--workdir is required: the run directory that python -m llmjax.main wrote"),
        (_INTERACTIVE.value and given, "--interactive reads prompts from stdin: drop --prompt/--prompts_file"),
        (not _INTERACTIVE.value and not given,
         "no prompt: pass --prompt=TEXT, --prompts_file=FILE or --interactive"),
        (_MAX_NEW.value < 1, f"--max_new_tokens={_MAX_NEW.value}: must be at least 1"),
        (_TEMPERATURE.value < 0, f"--temperature={_TEMPERATURE.value}: must be >= 0 (0 is greedy)"),
        (_TOP_K.value < 0, f"--top_k={_TOP_K.value}: must be >= 0 (0 keeps every token)"),
        (not 0 < _TOP_P.value <= 1, f"--top_p={_TOP_P.value}: must be in (0, 1] (1 keeps every token)"),
        (beam and _BEAM_SIZE.value < 1, f"--beam_size={_BEAM_SIZE.value}: must be at least 1"),
        (_NUM_RETURN.value < 1, f"--num_return={_NUM_RETURN.value}: must be at least 1"),
        (_NO_REPEAT.value < 0, f"--no_repeat_ngram={_NO_REPEAT.value}: must be >= 0 (0 is off)"),
        (not beam and _NO_REPEAT.value > 0, "--no_repeat_ngram is a beam search option: add --method=beam"),
        (not beam and _LENGTH_REWARD.value != 0, "--length_reward is a beam search option: add --method=beam"),
        (not beam and _NUM_RETURN.value > 1, "--num_return > 1 is beam search's n-best: add --method=beam"),
        (beam and _NUM_RETURN.value > _BEAM_SIZE.value,
         f"--num_return={_NUM_RETURN.value} > --beam_size={_BEAM_SIZE.value}: beam search keeps "
         "beam_size hypotheses; raise --beam_size or lower --num_return"),
        (not _USE_CACHE.value and (beam or _INTERACTIVE.value),
         "--use_cache=false (the uncached reference) works for --method=greedy|sample without --interactive"),
    ]
    for bad, msg in problems:
        if bad:
            raise ConfigError(msg)


def read_prompts() -> list[str]:
    """--prompt values, then --prompts_file lines; an empty prompt is an error."""
    prompts = [(f"--prompt #{i + 1}", p) for i, p in enumerate(_PROMPT.value)]
    if _PROMPTS_FILE.value:
        try:
            with open(_PROMPTS_FILE.value, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"--prompts_file={_PROMPTS_FILE.value!r} cannot be read ({e.strerror}): "
                              "pass a text file with one prompt per line") from None
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ConfigError(f"--prompts_file={_PROMPTS_FILE.value!r} is not UTF-8 text (byte {e.start}, "
                              f"line {line}): save it as UTF-8") from None
        if not lines:
            raise ConfigError(f"--prompts_file={_PROMPTS_FILE.value!r} is empty: put one prompt per line")
        prompts += [(f"line {i + 1} of {_PROMPTS_FILE.value}", p) for i, p in enumerate(lines)]
    for where, p in prompts:
        if not p:
            raise ConfigError(f"{where} is an empty prompt: give every prompt some text")
    return [p for _, p in prompts]


def model_config(workdir: str) -> Any:
    """The run's finalized model config; a model with a task head cannot be sampled from."""
    from llmjax import saved_run

    cfg = saved_run.model_config(workdir)
    if getattr(cfg, "head", ""):
        raise ConfigError(f"the run in {workdir} trained a {cfg.head} head (a fine-tuning task): "
                          "sampling needs a language model")
    return cfg


def use_run_decoding(trained: Any) -> str:
    """Set each decoding flag not given on the command line to the run's own setting (its task's,
    e.g. a seq2seq run's beam search); what was set, as text ('' if nothing)."""
    settings = trained.cls.decoding(trained.task) if trained else {}
    method = _METHOD.value if FLAGS["method"].present else settings.get("method", _METHOD.value)
    used = {}
    for name, value in settings.items():
        if not FLAGS[name].present and (method == "beam" or name not in _BEAM_ONLY):
            FLAGS[name].value = used[name] = value
    return ", ".join(f"{name} {value}" for name, value in used.items())


def encode(tokenizer: Any, prompts: list[str], cfg: Any, max_new_tokens: int,
           trained: Any = None) -> list[list[int]]:
    """Token ids of each prompt as the run's task read its inputs in training (a seq2seq source
    with its identifiers split and EOS, cut to the run's source length); without a recorded task
    (a converted workdir, a run trained through the library), the tokens, and EOS after a
    source. One the model cannot take with max_new_tokens is an error."""
    if trained:
        ids = trained.cls.prompt_ids(trained.task, trained.data, tokenizer, prompts, trained.workdir)
    else:
        ids = [tokenizer.encode(p) + ([tokenizer.eos_id] if cfg.prompt_is_source else []) for p in prompts]
    for i, x in enumerate(ids):
        try:
            cfg.check_generation(len(x), max_new_tokens)
        except ValueError as e:
            raise ConfigError(f"prompt {i + 1} ({len(x)} tokens), --max_new_tokens={max_new_tokens}: {e}") from e
    return ids


# ---------------------------------------------------------------- the model


def load_params(model: Any, path: str) -> tuple[Any, str]:
    """Every parameter of model (a generating family's) from the checkpoint at path (a
    directory of steps: its newest that restores, a line on stderr per corrupt one skipped), and
    the step's directory read."""
    import jax
    import jax.numpy as jnp

    from llmjax import saved_run
    from llmjax.training.state import values

    dummy = jnp.zeros((1, 1), jnp.int32)
    shapes = values(jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, dummy, max_new_tokens=1,
                                                      method="prefill"))["params"])
    return saved_run.read_params_and_path(shapes, path, log=lambda msg: print(msg, file=sys.stderr, flush=True))


def load_run(cfg: Any, tokenizer: Any, path: str, trained: Any = None) -> Run:
    from llmjax.models import registry

    model = registry.build(cfg)
    if not all(hasattr(model, m) for m in ("prefill", "extend", "score")):
        raise ConfigError(f"model family {cfg.name!r} does not generate (no prefill/extend/score): "
                          "sample from a language-model run")
    params, read = load_params(model, path)
    return Run(model, params, tokenizer, cfg, trained, read)


# ---------------------------------------------------------------- generation and output


def continue_prompts(run: Run, ids: list[list[int]]) -> list[list[tuple[str, float | None]]]:
    """For each prompt its continuation(s) as text, with the beam score (None when sampling)."""
    import jax

    from llmjax.generation import beam_search, generate

    tok = run.tokenizer
    if _METHOD.value == "beam":
        tokens, scores = beam_search(run.model, run.params, ids, beam_size=_BEAM_SIZE.value,
                                     max_new_tokens=_MAX_NEW.value, eos_id=tok.eos_id, alpha=_ALPHA.value,
                                     num_return=_NUM_RETURN.value, no_repeat_ngram=_NO_REPEAT.value,
                                     length_reward=_LENGTH_REWARD.value)
        return [[(_text(tok, t), s) for t, s in zip(row_t, row_s)]
                for row_t, row_s in zip(tokens.tolist(), scores.tolist())]
    tokens = generate(run.model, run.params, ids, max_new_tokens=_MAX_NEW.value,
                      rng=jax.random.key(_SEED.value), temperature=_temperature(), top_k=_TOP_K.value,
                      top_p=_TOP_P.value, eos_id=tok.eos_id, use_cache=_USE_CACHE.value)
    return [[(_text(tok, row), None)] for row in tokens.tolist()]


def _temperature() -> float:
    return 0.0 if _METHOD.value == "greedy" else _TEMPERATURE.value


def _text(tokenizer: Any, row: list[int]) -> str:
    """The text of a generated row up to its first EOS."""
    return tokenizer.decode(row[:row.index(tokenizer.eos_id)] if tokenizer.eos_id in row else row)


def _lead(prompt: str, cfg: Any) -> str:
    """What precedes the generated text: the prompt it continues, or an arrow after a source."""
    return "-> " if cfg.prompt_is_source else prompt


def show(prompt: str, results: list[tuple[str, float | None]], cfg: Any) -> None:
    print(f"--- {prompt!r}")
    for rank, (text, score) in enumerate(results, 1):
        head = "" if score is None else f"[{rank}] score {score:.4f}: "
        print(f"{head}{_lead(prompt, cfg)}{text}", flush=True)


def interactive(run: Run, read: Callable[[str], str] | None = None) -> None:
    """Prompt (read, default input()), stream (or beam-search) the continuation, repeat. An empty
    line, EOF or Ctrl-C at the prompt quits; Ctrl-C while generating stops that generation only."""
    import jax

    from llmjax import generation

    read = read or input
    while True:
        try:
            prompt = read("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not prompt:
            return
        try:
            ids = encode(run.tokenizer, [prompt], run.cfg, _MAX_NEW.value, run.trained)
        except ConfigError as e:
            print(f"llmjax.sample: error: {e}", file=sys.stderr, flush=True)
            continue
        try:
            if _METHOD.value == "beam":
                show(prompt, continue_prompts(run, ids)[0], run.cfg)
                continue
            detok = generation.IncrementalDetokenizer(run.tokenizer, () if run.cfg.prompt_is_source else ids[0])
            print(_lead(prompt, run.cfg), end="", flush=True)
            tokens = generation.stream_tokens(run.model, run.params, ids[0], max_new_tokens=_MAX_NEW.value,
                                              rng=jax.random.key(_SEED.value), temperature=_temperature(),
                                              top_k=_TOP_K.value, top_p=_TOP_P.value,
                                              eos_id=run.tokenizer.eos_id)
            for token in tokens:
                print(detok.push(token), end="", flush=True)
            print(detok.flush(), flush=True)
        except KeyboardInterrupt:
            print(flush=True)


# ---------------------------------------------------------------- command line


def _die(msg: str) -> None:
    print(f"llmjax.sample: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse(argv: list[str]) -> list[str]:
    """Flags into FLAGS; a bad flag is one line and exit code 1."""
    if any(a.split("=")[0] in _HELP for a in argv[1:]):
        print(__doc__ + "\nFlags:\n" + FLAGS.get_help(), flush=True)
        sys.exit(0)
    FLAGS.unparse_flags()  # a second call (tests) starts from the defaults
    try:
        rest = FLAGS(argv)
    except flags.Error as e:
        _die(f"{str(e).splitlines()[0]} (see --help)")
    flags.FLAGS.mark_as_parsed()  # absl's own flags (app.run checks them) keep their defaults
    return rest


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _die(f"unexpected arguments {argv[1:]}: a prompt is passed as --prompt=TEXT")
    logging.set_verbosity(logging.WARNING)  # Orbax narrates every restore at INFO
    from llmjax import saved_run

    try:
        if _WORKDIR.value:  # the run's own decoding fills the flags not given, before the checks
            workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
            cfg = model_config(workdir)
            trained = saved_run.task(workdir)
            decoding = use_run_decoding(trained)
        check_flags()
        prompts = [] if _INTERACTIVE.value else read_prompts()
        tokenizer = saved_run.load_tokenizer(workdir)
        path = saved_run.checkpoint_path(workdir, _STEP.value)
        ids = encode(tokenizer, prompts, cfg, _MAX_NEW.value, trained)
        run = load_run(cfg, tokenizer, path, trained)
    except UserError as e:
        _die(str(e))
    print(f"model: {cfg.name}, {cfg.summary()}, from {run.path}", flush=True)
    if decoding:
        print(f"decoding: {decoding} (the run's own settings; a flag overrides each)", flush=True)
    if _INTERACTIVE.value:
        interactive(run)
        return
    for prompt, results in zip(prompts, continue_prompts(run, ids)):
        show(prompt, results, cfg)


def cli(argv: list[str]) -> None:
    """Parse argv and run main (in-process use, such as tests)."""
    main(parse(argv))


def run() -> None:
    """The console entry point: malloc on huge pages (a re-exec, see llmjax.allocator), then absl."""
    from llmjax import allocator

    allocator.reexec_with_huge_pages()
    app.run(main, flags_parser=parse)


if __name__ == "__main__":
    run()
