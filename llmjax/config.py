"""Config machinery and the groups every run has (data, train, optim, checkpoint, mesh).

A config group is a frozen dataclass whose field defaults are the defaults of its ConfigDict
group (`to_group`), so each key and its default are written once. `from_group` turns a
ConfigDict group back into the dataclass with one-line errors for unknown keys and wrong types,
and calls the dataclass's `validate()`. The model group and the task group are registered by
their families (llmjax.models.registry, llmjax.tasks.registry) beside their builders; the
whole experiment config is assembled in llmjax.experiment.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Callable, TypeVar

import ml_collections

DTYPES = ("float32", "bfloat16")
TOKENIZERS = ("sentencepiece", "byte", "char", "hf", "word")
SPM_TYPES = ("bpe", "unigram")
# data.dataset's kinds (llmjax.data.sources reads each): the embedded corpus, a prepared tfds
# dataset, files matched by a glob, a Hugging Face `datasets` directory from save_to_disk.
DATASET_KINDS = ("stdlib", "tfds:NAME[/CONFIG]", "text:GLOB", "jsonl:GLOB", "parquet:GLOB",
                 "hf_disk:DIR")
GLOB_KINDS = ("text", "jsonl", "parquet")
DECODE_ERRORS = ("strict", "replace")  # bytes that are not UTF-8 in the corpus: refuse | read as U+FFFD, counted
OPTIMIZERS = ("adamw", "adafactor", "lion", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "rsqrt", "wsd")
COOLDOWNS = ("linear", "1-sqrt")  # shapes of wsd's final decay (Hagele et al. 2024)
BUDGET_RULES = ("exact", "6N")  # FLOPs per step behind train.budget_flops: the task's own count | 6 x parameters x tokens

G = TypeVar("G")
RUNTIME = {"runtime": True}  # dataclass field metadata: set by the run (e.g. vocabulary), not a key


class UserError(ValueError):
    """A problem the user can fix (bad input, a fault, divergence): the message is one line
    naming it and the fix; entry points print it without a traceback."""


class ConfigError(UserError):
    """A bad config value; the message is one line naming the key and the fix."""


# ---------------------------------------------------------------- checks


def fail(key: str, value: Any, fix: str) -> None:
    raise ConfigError(f"config.{key}={value!r}: {fix}")


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(key, value, f"must be one of {', '.join(choices)}")


def check_positive(key: str, value: Any, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        fail(key, value, "must be " + ("zero or more" if allow_zero else "a positive number"))


def check_fraction(key: str, value: float, low_open: bool = False) -> None:
    """value in [0, 1) (or (0, 1) with low_open)."""
    if not (0.0 < value < 1.0 if low_open else 0.0 <= value < 1.0):
        fail(key, value, "must be in " + ("(0, 1)" if low_open else "[0, 1)"))


def first_change(saved: dict, current: dict, keys: tuple[str, ...],
                 ignore: tuple[str, ...] = ()) -> tuple[str, Any, Any] | None:
    """(dotted key, saved value, current value) of the first of `keys` (a group, or group.leaf;
    not the dotted keys in `ignore`) where two config dicts (config.json's form) differ; None if
    they agree on all of them. A shared group's key that `saved` lacks was added since it was
    recorded: it counts as its default."""
    for key in keys:
        group, _, leaf = key.partition(".")
        old, new = saved.get(group, {}), current.get(group, {})
        if group in SHARED_GROUPS and isinstance(old, dict):
            old = {**to_group(SHARED_GROUPS[group]).to_dict(), **old}
        names = [leaf] if leaf else sorted(set(old) | set(new))
        for name in names:
            if old.get(name) != new.get(name) and f"{group}.{name}" not in ignore:
                return f"{group}.{name}", old.get(name), new.get(name)
    return None


# ---------------------------------------------------------------- dataclass <-> ConfigDict


def config_fields(cls: type) -> list[dataclasses.Field]:
    """cls's fields that are config keys (not RUNTIME)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("runtime")]


def to_group(cls: type) -> ml_collections.ConfigDict:
    """The ConfigDict group holding cls's config keys with their defaults."""
    group = ml_collections.ConfigDict()
    for f in config_fields(cls):
        if f.default is not dataclasses.MISSING:
            group[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            group[f.name] = f.default_factory()  # type: ignore[misc]
    return group


def from_group(cls: type[G], group: Any, prefix: str, owner: str = "") -> G:
    """cls built from a ConfigDict group, checked key by key, then validated. `owner` names whose
    keys these are when the group's name picks them (e.g. "model family 'lstm'")."""
    names = [f.name for f in config_fields(cls)]
    known = set(names)
    for key in group.keys():
        if key not in known:
            fail(f"{prefix}.{key}", group[key], f"unknown key{f' for {owner}' if owner else ''}; "
                 f"known keys of config.{prefix}: {', '.join(names)}")
    defaults = to_group(cls)
    values = {}
    for name in known:
        if name not in group:
            continue
        value = group[name]
        default = defaults.get(name)
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float, str)) and not isinstance(value, type(default))
                and not (isinstance(default, float) and isinstance(value, int))):
            fail(f"{prefix}.{name}", value, f"must be of type {type(default).__name__}")
        values[name] = float(value) if isinstance(default, float) else value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


# ---------------------------------------------------------------- registries of config groups


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    config_cls: type  # the frozen dataclass of the group's keys
    target: Any  # what the name builds (a model builder, a Task class)


class Registry:
    """name -> (config dataclass, target) for one config group whose keys depend on its `name`
    (config.model: model families; config.task: tasks). Each entry registers itself beside its
    code, so adding one touches no shared list. `load` imports the package that registers them."""

    def __init__(self, group: str, what: str, load: Callable[[], None]):
        self.group, self.what, self._load = group, what, load
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config_cls: type) -> Callable[[Any], Any]:
        def wrap(target: Any) -> Any:
            if name in self._entries and self._entries[name].target is not target:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._entries[name] = Entry(name, config_cls, target)
            return target
        return wrap

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(sorted(self._entries))

    def entry(self, name: str) -> Entry:
        self._load()
        if name not in self._entries:
            raise ConfigError(f"config.{self.group}.name={name!r}: unknown {self.what}; registered: "
                              f"{', '.join(sorted(self._entries))}")
        return self._entries[name]

    def default_group(self, name: str) -> ml_collections.ConfigDict:
        """Every key of the entry's group with its default."""
        return to_group(self.entry(name).config_cls)

    def resolve(self, group: Any) -> Any:
        """The entry's frozen config from the group, checked key by key."""
        entry = self.entry(group.get("name", ""))
        return from_group(entry.config_cls, group, self.group, owner=f"{self.what} {entry.name!r}")


# ---------------------------------------------------------------- the shared groups


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "stdlib"  # stdlib | tfds:NAME[/CONFIG] | text:GLOB (a file a document) | jsonl:GLOB (.jsonl, .jsonl.gz, .jsonl.zst) | parquet:GLOB | hf_disk:DIR (save_to_disk's directory)
    tfds_data_dir: str = ""  # where tfds datasets live ('' = tfds default; stdlib: ~/.cache/llmjax/tfds)
    text_key: str = "text"  # the text's tfds feature, JSON key, Parquet or Arrow column
    train_split: str = "train"  # tfds (or hf_disk DatasetDict) split for training
    eval_split: str = ""  # tfds (or hf_disk DatasetDict) split for evaluation ('' = validation, else test)
    val_fraction: float = 0.05  # held-out share: stdlib and text: by file (the last val_fraction of the bytes for <10 files), jsonl/parquet/hf_disk by document content hash
    holdout: str = ""  # stdlib: embedded downstream tasks whose eval files leave the train split, comma-separated (stdlib_packages, stdlib_roles, stdlib_docstring_qa, stdlib_docstrings; llmjax.data.holdout), so a model pretrained here has not read what fine-tuning is scored on
    tokenizer: str = "sentencepiece"  # sentencepiece | byte | char | hf (a Hugging Face checkpoint's own, from init_from or llmjax.convert) | word (llmjax.data.word_tokenizer)
    vocab_size: int = 4096  # sentencepiece vocabulary size; word: the most frequent words (+ 6 specials) kept (byte/char ignore it)
    spm_model_type: str = "bpe"  # bpe | unigram
    spm_train_chars: int = 5_000_000  # characters of train documents sentencepiece (or the word tokenizer) trains on (a random sample: those of smallest content hash)
    seq_len: int = 128  # tokens per training row
    document_mask: bool = False  # mask attention across packed documents (and restart positions)
    max_train_chars: int = 0  # cap on train text read (0 = all), for quick experiments
    decode_errors: str = "strict"  # text that is not UTF-8: strict (refuse, naming file and byte) | replace (U+FFFD, counted in the log)
    prepared_dir: str = ""  # where the corpus is prepared ('' = the run's workdir/data); runs and sweeps sharing one prepare it once (see llmjax.prepare)
    num_workers: int = 0  # preparation worker processes (0 = one per core; a corpus under 32 MB is prepared in-process)
    eval_tokens: int = 2_000_000  # LM eval budget: a larger validation split is evaluated on a fixed random sample of rows of this many tokens (0 = always all of it)

    def validate(self) -> None:
        check_choice("data.tokenizer", self.tokenizer, TOKENIZERS)
        check_choice("data.spm_model_type", self.spm_model_type, SPM_TYPES)
        check_choice("data.decode_errors", self.decode_errors, DECODE_ERRORS)
        check_positive("data.seq_len", self.seq_len)
        check_positive("data.max_train_chars", self.max_train_chars, allow_zero=True)
        check_positive("data.num_workers", self.num_workers, allow_zero=True)
        check_positive("data.eval_tokens", self.eval_tokens, allow_zero=True)
        check_fraction("data.val_fraction", self.val_fraction, low_open=True)
        if self.holdout:
            from llmjax.data.holdout import HOLDOUTS, parse
            unknown = [name for name in parse(self.holdout) if name not in HOLDOUTS]
            if unknown or self.dataset != "stdlib":
                fail("data.holdout", self.holdout, f"holds out the eval files of {', '.join(HOLDOUTS)} "
                     "from the stdlib corpus" + (f" (not {', '.join(unknown)})" if unknown else
                                                 ": use it with data.dataset='stdlib', or ''"))
        if self.tokenizer == "sentencepiece" and not 300 <= self.vocab_size < 2**31:
            fail("data.vocab_size", self.vocab_size,
                 "sentencepiece needs at least 300 (byte fallback uses 256) and less than 2**31")
        if self.tokenizer == "word" and self.vocab_size <= 6:
            fail("data.vocab_size", self.vocab_size, "the word tokenizer needs more than its 6 specials")
        _check_dataset(self.dataset)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    num_steps: int = 1000  # optimizer updates (unless budget_flops sets them)
    budget_flops: float = 0.0  # > 0: train for this many FLOPs instead: num_steps = round(budget / FLOPs per step)
    budget_rule: str = "exact"  # FLOPs per step for budget_flops: exact (the task's count, as logged) | 6N (6 x all parameters x tokens, Chinchilla's C = 6ND)
    batch_size: int = 32  # global batch in sequences (all devices and hosts together)
    grad_accum_steps: int = 1  # micro-batches per update; batch_size must be divisible by it
    eval_every: int = 250  # evaluate every this many steps (and at the end)
    eval_steps: int = 0  # eval batches per evaluation (0 = the whole validation split)
    log_every: int = 10  # write a train metrics row every this many steps
    seed: int = 0  # parameters, dropout and data order
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    z_loss: float = 0.0  # coefficient of the log(Z)^2 auxiliary loss (PaLM uses 1e-4)
    num_samples: int = 3  # continuations of fixed prompts printed at the end (tasks that generate)
    sample_tokens: int = 64  # length of each sampled continuation
    progress: bool = True  # show a progress bar

    def validate(self) -> None:
        check_choice("train.dtype", self.dtype, DTYPES)
        check_choice("train.budget_rule", self.budget_rule, BUDGET_RULES)
        check_positive("train.budget_flops", self.budget_flops, allow_zero=True)
        for key in ("num_steps", "batch_size", "grad_accum_steps", "eval_every", "log_every"):
            check_positive(f"train.{key}", getattr(self, key))
        for key in ("eval_steps", "z_loss", "num_samples", "sample_tokens"):
            check_positive(f"train.{key}", getattr(self, key), allow_zero=True)
        if self.batch_size % self.grad_accum_steps:
            fail("train.batch_size", self.batch_size,
                 f"must be divisible by config.train.grad_accum_steps={self.grad_accum_steps}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | adafactor | lion | sgd
    lr: float = 1e-3  # peak learning rate
    schedule: str = "cosine"  # constant | cosine | linear | rsqrt | wsd
    warmup_steps: int = 100  # linear warm-up: update k of the first warmup_steps gets lr * k / warmup_steps
    min_lr_ratio: float = 0.1  # final lr / peak lr for cosine, linear and wsd
    decay_fraction: float = 0.2  # wsd: share of steps spent decaying at the end
    cooldown_shape: str = "linear"  # wsd's decay: linear | 1-sqrt (lr = floor + (peak - floor)(1 - sqrt(t/T)))
    weight_decay: float = 0.1  # decoupled (lr * wd * p) on kernels; never on biases or norm scales
    decay_embeddings: bool = True  # weight decay on token and learned-position tables (GPT-2, nanoGPT)
    grad_clip: float = 1.0  # global-norm clip (0 = off)
    b1: float = 0.9  # first-moment decay (adamw, lion)
    b2: float = 0.95  # second-moment decay (adamw, lion)
    eps: float = 1e-8  # adamw epsilon

    def validate(self) -> None:
        check_choice("optim.name", self.name, OPTIMIZERS)
        check_choice("optim.schedule", self.schedule, SCHEDULES)
        for key in ("warmup_steps", "weight_decay", "grad_clip", "lr"):
            check_positive(f"optim.{key}", getattr(self, key), allow_zero=True)
        check_choice("optim.cooldown_shape", self.cooldown_shape, COOLDOWNS)
        if self.schedule == "wsd" and not 0.0 < self.decay_fraction <= 1.0:
            fail("optim.decay_fraction", self.decay_fraction, "must be in (0, 1]")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 200  # save every this many steps (and at the end)
    keep: int = 3  # checkpoints kept (older ones are deleted by Orbax)
    async_save: bool = True  # write checkpoints in the background

    def validate(self) -> None:
        check_positive("checkpoint.every_steps", self.every_steps)
        check_positive("checkpoint.keep", self.keep)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = -1  # data-parallel axis size (-1 = the devices left over)
    fsdp: int = 1  # parameter/optimizer-state sharding axis size
    tensor: int = 1  # tensor-parallel axis size (heads and MLP hidden)


SHARED_GROUPS = {"data": DataConfig, "train": TrainConfig, "optim": OptimConfig,
                 "checkpoint": CheckpointConfig, "mesh": MeshConfig}


def _check_dataset(spec: str) -> None:
    if spec == "stdlib":
        return
    if spec.startswith("tfds:"):
        if not spec[5:]:
            fail("data.dataset", spec, "name a tfds dataset, e.g. tfds:lm1b or tfds:wikipedia/20230601.en")
        return
    kind, _, rest = spec.partition(":")
    if kind in GLOB_KINDS:
        dataset_files(spec)
        return
    if kind == "hf_disk":
        if not os.path.isdir(os.path.expanduser(rest)):
            fail("data.dataset", spec, "no such directory: name the directory save_to_disk wrote")
        return
    fail("data.dataset", spec, dataset_kinds_hint())


def dataset_files(spec: str) -> list[str]:
    """The files a GLOB kind's data.dataset matches, sorted; ConfigError for none or all empty."""
    files = sorted(f for f in glob.glob(os.path.expanduser(spec.partition(":")[2]), recursive=True)
                   if os.path.isfile(f))
    if not files:
        fail("data.dataset", spec, "the glob matches no files: check the path (quote it in the shell)")
    if all(os.path.getsize(f) == 0 for f in files):
        fail("data.dataset", spec, f"all {len(files)} matched files are empty: the corpus is empty")
    return files


def dataset_kinds_hint() -> str:
    """The fix for a data.dataset of no known kind."""
    return f"must be {', '.join(DATASET_KINDS[:-1])} or {DATASET_KINDS[-1]}"


def mesh_shape(mesh: MeshConfig | Any, num_devices: int) -> tuple[int, int, int]:
    """Axis sizes (data, fsdp, tensor) with the one -1 axis filled in."""
    sizes = [mesh.data, mesh.fsdp, mesh.tensor]
    names = ("data", "fsdp", "tensor")
    if sum(s == -1 for s in sizes) > 1:
        raise ConfigError("config.mesh: at most one of data, fsdp, tensor may be -1 (the rest)")
    for name, s in zip(names, sizes):
        if s == 0 or s < -1:
            fail(f"mesh.{name}", s, "must be a positive axis size or -1 (the devices left over)")
    known = 1
    for s in sizes:
        known *= s if s != -1 else 1
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(f"config.mesh: fsdp*tensor*data={known} does not divide the "
                              f"{num_devices} devices: pick axis sizes whose product divides it")
        sizes[sizes.index(-1)] = num_devices // known
    elif known != num_devices:
        raise ConfigError(f"config.mesh: data*fsdp*tensor={known} but there are {num_devices} devices: "
                          "make the product match, or set one axis to -1")
    return tuple(sizes)
