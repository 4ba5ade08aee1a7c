"""Tokenizers behind one small interface: byte, char and sentencepiece (BPE or unigram).

Every tokenizer has an EOS id (appended after each document by the pipeline) and can say how
many UTF-8 bytes each token stands for (`byte_lengths`), so losses can be reported in
bits per byte and compared across tokenizers. All three round-trip text exactly:
sentencepiece is configured as a lossless code tokenizer (identity normalisation, no dummy
prefix, whitespace kept, "\\n" a symbol of its own, byte fallback for anything else).

Every tokenizer also has the five BERT specials [PAD] [UNK] [CLS] [SEP] [MASK]. Their ids are
appended after the existing vocabulary (no existing id moves, so token caches and GPT
checkpoints keep their meaning), they are derived from the vocabulary rather than stored, and
ordinary text can never encode to them: in sentencepiece they are not user-defined symbols
(which a literal "[CLS]" in the text would produce) but ids past the model's own pieces.

`encode_with_offsets` gives each token's span [start, end) in characters (str indices) of
the text, for label alignment and span decoding. A span is exactly the text the token stands
for: a sentencepiece piece "▁x" covers the space before x (this sentencepiece never invents
a space), so the spans of a text's tokens, concatenated, are the text. A byte-level token that
holds part of a multi-byte character gets that whole character's span (several tokens then
share it); a token that stands for no text would get [end, end) of the token before it.

A tokenizer lives in a directory as `tokenizer.json` (+ `tokenizer.model` for sentencepiece);
files are written atomically so a crash never leaves a half-written tokenizer behind.
"""
from __future__ import annotations

import abc
import functools
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from llmjax.config import ConfigError, DataConfig
from llmjax.data.atomic import atomic_write

SPEC_FILE = "tokenizer.json"
SPM_FILE = "tokenizer.model"
_SPACE = "\u2581"  # sentencepiece's whitespace marker
_SPM_TRAIN_THREADS = 4  # fixed: unigram training results depend on the thread count
_SPM_SENTENCE_CHARS = 4096  # training "sentences" are runs of whole lines up to this length
_SPM_ENCODE_CHUNK = 1 << 16  # long documents are cut after a newline so threads share them
SPECIALS = ("pad", "unk", "cls", "sep", "mask")


class Tokenizer(abc.ABC):
    """What the pipeline, trainer and sampler need from a tokenizer."""

    kind: str = ""

    @property
    @abc.abstractmethod
    def name(self) -> str: ...

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def eos_id(self) -> int: ...

    @abc.abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """int32 ids of each text (no EOS added)."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of ids; EOS, [PAD] [CLS] [SEP] [MASK] and ids outside the vocabulary (model
        padding) render as nothing ([UNK] keeps the rendering it had before specials existed)."""

    @abc.abstractmethod
    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each id stands for, shape (vocab_size,); 0 for EOS, specials, controls."""

    @abc.abstractmethod
    def _spec(self) -> dict:
        """JSON-able description that `load_tokenizer` rebuilds the tokenizer from."""

    @property
    @abc.abstractmethod
    def special_ids(self) -> dict[str, int]:
        """Ids of [PAD] [UNK] [CLS] [SEP] [MASK] under the keys of SPECIALS."""

    @abc.abstractmethod
    def pieces(self) -> list[str]:
        """The text each id stands for; "" for EOS, the specials and controls."""

    def _control_ids(self) -> list[int]:
        """Ids besides EOS and the specials that never stand for text (sentencepiece's)."""
        return []

    @property
    def pad_id(self) -> int:
        return self.special_ids["pad"]

    @property
    def unk_id(self) -> int:
        return self.special_ids["unk"]

    @property
    def cls_id(self) -> int:
        return self.special_ids["cls"]

    @property
    def sep_id(self) -> int:
        return self.special_ids["sep"]

    @property
    def mask_id(self) -> int:
        return self.special_ids["mask"]

    def special_mask(self) -> np.ndarray:
        """bool (vocab_size,): ids never to be masked, predicted, or used as random replacements.

        True for EOS, the five specials and sentencepiece's control/unused ids.
        """
        out = np.zeros(self.vocab_size, bool)
        out[[self.eos_id, *self.special_ids.values(), *self._control_ids()]] = True
        return out

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0].tolist()

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: (ids int32 (N,) = encode_batch's, offsets_Nx2 int32 character spans).

        Here from byte_lengths, which is exact for tokenizers whose tokens' bytes are the
        text's UTF-8 bytes in order (byte, sentencepiece); the others override it.
        """
        lengths = self._byte_lengths
        return [(ids, char_offsets(text, lengths[ids]))
                for text, ids in zip(texts, self.encode_batch(texts))]

    @functools.cached_property
    def _byte_lengths(self) -> np.ndarray:
        """byte_lengths, walked once (a sentencepiece vocabulary in Python) for every encode."""
        return self.byte_lengths()

    def fingerprint(self) -> str:
        """Changes exactly when the id assignment changes (used to key the token cache)."""
        return hashlib.sha1(json.dumps(self._spec(), sort_keys=True).encode()).hexdigest()[:16]

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        # special_ids are recorded for readers and checked on load; files without them (written
        # before specials existed) load with the same ids, since the ids are derived.
        spec = dict(self._spec(), kind=self.kind, vocab_size=self.vocab_size, eos_id=self.eos_id,
                    special_ids=self.special_ids)
        data = json.dumps(spec, indent=1).encode()
        atomic_write(os.path.join(directory, SPEC_FILE), lambda f: f.write(data))

    def _valid(self, ids) -> list[int]:
        v = self.vocab_size
        return [int(i) for i in ids if 0 <= int(i) < v]


class ByteTokenizer(Tokenizer):
    """ids 0..255 are UTF-8 bytes, 256 is EOS, then [PAD] [UNK] [CLS] [SEP] [MASK] (257..261).

    Needs no training; lossless for any str.
    """

    kind = "byte"
    name = "byte"
    vocab_size = 262
    eos_id = 256

    @property
    def special_ids(self) -> dict[str, int]:
        return {"pad": 257, "unk": 258, "cls": 259, "sep": 260, "mask": 261}

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8", "surrogatepass"), np.uint8).astype(np.int32)
                for t in texts]

    def decode(self, ids) -> str:
        data = bytes(i for i in self._valid(ids) if i < 256)
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # a model's sample need not be valid UTF-8
            return data.decode("utf-8", "replace")

    def byte_lengths(self) -> np.ndarray:
        return np.array([1] * 256 + [0] * 6, np.int32)

    def pieces(self) -> list[str]:
        return [bytes([b]).decode("utf-8", "replace") for b in range(256)] + [""] * 6

    def _spec(self) -> dict:
        return {"kind": "byte"}


class CharTokenizer(Tokenizer):
    """One id per character seen in training (sorted), then EOS, UNK (for unseen characters),
    PAD, CLS, SEP, MASK."""

    kind = "char"

    def __init__(self, chars: Sequence[str]):
        self.chars = sorted(set(chars))
        self._codes = np.array([ord(c) for c in self.chars], np.uint32)

    @classmethod
    def train(cls, texts: Sequence[str]) -> CharTokenizer:
        return cls(set().union(*map(set, texts)))

    @property
    def name(self) -> str:
        return f"char ({len(self.chars)} chars)"

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 6

    @property
    def eos_id(self) -> int:
        return len(self.chars)

    @property
    def special_ids(self) -> dict[str, int]:
        n = len(self.chars)
        return {"pad": n + 2, "unk": n + 1, "cls": n + 3, "sep": n + 4, "mask": n + 5}

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for t in texts:
            codes = np.frombuffer(t.encode("utf-32-le", "surrogatepass"), np.uint32)
            ids = np.minimum(np.searchsorted(self._codes, codes), max(len(self.chars) - 1, 0))
            known = self._codes[ids] == codes if len(self.chars) else np.zeros(len(codes), bool)
            out.append(np.where(known, ids, self.unk_id).astype(np.int32))
        return out

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One token per character (an unseen one is [UNK] over its own character)."""
        out = []
        for ids in self.encode_batch(texts):
            starts_N = np.arange(len(ids), dtype=np.int32)
            out.append((ids, np.stack([starts_N, starts_N + 1], axis=1)))
        return out

    def decode(self, ids) -> str:
        n = len(self.chars)
        return "".join(self.chars[i] if i < n else "\ufffd" if i == self.unk_id else ""
                       for i in self._valid(ids))

    def byte_lengths(self) -> np.ndarray:
        # UNK counts 1: it replaced a character of at least one byte.
        return np.array([len(c.encode("utf-8", "surrogatepass")) for c in self.chars]
                        + [0, 1, 0, 0, 0, 0], np.int32)

    def pieces(self) -> list[str]:
        return list(self.chars) + [""] * 6

    def _spec(self) -> dict:
        return {"kind": "char", "chars": self.chars}


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model set up for exact round trips of source code and prose.

    Ids: sentencepiece's own pieces (its <unk>, id 0, is [UNK]), then [PAD] [CLS] [SEP] [MASK]
    at get_piece_size() + 0..3. Those four are not sentencepiece user-defined symbols, so no
    text (not even a literal "[CLS]") encodes to them.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, model_type: str, requested_vocab_size: int):
        import sentencepiece as spm
        self.model_proto = model_proto
        self.model_type = model_type
        self.requested_vocab_size = requested_vocab_size  # may exceed what small data allows
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._space_bytes = [self.sp.piece_to_id(f"<0x{b:02X}>") for b in _SPACE.encode()]

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, model_type: str = "bpe",
              max_chars: int = 5_000_000) -> SentencePieceTokenizer:
        """Train on at most max_chars characters of texts (taken in order)."""
        import sentencepiece as spm
        if hasattr(spm, "set_random_generator_seed"):
            spm.set_random_generator_seed(0)
        sentences = _drop_rare_chars(list(_sentences(texts, max_chars)), vocab_size)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model,
                model_type=model_type, vocab_size=vocab_size, hard_vocab_limit=False,
                byte_fallback=True, character_coverage=0.9995,
                normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
                split_digits=True, user_defined_symbols=["\n"], max_sentence_length=1 << 16,
                unk_id=0, eos_id=1, bos_id=-1, pad_id=-1,
                num_threads=_SPM_TRAIN_THREADS, minloglevel=2)
        except RuntimeError as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else "failed"
            raise ValueError(f"sentencepiece training failed ({msg}): raise "
                             "config.data.vocab_size or train on more text") from None
        return cls(model.getvalue(), model_type, vocab_size)

    @property
    def name(self) -> str:
        return f"sentencepiece ({self.model_type}, {self.vocab_size})"

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + 4

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def special_ids(self) -> dict[str, int]:
        n = self.sp.get_piece_size()
        return {"pad": n, "unk": self.sp.unk_id(), "cls": n + 1, "sep": n + 2, "mask": n + 3}

    def _control_ids(self) -> list[int]:
        sp = self.sp
        return [i for i in range(sp.get_piece_size())
                if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)]

    def pieces(self) -> list[str]:
        sp, out = self.sp, []
        for i in range(sp.get_piece_size()):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                out.append("")
            elif sp.is_byte(i):  # "<0xC3>"
                out.append(bytes([int(sp.id_to_piece(i)[3:5], 16)]).decode("utf-8", "replace"))
            else:
                out.append(sp.id_to_piece(i).replace(_SPACE, " "))
        return out + [""] * 4

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None
                     ) -> list[np.ndarray]:
        # Cut long texts after newlines so threads share them: "\n" is its own symbol, so the
        # cut never changes the ids. A literal U+2581 would decode as a space, so texts holding
        # it are split there and it is spelled in byte-fallback pieces instead.
        pieces, owner = [], []
        for i, t in enumerate(texts):
            for chunk in _chunks(t, _SPM_ENCODE_CHUNK):
                pieces.append(chunk)
                owner.append(i)
        threads = num_threads or os.cpu_count() or 1
        plain = [j for j, p in enumerate(pieces) if _SPACE not in p]
        ids: list[list[int]] = [[] for _ in pieces]
        for j, out in zip(plain, self.sp.encode([pieces[j] for j in plain], num_threads=threads)):
            ids[j] = out
        for j, p in enumerate(pieces):
            if _SPACE in p:
                parts = self.sp.encode(p.split(_SPACE))
                ids[j] = [x for k, part in enumerate(parts)
                          for x in ((self._space_bytes if k else []) + part)]
        result: list[list[int]] = [[] for _ in texts]
        for i, out in zip(owner, ids):
            result[i].extend(out)
        return [np.array(r, np.int32) for r in result]

    def decode(self, ids) -> str:
        n = self.sp.get_piece_size()
        return self.sp.decode([i for i in self._valid(ids) if i < n])

    def byte_lengths(self) -> np.ndarray:
        sp = self.sp
        out = np.zeros(self.vocab_size, np.int32)
        for i in range(sp.get_piece_size()):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                continue
            out[i] = 1 if sp.is_byte(i) else len(sp.id_to_piece(i).replace(_SPACE, " ").encode())
        return out

    def fingerprint(self) -> str:
        return hashlib.sha1(self.model_proto).hexdigest()[:16]

    def _spec(self) -> dict:
        return {"kind": "sentencepiece", "model_file": SPM_FILE, "model_type": self.model_type,
                "requested_vocab_size": self.requested_vocab_size,
                "model_sha1": hashlib.sha1(self.model_proto).hexdigest()}

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        atomic_write(os.path.join(directory, SPM_FILE), lambda f: f.write(self.model_proto))
        super().save(directory)  # the spec last: it marks the directory complete


def load_tokenizer(directory: str) -> Tokenizer:
    """The tokenizer saved in directory by `Tokenizer.save`; a one-line ValueError if damaged."""
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.exists(path):
        raise ValueError(f"no tokenizer in {directory} ({SPEC_FILE} missing): train one with "
                         "train_or_load_tokenizer or point at the run's tokenizer/ directory")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        kind = spec.get("kind")
        if kind == "sentencepiece":
            with open(os.path.join(directory, spec["model_file"]), "rb") as f:
                proto = f.read()
            model_type, requested = spec["model_type"], spec["requested_vocab_size"]
            matches = hashlib.sha1(proto).hexdigest() == spec["model_sha1"]
        chars = spec["chars"] if kind == "char" else None
        recorded = spec.get("special_ids")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        what = f"{type(e).__name__}: {e}" if not isinstance(e, KeyError) else f"no {e} in {SPEC_FILE}"
        raise ValueError(f"the tokenizer in {directory} is damaged ({what.splitlines()[0][:200]}): "
                         f"delete {directory} to retrain, or restore it") from None
    if kind == "byte":
        tok = ByteTokenizer()
    elif kind == "char":
        tok = CharTokenizer(chars)
    elif kind == "sentencepiece":
        if not matches:
            raise ValueError(f"{directory}/{spec['model_file']} does not match {SPEC_FILE} "
                             "(the tokenizer was modified): delete the directory to retrain")
        tok = SentencePieceTokenizer(proto, model_type, requested)
    elif kind == "hf":  # a Hugging Face checkpoint's tokenizer, files under directory/hf/
        from llmjax.data.hf_tokenizer import load_hf
        tok = load_hf(directory, spec)
    elif kind == "word":
        from llmjax.data.word_tokenizer import WordTokenizer
        tok = WordTokenizer(spec["words"])
    else:
        raise ValueError(f"{path}: unknown tokenizer kind {kind!r}: expected byte, char, "
                         "sentencepiece, hf or word")
    if recorded is not None and recorded != tok.special_ids:
        raise ValueError(f"{path} records special ids {recorded} but this version assigns "
                         f"{tok.special_ids}: delete {directory} to retrain, or use the llmjax "
                         "version that wrote it")
    return tok


def train_tokenizer(cfg: DataConfig, train_texts: Sequence[str]) -> Tokenizer:
    """A new tokenizer of kind cfg.tokenizer fitted to train_texts."""
    if cfg.tokenizer == "byte":
        return ByteTokenizer()
    if cfg.tokenizer == "char":
        return CharTokenizer.train(train_texts)
    if cfg.tokenizer == "sentencepiece":
        return SentencePieceTokenizer.train(train_texts, cfg.vocab_size, cfg.spm_model_type,
                                            cfg.spm_train_chars)
    if cfg.tokenizer == "word":
        from llmjax.data.word_tokenizer import WordTokenizer
        return WordTokenizer.train(train_texts, cfg.vocab_size)
    if cfg.tokenizer == "hf":
        raise ConfigError("config.data.tokenizer='hf' is a Hugging Face checkpoint's own tokenizer, never "
                         "trained here: set config.init_from to the checkpoint's directory, or run "
                         "python -m llmjax.convert --from_hf=DIR --workdir=RUN first")
    raise ValueError(f"config.data.tokenizer={cfg.tokenizer!r}: must be sentencepiece, byte, char, hf or word")


def check_compatible(tok: Tokenizer, cfg: DataConfig, directory: str) -> None:
    """A saved tokenizer must be the kind (and size and type) the config asks for."""
    fix = f"use a fresh workdir (or delete {directory})"
    if tok.kind == "hf" and cfg.tokenizer != "hf":
        raise ValueError(f"the tokenizer in {directory} is a Hugging Face checkpoint's (the weights "
                         f"this run starts from use its ids) but config.data.tokenizer={cfg.tokenizer!r}: "
                         "set config.data.tokenizer=hf")
    if tok.kind != cfg.tokenizer:
        raise ValueError(f"the tokenizer in {directory} is {tok.kind} but "
                         f"config.data.tokenizer={cfg.tokenizer!r}: {fix}")
    if tok.kind == "word" and tok.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer in {directory} has {tok.vocab_size} words and specials but "
                         f"config.data.vocab_size={cfg.vocab_size}: {fix}")
    if isinstance(tok, SentencePieceTokenizer):
        if tok.requested_vocab_size != cfg.vocab_size:
            raise ValueError(f"the tokenizer in {directory} has vocab_size "
                             f"{tok.requested_vocab_size} but config.data.vocab_size="
                             f"{cfg.vocab_size}: {fix}")
        if tok.model_type != cfg.spm_model_type:
            raise ValueError(f"the tokenizer in {directory} is {tok.model_type} but "
                             f"config.data.spm_model_type={cfg.spm_model_type!r}: {fix}")


def has_tokenizer(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, SPEC_FILE))


def train_or_load_tokenizer(cfg: DataConfig, train_texts: Sequence[str], directory: str,
                            log: Callable[[str], None] = print) -> Tokenizer:
    """Reuse the tokenizer saved in directory (checked against cfg), else train and save one."""
    if has_tokenizer(directory):
        tok = load_tokenizer(directory)
        check_compatible(tok, cfg, directory)
        log(f"tokenizer: reusing {tok.name} from {directory}")
        return tok
    tok = train_tokenizer(cfg, train_texts)
    tok.save(directory)
    log(f"tokenizer: trained {tok.name}, saved to {directory}")
    return tok


# ---------------------------------------------------------------- helpers


def char_offsets(text: str, token_bytes_N: np.ndarray) -> np.ndarray:
    """int32 (N, 2) character spans of N consecutive tokens that stand for token_bytes_N
    UTF-8 bytes each of text, in order from its start; a token's span is that of every
    character it touches, so a byte inside a multi-byte character spans the whole character.

    A one-line ValueError when the bytes are not the text's (a tokenizer that is not lossless).
    """
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    char_ends = np.cumsum(1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000))
    token_bytes_N = np.asarray(token_bytes_N, np.int64)
    ends = np.cumsum(token_bytes_N)
    total = int(ends[-1]) if len(ends) else 0
    if total != (int(char_ends[-1]) if len(char_ends) else 0):
        raise ValueError(f"the tokens stand for {total} bytes but the text has "
                         f"{len(text.encode('utf-8', 'surrogatepass'))}: character offsets "
                         "need a tokenizer that keeps the text's bytes")
    begin_N = np.searchsorted(char_ends, ends - token_bytes_N, side="right")
    end_N = np.where(token_bytes_N > 0, np.searchsorted(char_ends, ends, side="left") + 1, begin_N)
    return np.stack([begin_N, end_N], axis=1).astype(np.int32).reshape(-1, 2)


def _chunks(text: str, size: int) -> Iterator[str]:
    """text cut into pieces of about `size` chars, each cut right after a newline."""
    start = 0
    while len(text) - start > size:
        cut = text.find("\n", start + size) + 1
        if cut == 0:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _drop_rare_chars(sentences: list[str], vocab_size: int) -> list[str]:
    """Sentences without the characters beyond the most frequent (vocab_size - 259) // 2.

    Rare characters fall back to bytes anyway; left in, a small vocabulary on text with many
    distinct characters (the stdlib's unicode tests) cannot even be trained (sentencepiece
    needs every covered character in the vocabulary and coverage may not go below 0.98).
    """
    from collections import Counter
    budget = max(1, (vocab_size - 256 - 3) // 2)  # 3: unk, eos, "\n"
    if len(set().union(*map(set, sentences))) <= budget:  # the usual case, and cheap
        return sentences
    counts = Counter()
    for s in sentences:
        counts.update(s)
    rare = {ord(c): None for c, _ in counts.most_common()[budget:]}
    return [t for t in (s.translate(rare) for s in sentences) if t]


def _sentences(texts: Sequence[str], max_chars: int) -> Iterator[str]:
    """Training sentences: runs of whole lines (newlines kept), at most max_chars in all."""
    budget = max_chars
    for text in texts:
        for chunk in _line_runs(text[:budget], _SPM_SENTENCE_CHARS):
            yield chunk
        budget -= min(len(text), budget)
        if budget <= 0:
            return


def _line_runs(text: str, size: int) -> Iterator[str]:
    buf, n = [], 0
    for line in text.splitlines(keepends=True):
        while len(line) > size:  # a very long line is cut so sentencepiece does not skip it
            yield line[:size]
            line = line[size:]
        if n + len(line) > size and buf:
            yield "".join(buf)
            buf, n = [], 0
        buf.append(line)
        n += len(line)
    if buf:
        yield "".join(buf)
