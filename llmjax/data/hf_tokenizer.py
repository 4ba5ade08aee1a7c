"""A Hugging Face tokenizer directory as an llmjax Tokenizer (kind "hf"), read offline.

The directory's tokenizer, first found wins: tokenizer.json (the tokenizers library's own
serialisation, used as it is), vocab.json + merges.txt (GPT-2 byte-level BPE), vocab.txt (BERT
WordPiece) or tokenizer.model (Llama-style sentencepiece); tokenizer_config.json and
special_tokens_map.json name the special tokens and options. The ids are the checkpoint's own,
so vocab_size is the number of ids the tokenizer can produce (base vocabulary + added tokens:
50257 for GPT-2, 30522 for bert-base, 32000 for Llama 2), the model's embedding rows.

encode_batch equals transformers' `tok(text, add_special_tokens=False)["input_ids"]`: no
[CLS]/[SEP]/BOS (llmjax's pipelines add EOS or [CLS]/[SEP] themselves), while special-token
strings inside the text ("<|endoftext|>") map to their ids, as in transformers. decode skips
the specials ([UNK] included), as transformers' `decode(ids, skip_special_tokens=True)`.

EOS is eos_token (GPT-2's <|endoftext|>, Llama's </s>), else sep_token (BERT's [SEP]). Each of
SPECIALS is the tokenizer's own token when it has one, else an id it does have, so no id past
the model's vocabulary appears: pad -> eos, unk -> eos, cls -> bos or eos, sep -> eos,
mask -> unk or eos.

Saved by llmjax, the HF files go to the subdirectory hf/ (llmjax's own spec is also named
tokenizer.json) and the spec records their sha1s, checked on load.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from llmjax.data.atomic import atomic_write
from llmjax.data.hf_backends import SentencePieceBackend, TokenizersBackend
from llmjax.data.tokenizers import SPEC_FILE, Tokenizer

SOURCES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("vocab.txt",), ("tokenizer.model",))
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
HF_SUBDIR = "hf"
_TOKEN_KEYS = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
_DEFAULT_TOKENS = {  # transformers' defaults for the class each source implies
    "vocab.json": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"},
    "vocab.txt": {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]",
                  "mask": "[MASK]"},
    "tokenizer.model": {"unk": "<unk>", "bos": "<s>", "eos": "</s>"},
    "tokenizer.json": {},
}


class HFTokenizer(Tokenizer):
    """The tokenizer of a Hugging Face checkpoint, with the checkpoint's ids."""

    kind = "hf"

    def __init__(self, directory: str, source: Sequence[str], configs: Sequence[str],
                 model_vocab: int = 0):
        """model_vocab: the checkpoint's embedding rows when it has more than the tokenizer has
        ids (a padded vocabulary); vocab_size is then that, and the extra ids never occur."""
        self.source, self.configs, self.model_vocab = tuple(source), tuple(configs), int(model_vocab)
        self.files = {n: _read(directory, n) for n in (*self.source, *self.configs)}
        config = _config(directory, self.files)
        self.backend = _backend(directory, self.source[0], config)
        tokens = _DEFAULT_TOKENS[self.source[0]] | {
            k: v for k in _TOKEN_KEYS if (v := _content(config.get(f"{k}_token"))) is not None}
        ids = {}
        for key, content in tokens.items():
            ids[key] = self.backend.token_id(content)
            if ids[key] is None:
                raise ValueError(f"{directory}: {key}_token {content!r} is not in the vocabulary: "
                                 "fix tokenizer_config.json / special_tokens_map.json")
        eos = ids.get("eos", ids.get("sep"))
        if eos is None:
            raise ValueError(f"{directory}: no eos_token or sep_token: add \"eos_token\" to "
                             "tokenizer_config.json")
        self._eos = eos
        self._specials = {"pad": ids.get("pad", eos), "unk": ids.get("unk", eos),
                          "cls": ids.get("cls", ids.get("bos", eos)), "sep": ids.get("sep", eos),
                          "mask": ids.get("mask", ids.get("unk", eos))}

    @classmethod
    def from_dir(cls, path: str, model_vocab: int = 0) -> HFTokenizer:
        """The tokenizer in a Hugging Face directory (a checkpoint or a save_pretrained one);
        model_vocab as for the constructor."""
        source = next((s for s in SOURCES
                       if all(os.path.isfile(os.path.join(path, n)) for n in s)), None)
        if source is None:
            raise ValueError(f"no Hugging Face tokenizer in {path}: expected tokenizer.json, "
                             "vocab.json + merges.txt, vocab.txt or tokenizer.model")
        configs = [n for n in CONFIG_FILES if os.path.isfile(os.path.join(path, n))]
        return cls(path, source, configs, model_vocab)

    @property
    def name(self) -> str:
        return f"hf ({' + '.join(self.source)}, {self.vocab_size})"

    @property
    def vocab_size(self) -> int:
        return max(self.backend.vocab_size, self.model_vocab)

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def special_ids(self) -> dict[str, int]:
        return dict(self._specials)

    def _control_ids(self) -> list[int]:
        return sorted(self.backend.special)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.array(ids, np.int32) for ids in self.backend.encode(texts)]

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Ids as encode_batch and character spans as the backend gives them (see there)."""
        return [(np.array(ids, np.int32), np.array(spans, np.int32).reshape(-1, 2))
                for ids, spans in self.backend.encode_with_offsets(texts)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        skip = {self._eos, *self._specials.values()}
        own = self.backend.vocab_size  # ids past it (a padded model vocabulary) render as nothing
        return self.backend.decode([i for i in self._valid(ids) if i not in skip and i < own])

    @functools.cached_property
    def _piece_bytes(self) -> list[bytes]:
        out = self.backend.piece_bytes() + [b""] * (self.vocab_size - self.backend.vocab_size)
        for i in (self._eos, *self._specials.values()):
            out[i] = b""
        return out

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes of each id's text (see the backends for WordPiece's and sentencepiece's
        approximations around spaces; BERT's lowercasing and accent stripping also change the
        bytes a piece stands for)."""
        return np.array([len(b) for b in self._piece_bytes], np.int32)

    def pieces(self) -> list[str]:
        """Each id's text; a byte-level piece holding part of a character renders as U+FFFD."""
        return [b.decode("utf-8", "replace") for b in self._piece_bytes]

    def _spec(self) -> dict:
        return {"kind": "hf", "source": list(self.source), "configs": list(self.configs),
                "files": {n: hashlib.sha1(data).hexdigest() for n, data in self.files.items()},
                "model_vocab": self.model_vocab}

    def save(self, directory: str) -> None:
        """The HF files under directory/hf/, then llmjax's spec (it marks the save complete)."""
        os.makedirs(os.path.join(directory, HF_SUBDIR), exist_ok=True)
        for n, data in self.files.items():
            atomic_write(os.path.join(directory, HF_SUBDIR, n), lambda f, d=data: f.write(d))
        super().save(directory)


def load_hf(directory: str, spec: dict) -> HFTokenizer:
    """The tokenizer `HFTokenizer.save` wrote to directory, its files checked against spec."""
    files = os.path.join(directory, HF_SUBDIR)
    try:
        recorded, source, configs = dict(spec["files"]), spec["source"], spec["configs"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory}/{SPEC_FILE} is damaged (bad or missing {e}): save the "
                         "tokenizer again") from None
    for n, sha1 in recorded.items():
        if hashlib.sha1(_read(files, n)).hexdigest() != sha1:
            raise ValueError(f"{files}/{n} does not match {SPEC_FILE} (the tokenizer was "
                             "modified): restore it, or save the tokenizer again")
    return HFTokenizer(files, source, configs, spec.get("model_vocab", 0))


def _read(directory: str, name: str) -> bytes:
    try:
        with open(os.path.join(directory, name), "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read {directory}/{name} ({e.strerror}): restore the "
                         "tokenizer files") from None


def _config(directory: str, files: dict[str, bytes]) -> dict:
    """tokenizer_config.json over special_tokens_map.json (the config wins where both say)."""
    out = {}
    for name in reversed(CONFIG_FILES):
        if name in files:
            data = _json(directory, name, files[name])
            out |= {k: v for k, v in data.items() if v is not None}
    return out


def _json(directory: str, name: str, data: bytes) -> dict:
    try:
        out = json.loads(data)
    except ValueError as e:
        raise ValueError(f"{directory}/{name} is damaged ({e}): restore it") from None
    if not isinstance(out, dict):
        raise ValueError(f"{directory}/{name} is damaged (not a JSON object): restore it")
    return out


def _content(token) -> str | None:
    """A special token as the configs write it: a string or an AddedToken dict."""
    return token.get("content") if isinstance(token, dict) else token


def _added_tokens(config: dict) -> dict[int, dict]:
    """tokenizer_config.json's added_tokens_decoder: id -> AddedToken fields."""
    return {int(i): t for i, t in config.get("added_tokens_decoder", {}).items()}


def _backend(directory: str, source: str, config: dict):
    def path(name: str) -> str:
        return os.path.join(directory, name)

    if source == "tokenizer.model":
        cls = config.get("tokenizer_class") or "LlamaTokenizer"
        if not cls.startswith("Llama"):
            raise ValueError(f"{path(source)} belongs to a {cls}: only Llama-style sentencepiece "
                             "is read; save the tokenizer with transformers to get a "
                             "tokenizer.json")
        prepend = ("never" if config.get("add_prefix_space") is False
                   else "always" if config.get("legacy") else "first")
        added = {i: (t["content"], bool(t.get("special"))) for i, t in _added_tokens(config).items()}
        return _guarded(path(source), lambda: SentencePieceBackend(
            _read(directory, source), prepend, added))
    cleanup = bool(config.get("clean_up_tokenization_spaces"))
    return TokenizersBackend(_guarded(path(source), lambda: _tokenizer(directory, source, config)),
                             cleanup)


def _tokenizer(directory: str, source: str, config: dict):
    """A `tokenizers.Tokenizer` as transformers' GPT2Tokenizer / BertTokenizer would build it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    if source == "tokenizer.json":
        return Tokenizer.from_file(os.path.join(directory, source))
    if source == "vocab.json":
        tok = Tokenizer(models.BPE.from_file(
            os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, dropout=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=bool(config.get("add_prefix_space", False)))
        tok.decoder = decoders.ByteLevel()
    else:  # vocab.txt
        unk = _content(config.get("unk_token")) or "[UNK]"
        tok = Tokenizer(models.WordPiece.from_file(os.path.join(directory, source), unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
    for i, t in sorted(_added_tokens(config).items()):
        fields = {k: t[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special")
                  if k in t}
        tok.add_tokens([AddedToken(t["content"], **fields)])
        if tok.token_to_id(t["content"]) != i:
            raise ValueError(f"tokenizer_config.json adds {t['content']!r} as id {i} but the "
                             f"vocabulary gives it {tok.token_to_id(t['content'])}: restore the "
                             "checkpoint's tokenizer files")
    named = {_content(config.get(f"{k}_token")) or d for k, d in _DEFAULT_TOKENS[source].items()}
    named |= {c for k in _TOKEN_KEYS if (c := _content(config.get(f"{k}_token")))}
    tok.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in sorted(named)])
    return tok


def _guarded(path: str, build):
    """build(), with a library's failure on a damaged file as a one-line ValueError."""
    try:
        return build()
    except ValueError:
        raise
    except Exception as e:  # tokenizers and protobuf raise plain Exception subclasses
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path} is damaged ({msg}): restore it from the checkpoint") from None
