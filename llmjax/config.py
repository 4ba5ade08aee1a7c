"""The one place the ml_collections config is read.

`base_config()` lists every key with its meaning; config files under configs/ start from it.
`resolve()` checks the whole config (types, choices, consistency) before any data or compile
work and turns it into small frozen dataclasses, so no layer below ever sees the ConfigDict.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

import ml_collections

POSITIONS = ("sinusoidal", "learned", "rope", "alibi")
FFNS = ("relu", "gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
NORM_PLACEMENTS = ("pre", "post")
TOKENIZERS = ("sentencepiece", "byte", "char")
SPM_TYPES = ("bpe", "unigram")
DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("adamw", "adafactor", "lion", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "rsqrt", "wsd")
BACKENDS = ("auto", "xla", "cudnn")
REMATS = ("none", "full", "dots_saveable")
MODELS = ("gpt",)


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key and the fix."""


def base_config() -> ml_collections.ConfigDict:
    """Every key llmjax reads, with its default. Config files override what they need."""
    c = ml_collections.ConfigDict()

    c.model = m = ml_collections.ConfigDict()
    m.name = "gpt"  # model family, looked up in llmjax.models.registry
    m.num_layers = 6  # transformer layers
    m.d_model = 384  # residual width
    m.num_heads = 6  # query heads; d_model must be divisible by it
    m.num_kv_heads = 0  # key/value heads for grouped-query attention (0 = num_heads)
    m.mlp_dim = 1536  # hidden width of the feed-forward block
    m.max_len = 0  # positional table / KV-cache length (0 = data.seq_len)
    m.position = "learned"  # sinusoidal | learned | rope | alibi
    m.rope_base = 10000.0  # RoPE frequency base
    m.ffn = "gelu"  # relu | gelu | swiglu
    m.norm = "layernorm"  # layernorm | rmsnorm
    m.norm_position = "pre"  # pre (GPT-2) | post (original Transformer)
    m.dropout = 0.0  # residual and embedding dropout
    m.attention_dropout = 0.0  # dropout on attention probabilities
    m.use_bias = True  # biases in dense layers
    m.tie_embeddings = True  # output projection shares the token embedding
    m.vocab_multiple = 64  # pad the vocabulary to a multiple of this (fast matmuls)
    m.attention_backend = "auto"  # auto (cudnn on GPU, else xla) | xla | cudnn
    m.remat = "none"  # activation rematerialisation per layer: none | full | dots_saveable
    m.init_std = 0.02  # std of the normal initialiser

    c.data = d = ml_collections.ConfigDict()
    d.dataset = "stdlib"  # stdlib | tfds:NAME[/CONFIG] | text:GLOB
    d.tfds_data_dir = ""  # where tfds datasets live ('' = tfds default; stdlib: ~/.cache/llmjax/tfds)
    d.text_key = "text"  # feature holding the text in a tfds dataset
    d.train_split = "train"  # tfds split for training
    d.eval_split = ""  # tfds split for evaluation ('' = validation, else test)
    d.val_fraction = 0.05  # text:/stdlib held-out share (by file; by tail of text for <10 files)
    d.tokenizer = "sentencepiece"  # sentencepiece | byte | char
    d.vocab_size = 4096  # sentencepiece vocabulary size (byte/char ignore it)
    d.spm_model_type = "bpe"  # bpe | unigram
    d.spm_train_chars = 5_000_000  # characters of the train split used to train sentencepiece
    d.seq_len = 128  # tokens per training row
    d.document_mask = False  # mask attention across packed documents (and restart positions)
    d.max_train_chars = 0  # cap on train text read (0 = all), for quick experiments

    c.train = t = ml_collections.ConfigDict()
    t.num_steps = 1000  # optimizer updates
    t.batch_size = 32  # global batch in sequences (all devices and hosts together)
    t.grad_accum_steps = 1  # micro-batches per update; batch_size must be divisible by it
    t.eval_every = 250  # evaluate every this many steps (and at the end)
    t.eval_steps = 20  # eval batches per evaluation
    t.log_every = 10  # write a train metrics row every this many steps
    t.seed = 0  # parameters, dropout and data order
    t.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    t.z_loss = 0.0  # coefficient of the log(Z)^2 auxiliary loss (PaLM uses 1e-4)
    t.num_samples = 3  # continuations of fixed prompts printed at the end
    t.sample_tokens = 64  # length of each sampled continuation
    t.progress = True  # show a progress bar

    c.optim = o = ml_collections.ConfigDict()
    o.name = "adamw"  # adamw | adafactor | lion | sgd
    o.lr = 1e-3  # peak learning rate
    o.schedule = "cosine"  # constant | cosine | linear | rsqrt | wsd
    o.warmup_steps = 100  # linear warm-up from 0
    o.min_lr_ratio = 0.1  # final lr / peak lr for cosine, linear and wsd
    o.decay_fraction = 0.2  # wsd: share of steps spent decaying at the end
    o.weight_decay = 0.1  # decoupled; never applied to vectors (norm scales, biases)
    o.decay_embeddings = True  # weight decay on token and learned-position tables (GPT-2, nanoGPT)
    o.grad_clip = 1.0  # global-norm clip (0 = off)
    o.b1 = 0.9  # first-moment decay (adamw, lion)
    o.b2 = 0.95  # second-moment decay (adamw, lion)
    o.eps = 1e-8  # adamw epsilon

    c.checkpoint = k = ml_collections.ConfigDict()
    k.every_steps = 200  # save every this many steps (and at the end)
    k.keep = 3  # checkpoints kept (older ones are deleted by Orbax)
    k.async_save = True  # write checkpoints in the background

    c.mesh = s = ml_collections.ConfigDict()
    s.data = -1  # data-parallel axis size (-1 = the devices left over)
    s.fsdp = 1  # parameter/optimizer-state sharding axis size
    s.tensor = 1  # tensor-parallel axis size (heads and MLP hidden)
    return c


# ---------------------------------------------------------------- frozen views


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    position: str = "learned"  # rope / alibi are applied inside attention
    rope_base: float = 10000.0
    dropout: float = 0.0
    use_bias: bool = True
    backend: str = "xla"  # xla | cudnn (auto resolved by the model from the platform)
    dtype: str = "float32"
    init_std: float = 0.02
    num_layers: int = 1  # scales the output-projection init (GPT-2)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # padded size used by the embedding and output layers
    name: str = "gpt"
    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    num_kv_heads: int = 4
    mlp_dim: int = 256
    max_len: int = 128
    position: str = "learned"
    rope_base: float = 10000.0
    ffn: str = "gelu"
    norm: str = "layernorm"
    norm_position: str = "pre"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    use_bias: bool = True
    tie_embeddings: bool = True
    attention_backend: str = "xla"
    remat: str = "none"
    init_std: float = 0.02
    dtype: str = "float32"  # compute dtype; parameters are always float32

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def attention(self) -> AttentionConfig:
        return AttentionConfig(
            num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
            position=self.position, rope_base=self.rope_base, dropout=self.attention_dropout,
            use_bias=self.use_bias, backend=self.attention_backend, dtype=self.dtype,
            init_std=self.init_std, num_layers=self.num_layers)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "stdlib"
    tfds_data_dir: str = ""
    text_key: str = "text"
    train_split: str = "train"
    eval_split: str = ""
    val_fraction: float = 0.05
    tokenizer: str = "byte"
    vocab_size: int = 4096
    spm_model_type: str = "bpe"
    spm_train_chars: int = 5_000_000
    seq_len: int = 128
    document_mask: bool = False
    max_train_chars: int = 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    num_steps: int = 100
    batch_size: int = 8
    grad_accum_steps: int = 1
    eval_every: int = 50
    eval_steps: int = 2
    log_every: int = 10
    seed: int = 0
    dtype: str = "float32"
    z_loss: float = 0.0
    num_samples: int = 3
    sample_tokens: int = 64
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    decay_embeddings: bool = True
    grad_clip: float = 1.0
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 100
    keep: int = 3
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    data: int = -1
    fsdp: int = 1
    tensor: int = 1


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything but the model, whose vocabulary is known only once the tokenizer exists."""
    model: Any  # the ConfigDict group, narrowed by model_config() once vocab_size is known
    data: DataConfig
    train: TrainConfig
    optim: OptimConfig
    checkpoint: CheckpointConfig
    mesh: MeshConfig

    def model_config(self, vocab_size: int, platform: str) -> ModelConfig:
        """The model's frozen config, with the vocabulary padded and the backend resolved."""
        m = self.model
        mult = max(1, m.vocab_multiple)
        padded = -(-vocab_size // mult) * mult
        backend = m.attention_backend
        if backend == "auto":
            backend = "cudnn" if platform == "gpu" else "xla"
        return ModelConfig(
            vocab_size=padded, name=m.name, num_layers=m.num_layers, d_model=m.d_model,
            num_heads=m.num_heads, num_kv_heads=m.num_kv_heads or m.num_heads,
            mlp_dim=m.mlp_dim, max_len=m.max_len or self.data.seq_len, position=m.position,
            rope_base=m.rope_base, ffn=m.ffn, norm=m.norm, norm_position=m.norm_position,
            dropout=m.dropout, attention_dropout=m.attention_dropout, use_bias=m.use_bias,
            tie_embeddings=m.tie_embeddings, attention_backend=backend, remat=m.remat,
            init_std=m.init_std, dtype=self.train.dtype)


# ---------------------------------------------------------------- validation


def _fail(key: str, value: Any, fix: str) -> None:
    raise ConfigError(f"config.{key}={value!r}: {fix}")


def _choice(cfg, key: str, choices: tuple[str, ...]) -> None:
    value = _get(cfg, key)
    if value not in choices:
        _fail(key, value, f"must be one of {', '.join(choices)}")


def _positive(cfg, key: str, allow_zero: bool = False) -> None:
    value = _get(cfg, key)
    if value < 0 or (value == 0 and not allow_zero):
        _fail(key, value, "must be " + ("zero or more" if allow_zero else "a positive number"))


def _get(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


_FIELDS = {
    "data": DataConfig, "train": TrainConfig, "optim": OptimConfig,
    "checkpoint": CheckpointConfig, "mesh": MeshConfig,
}


def _check_keys(cfg: ml_collections.ConfigDict) -> None:
    """Config files may add keys the code never reads; catch them (typos) here."""
    base = base_config()
    for group in base.keys():
        if group not in cfg:
            _fail(group, None, f"the config lacks the group '{group}': start from llmjax.config.base_config()")
    for group in cfg.keys():
        if group not in base:
            _fail(group, "...", f"unknown group; known groups: {', '.join(base.keys())}")
        for key in cfg[group].keys():
            if key not in base[group]:
                _fail(f"{group}.{key}", cfg[group][key],
                      f"unknown key; known keys of config.{group}: {', '.join(base[group].keys())}")


def validate(cfg: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
    """Raise ConfigError on the first bad value. Cheap: no data, no compile."""
    _check_keys(cfg)
    m, d, t, o = cfg.model, cfg.data, cfg.train, cfg.optim
    _choice(cfg, "model.name", MODELS)
    _choice(cfg, "model.position", POSITIONS)
    _choice(cfg, "model.ffn", FFNS)
    _choice(cfg, "model.norm", NORMS)
    _choice(cfg, "model.norm_position", NORM_PLACEMENTS)
    _choice(cfg, "model.attention_backend", BACKENDS)
    _choice(cfg, "model.remat", REMATS)
    _choice(cfg, "data.tokenizer", TOKENIZERS)
    _choice(cfg, "data.spm_model_type", SPM_TYPES)
    _choice(cfg, "train.dtype", DTYPES)
    _choice(cfg, "optim.name", OPTIMIZERS)
    _choice(cfg, "optim.schedule", SCHEDULES)
    for key in ("model.num_layers", "model.d_model", "model.num_heads", "model.mlp_dim",
                "data.seq_len", "train.num_steps", "train.batch_size", "train.grad_accum_steps",
                "train.eval_every", "train.eval_steps", "train.log_every",
                "checkpoint.every_steps", "checkpoint.keep", "model.vocab_multiple"):
        _positive(cfg, key)
    for key in ("model.num_kv_heads", "model.max_len", "optim.warmup_steps", "optim.weight_decay",
                "optim.grad_clip", "optim.lr", "train.z_loss", "data.max_train_chars",
                "train.num_samples", "train.sample_tokens"):
        _positive(cfg, key, allow_zero=True)
    for key in ("model.dropout", "model.attention_dropout"):
        if not 0.0 <= _get(cfg, key) < 1.0:
            _fail(key, _get(cfg, key), "must be in [0, 1)")
    if not 0.0 < d.val_fraction < 1.0:
        _fail("data.val_fraction", d.val_fraction, "must be in (0, 1)")
    if m.d_model % m.num_heads:
        _fail("model.d_model", m.d_model,
              f"must be divisible by config.model.num_heads={m.num_heads}: change either")
    kv = m.num_kv_heads or m.num_heads
    if m.num_heads % kv:
        _fail("model.num_kv_heads", m.num_kv_heads,
              f"must divide config.model.num_heads={m.num_heads} (grouped-query attention)")
    if m.position == "rope" and (m.d_model // m.num_heads) % 2:
        _fail("model.d_model", m.d_model, "rope needs an even head dim (d_model / num_heads)")
    if m.max_len and d.seq_len > m.max_len:
        _fail("data.seq_len", d.seq_len,
              f"exceeds config.model.max_len={m.max_len} (the positional table): raise max_len or lower seq_len")
    if d.tokenizer == "sentencepiece" and d.vocab_size < 300:
        _fail("data.vocab_size", d.vocab_size, "sentencepiece needs at least 300 (byte fallback uses 256)")
    if d.tokenizer == "sentencepiece" and d.vocab_size >= 2**31:
        _fail("data.vocab_size", d.vocab_size, "too large")
    if t.batch_size % t.grad_accum_steps:
        _fail("train.batch_size", t.batch_size,
              f"must be divisible by config.train.grad_accum_steps={t.grad_accum_steps}")
    if o.schedule == "wsd" and not 0.0 < o.decay_fraction <= 1.0:
        _fail("optim.decay_fraction", o.decay_fraction, "must be in (0, 1]")
    _check_dataset(d)
    _check_mesh(cfg, num_devices)


def _check_dataset(d) -> None:
    spec = d.dataset
    if spec == "stdlib":
        return
    if spec.startswith("tfds:"):
        if not spec[5:]:
            _fail("data.dataset", spec, "name a tfds dataset, e.g. tfds:lm1b or tfds:wikipedia/20230601.en")
        return
    if spec.startswith("text:"):
        files = [f for f in glob.glob(os.path.expanduser(spec[5:]), recursive=True) if os.path.isfile(f)]
        if not files:
            _fail("data.dataset", spec, "the glob matches no files: check the path (quote it in the shell)")
        if all(os.path.getsize(f) == 0 for f in files):
            _fail("data.dataset", spec, f"all {len(files)} matched files are empty: the corpus is empty")
        return
    _fail("data.dataset", spec, "must be stdlib, tfds:NAME[/CONFIG] or text:GLOB")


def mesh_shape(mesh: MeshConfig | Any, num_devices: int) -> tuple[int, int, int]:
    """Axis sizes (data, fsdp, tensor) with the one -1 axis filled in."""
    sizes = [mesh.data, mesh.fsdp, mesh.tensor]
    names = ("data", "fsdp", "tensor")
    if sum(s == -1 for s in sizes) > 1:
        raise ConfigError("config.mesh: at most one of data, fsdp, tensor may be -1 (the rest)")
    for name, s in zip(names, sizes):
        if s == 0 or s < -1:
            _fail(f"mesh.{name}", s, "must be a positive axis size or -1 (the devices left over)")
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


def _check_mesh(cfg, num_devices: int | None) -> None:
    if num_devices is None:
        return
    data, fsdp, tensor = mesh_shape(cfg.mesh, num_devices)
    t, m = cfg.train, cfg.model
    shards = data * fsdp
    micro = t.batch_size // t.grad_accum_steps
    if micro % shards:
        _fail("train.batch_size", t.batch_size,
              f"the per-update micro-batch {micro} must be divisible by mesh data*fsdp={shards} devices")
    kv = m.num_kv_heads or m.num_heads
    if kv % tensor or m.num_heads % tensor:
        _fail("mesh.tensor", tensor, f"must divide num_heads={m.num_heads} and num_kv_heads={kv}")
    if m.mlp_dim % tensor:
        _fail("mesh.tensor", tensor, f"must divide config.model.mlp_dim={m.mlp_dim}")
    if m.d_model % fsdp:
        _fail("mesh.fsdp", fsdp, f"must divide config.model.d_model={m.d_model}")


def resolve(cfg: ml_collections.ConfigDict, num_devices: int | None = None) -> RunConfig:
    """Validate, then freeze. The model group stays a ConfigDict until the vocabulary is known."""
    validate(cfg, num_devices)
    groups = {name: cls(**{f.name: cfg[name][f.name] for f in dataclasses.fields(cls)})
              for name, cls in _FIELDS.items()}
    model = ml_collections.FrozenConfigDict(cfg.model)
    return RunConfig(model=model, **groups)


# What a checkpoint and its token cache depend on: changing these under an existing workdir
# would silently continue a different experiment. Steps, eval cadence, mesh and dtype may change.
_RESUME_KEYS = ("model", "data", "train.seed", "train.batch_size")


def check_resumable(saved: dict, current: dict, workdir: str) -> None:
    """Raise ConfigError when `current` cannot continue the run recorded in `saved`."""
    for key in _RESUME_KEYS:
        group, _, leaf = key.partition(".")
        old, new = saved.get(group, {}), current.get(group, {})
        pairs = [(leaf, old.get(leaf), new.get(leaf))] if leaf else [
            (k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))]
        for name, a, b in pairs:
            if a != b:
                raise ConfigError(
                    f"config.{group}.{name}={b!r} but the run in {workdir} used {a!r}: "
                    "pass the same value to resume, or a new --workdir to start afresh")
