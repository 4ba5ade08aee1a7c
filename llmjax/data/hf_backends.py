"""The two engines behind HFTokenizer, each tokenizing text exactly as transformers does.

`TokenizersBackend` wraps a `tokenizers.Tokenizer` (read from tokenizer.json, or built from
GPT-2's vocab.json + merges.txt or BERT's vocab.txt the way transformers' GPT2Tokenizer and
BertTokenizer build theirs). `SentencePieceBackend` runs a Llama-style tokenizer.model through
the sentencepiece library with transformers' LlamaTokenizer rules on top: a prefix space is
added unless the text already starts with one (transformers' Metaspace, which differs from
sentencepiece's own dummy prefix on text starting with a space), and special-token strings in
the text ("</s>") are split out to their ids first, as transformers' added tokens are.

Both give ids without the automatic specials (= transformers' `add_special_tokens=False`),
decode with specials skipped (= `skip_special_tokens=True`) and the bytes each id stands for.
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence

from llmjax.data.tokenizers import char_offsets

_SPACE = "\u2581"  # sentencepiece's whitespace marker
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class TokenizersBackend:
    """A `tokenizers.Tokenizer`; `cleanup` applies transformers' clean_up_tokenization to
    WordPiece output (transformers skips it for BPE)."""

    def __init__(self, tok, cleanup: bool):
        self.tok = tok
        spec = json.loads(tok.to_str())
        self._model = spec["model"]
        self._pipeline = [spec.get("pre_tokenizer"), spec.get("decoder"), spec.get("normalizer")]
        self._cleanup = cleanup and self._model.get("type") == "WordPiece"
        vocab = tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        self.special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}

    def token_id(self, content: str) -> int | None:
        return self.tok.token_to_id(content)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list]]:
        """Ids and the library's own character spans: byte-level BPE's hold the space before a
        word unless a tokenizer.json post-processor trims offsets; BERT's never hold a space."""
        return [(e.ids, e.offsets)
                for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        text = self.tok.decode(ids, skip_special_tokens=True)
        return _clean_up_tokenization(text) if self._cleanup else text

    def piece_bytes(self) -> list[bytes]:
        """Bytes of each id's text: byte-level pieces map back through GPT-2's byte alphabet,
        WordPiece drops its "##" continuation prefix (a word's first piece counts only its own
        text, not the space before it), "▁" is a space and "<0xNN>" one byte under
        sentencepiece-style decoders; specials are empty."""
        added = self.tok.get_added_tokens_decoder()
        byte_level = _has_type(self._pipeline, "ByteLevel")
        # Llama's legacy tokenizer.json spells "▁" in Replace steps rather than a Metaspace
        metaspace = _has_type(self._pipeline, "Metaspace") or _SPACE in json.dumps(self._pipeline)
        byte_fallback = self._model.get("byte_fallback") or _has_type(self._pipeline, "ByteFallback")
        prefix = self._model.get("continuing_subword_prefix") or ""
        table = _byte_decoder() if byte_level else {}
        out = []
        for i in range(self.vocab_size):
            token = self.tok.id_to_token(i)
            if token is None or i in self.special:
                out.append(b"")
            elif i in added:
                out.append(token.encode())
            elif byte_level and all(c in table for c in token):
                out.append(bytes(table[c] for c in token))
            elif byte_fallback and _BYTE_PIECE.fullmatch(token):
                out.append(bytes([int(token[3:5], 16)]))
            else:
                if prefix and token.startswith(prefix) and self._model.get("type") == "WordPiece":
                    token = token[len(prefix):]
                out.append((token.replace(_SPACE, " ") if metaspace else token).encode())
        return out


class SentencePieceBackend:
    """A Llama-style sentencepiece BPE model, tokenizing as transformers' LlamaTokenizer.

    prepend: "first" (transformers' default: a space before the text unless it starts with
    one), "always" (legacy=True: also after each special token in the text) or "never"
    (add_prefix_space=False). added: tokenizer_config's added tokens, id -> (content, special).
    """

    def __init__(self, proto: bytes, prepend: str, added: dict[int, tuple[str, bool]]):
        import sentencepiece as spm
        try:
            from sentencepiece import sentencepiece_model_pb2
        except ImportError:
            raise ValueError("reading tokenizer.model needs protobuf: pip install protobuf") from None
        model = sentencepiece_model_pb2.ModelProto()
        model.ParseFromString(proto)
        _check_llama_style(model)
        model.normalizer_spec.add_dummy_prefix = False  # the prefix space is added here instead
        self.sp = sp = spm.SentencePieceProcessor(model_proto=model.SerializeToString())
        self.prepend = prepend
        n = sp.get_piece_size()
        for i, (content, _) in added.items():
            if i < n and sp.id_to_piece(i) != content:
                raise ValueError(f"tokenizer_config.json adds {content!r} as id {i} but "
                                 f"tokenizer.model has {sp.id_to_piece(i)!r} there: restore the "
                                 "checkpoint's tokenizer files")
        self.added = {i: a for i, a in added.items() if i >= n}
        self.vocab_size = max([n - 1, *self.added]) + 1
        controls = {i for i in range(n) if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)}
        self.special = controls | {i for i, (_, special) in added.items() if special}
        # transformers splits the text at these (its added tokens) before tokenizing the rest
        kinds = (model.SentencePiece.UNKNOWN, model.SentencePiece.CONTROL,
                 model.SentencePiece.USER_DEFINED)
        literal = {p.piece: i for i, p in enumerate(model.pieces) if p.type in kinds}
        self._literal = literal | {c: i for i, (c, _) in added.items()}
        self._split = re.compile("|".join(map(re.escape, sorted(self._literal, key=len,
                                                                reverse=True))))

    def token_id(self, content: str) -> int | None:
        i = self.sp.piece_to_id(content)
        if self.sp.id_to_piece(i) == content:
            return i
        return next((j for j, (c, _) in self.added.items() if c == content), None)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [ids for ids, _ in self._encode_segments(texts)]

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list]]:
        """Ids and character spans: a piece's span is the text it stands for, a special
        token's the string it matched; the prefix space added before a text is in no span."""
        lengths = self._piece_lengths
        out = []
        for text, (ids, segs) in zip(texts, self._encode_segments(texts)):
            spans = []
            for seg, start, end, seg_ids in segs:
                if not isinstance(seg, str):
                    spans.append((start, end))
                    continue
                # a "▁" in the text stands for a space here, so spans are taken on seg's bytes
                extra = len(seg) - (end - start)  # the added prefix space, 0 or 1
                offsets = char_offsets(seg.replace(_SPACE, " "), [lengths[i] for i in seg_ids])
                spans += [(start + max(a - extra, 0), start + max(b - extra, 0))
                          for a, b in offsets.tolist()]
            out.append((ids, spans))
        return out

    def _encode_segments(self, texts: Sequence[str]) -> list[tuple[list[int], list]]:
        """Per text: its ids and segments (segment, start, end, ids), a segment a text to
        encode or a literal's id, start:end where it is in the text."""
        plan = [self._segments(t) for t in texts]  # per text: literal ids and texts to encode
        pieces = [p for segs in plan for p, _, _ in segs if isinstance(p, str)]
        encoded = iter(self.sp.encode(pieces))
        out = []
        for segs in plan:
            done = [(p, a, b, next(encoded) if isinstance(p, str) else [p]) for p, a, b in segs]
            out.append(([x for *_, ids in done for x in ids], done))
        return out

    def _segments(self, text: str) -> list[tuple[str | int, int, int]]:
        out: list[tuple[str | int, int, int]] = []
        start = 0
        for m in (self._split.finditer(text) if self._literal else ()):
            self._add_text(out, text, start, m.start())
            out.append((self._literal[m.group()], m.start(), m.end()))
            start = m.end()
        self._add_text(out, text, start, len(text))
        return out

    def _add_text(self, out: list, full: str, start: int, end: int) -> None:
        text = full[start:end]
        if not text:
            return
        prefix = self.prepend == "always" or (self.prepend == "first" and start == 0)
        out.append((" " + text if prefix and not text.startswith((" ", _SPACE)) else text,
                    start, end))

    def decode(self, ids: list[int]) -> str:
        parts, run = [], []
        for i in ids:
            if i in self.special:
                continue
            if i in self.added:
                parts += [self.sp.decode(run), self.added[i][0]]
                run = []
            else:
                run.append(i)
        text = "".join(parts) + self.sp.decode(run)
        return text[1:] if self.prepend != "never" and text.startswith(" ") else text

    @functools.cached_property
    def _piece_lengths(self) -> list[int]:
        """len(piece_bytes()) of each id, walked once for every encode_with_offsets."""
        return [len(b) for b in self.piece_bytes()]

    def piece_bytes(self) -> list[bytes]:
        """Bytes of each id's text; "▁" counts as a space byte, so the prefix space added
        before a text counts one byte the text does not have."""
        sp, out = self.sp, []
        for i in range(sp.get_piece_size()):
            if i in self.special:
                out.append(b"")
            elif sp.is_byte(i):
                out.append(bytes([int(sp.id_to_piece(i)[3:5], 16)]))
            else:
                out.append(sp.id_to_piece(i).replace(_SPACE, " ").encode())
        for i in range(sp.get_piece_size(), self.vocab_size):
            content, special = self.added.get(i, ("", True))
            out.append(b"" if special else content.encode())
        return out


def _check_llama_style(model) -> None:
    """transformers' LlamaTokenizer turns tokenizer.model into BPE merges with no normaliser,
    so only such models tokenize the same here and there."""
    norm, trainer = model.normalizer_spec, model.trainer_spec
    fix = "save the tokenizer with transformers (tok.save_pretrained) to get a tokenizer.json"
    if trainer.model_type != trainer.BPE:
        raise ValueError(f"tokenizer.model is a {trainer.ModelType.Name(trainer.model_type)} "
                         f"model, not Llama-style BPE: {fix}")
    if norm.name not in ("identity", "") or norm.remove_extra_whitespaces:
        raise ValueError(f"tokenizer.model normalizes text ({norm.name}, remove_extra_whitespaces="
                         f"{norm.remove_extra_whitespaces}), which transformers' LlamaTokenizer "
                         f"does not: {fix}")


def _has_type(node, name: str) -> bool:
    """Whether a tokenizer.json pipeline component (nested dicts/lists) has a part of `name`."""
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, name) for v in node)
    return False


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the other 68 bytes
    for chr(256 + k), in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in keep]
    return {chr(b): b for b in keep} | {chr(256 + k): b for k, b in enumerate(shifted)}


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization (spaces before punctuation and contractions)."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                     (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"),
                     (" 're", "'re")):
        text = text.replace(old, new)
    return text
