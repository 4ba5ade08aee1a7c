"""Tokenizers: exact round trips on real stdlib source, byte accounting, save/load/reuse,
the BERT specials (appended ids no text can produce) and character offsets."""
import itertools
import json
import os
import string

import numpy as np
import pytest

from llmjax.config import DataConfig
from llmjax.data import tokenizers
from llmjax.data.stdlib_corpus import iter_documents
from llmjax.data.tokenizers import (ByteTokenizer, CharTokenizer, SentencePieceTokenizer,
                                    load_tokenizer, train_or_load_tokenizer)

TRICKY = ("def f(x):\n\tif x:\t# tab\n\t\treturn 'héllo ☃ 🎉 日本語'\n    \n\n\n   trailing   \n"
          "a\u2581b \u2581\u2581 c\r\nnumbers 12345 007 3.14\x00\x7f\u200b end")


@pytest.fixture(scope="module")
def stdlib_texts():
    """Real source: ~600k chars to train on, and held-out files to check round trips on."""
    docs = [t for _, t in iter_documents() if t.strip()]
    train, total = [], 0
    for t in docs[::7]:
        train.append(t)
        total += len(t)
        if total > 600_000:
            break
    held_out = [t for t in docs[3::50]][:30]
    return train, held_out + [TRICKY]


@pytest.fixture(scope="module")
def spm_bpe(stdlib_texts):
    return SentencePieceTokenizer.train(stdlib_texts[0], 512, "bpe", 300_000)


def _check_round_trip_and_bytes(tok, texts):
    ids = tok.encode_batch(texts)
    lengths = tok.byte_lengths()
    assert lengths.shape == (tok.vocab_size,) and lengths[tok.eos_id] == 0
    for text, x in zip(texts, ids):
        assert x.dtype == np.int32 and (x >= 0).all() and (x < tok.vocab_size).all()
        assert tok.decode(x) == text
        assert int(lengths[x].sum()) == len(text.encode("utf-8"))
    assert tok.encode(texts[-1]) == ids[-1].tolist()
    assert tok.decode([tok.eos_id]) == ""


def test_byte(stdlib_texts):
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eos_id) == (262, 256)
    _check_round_trip_and_bytes(tok, stdlib_texts[1])
    assert tok.encode("é") == [0xC3, 0xA9]
    assert tok.decode(tok.encode("\ud800x")) == "\ud800x"  # lone surrogates survive too
    assert tok.decode([0xC3, 256, 300]) == "\ufffd"  # invalid UTF-8 and padding ids


def test_char():
    text = string.ascii_letters + " \n!$&',-.3:;?"  # tinyshakespeare's 65 characters
    tok = CharTokenizer.train([text[:30], text[30:]])
    assert tok.vocab_size == 71 and tok.eos_id == 65 and tok.unk_id == 66
    assert tok.chars == sorted(text)
    _check_round_trip_and_bytes(tok, [text, "Hello, World!\n"])
    ids = tok.encode("a€b")
    assert ids == [tok.chars.index("a"), 66, tok.chars.index("b")]
    assert tok.decode(ids) == "a\ufffdb"


def test_char_unicode_byte_lengths():
    tok = CharTokenizer.train(["héllo ☃ 🎉"])
    _check_round_trip_and_bytes(tok, ["🎉 hé ☃ll", "h"])


def test_sentencepiece_round_trips_real_code(spm_bpe, stdlib_texts):
    tok = spm_bpe
    assert tok.sp.get_piece_size() == 512 and tok.vocab_size == 516 and tok.eos_id == 1
    assert tok.name == "sentencepiece (bpe, 516)"
    _check_round_trip_and_bytes(tok, stdlib_texts[1])
    pieces = [tok.sp.id_to_piece(i) for i in range(tok.sp.get_piece_size())
              if not tok.sp.is_byte(i)]
    assert "\n" in pieces and "\u2581\u2581\u2581\u2581" in pieces  # newline, indentation
    assert all(len(p) == 1 for p in pieces if any(c.isdigit() for c in p))  # digits split
    held_out = "".join(stdlib_texts[1][:-1])
    chars_per_token = len(held_out) / len(tok.encode(held_out))
    assert chars_per_token > 1.5  # it does compress real code (bytes would give ~1.0)


def test_sentencepiece_unigram_and_small_corpus(stdlib_texts):
    tok = SentencePieceTokenizer.train(stdlib_texts[0], 400, "unigram", 100_000)
    assert tok.model_type == "unigram"
    _check_round_trip_and_bytes(tok, stdlib_texts[1][:5] + [TRICKY])
    tiny = SentencePieceTokenizer.train(["tiny corpus\n" * 3], 5000, "bpe", 1000)
    assert tiny.vocab_size < 5000 and tiny.requested_vocab_size == 5000  # no hard limit
    assert tiny.vocab_size == tiny.sp.get_piece_size() + 4
    _check_round_trip_and_bytes(tiny, [TRICKY])


def test_sentencepiece_is_deterministic(spm_bpe, stdlib_texts):
    again = SentencePieceTokenizer.train(stdlib_texts[0], 512, "bpe", 300_000)
    assert again.model_proto == spm_bpe.model_proto
    assert again.fingerprint() == spm_bpe.fingerprint()


def test_sentencepiece_chunked_encoding_matches_whole(spm_bpe, stdlib_texts):
    long = "".join(stdlib_texts[0])[:300_000]  # cut into ~5 chunks for the threads
    assert len(list(tokenizers._chunks(long, tokenizers._SPM_ENCODE_CHUNK))) > 3
    whole = spm_bpe.sp.encode(long)
    assert spm_bpe.encode_batch([long])[0].tolist() == whole


@pytest.mark.parametrize("kind", ["byte", "char", "sentencepiece"])
def test_save_load_reuse(kind, tmp_path, stdlib_texts, monkeypatch):
    cfg = DataConfig(tokenizer=kind, vocab_size=320, spm_train_chars=50_000)
    logs = []
    tok = train_or_load_tokenizer(cfg, stdlib_texts[0][:20], str(tmp_path), log=logs.append)
    assert os.path.exists(tmp_path / "tokenizer.json")
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    monkeypatch.setattr(tokenizers, "train_tokenizer", lambda *a: pytest.fail("retrained"))
    again = train_or_load_tokenizer(cfg, [], str(tmp_path), log=logs.append)
    assert "reusing" in logs[-1]
    loaded = load_tokenizer(str(tmp_path))
    for other in (again, loaded):
        assert type(other) is type(tok) and other.fingerprint() == tok.fingerprint()
        assert (other.vocab_size, other.eos_id) == (tok.vocab_size, tok.eos_id)
        assert np.array_equal(other.byte_lengths(), tok.byte_lengths())
        for a, b in zip(other.encode_batch(stdlib_texts[1]), tok.encode_batch(stdlib_texts[1])):
            assert np.array_equal(a, b)


def test_reuse_refuses_a_different_tokenizer(tmp_path, stdlib_texts):
    cfg = DataConfig(tokenizer="sentencepiece", vocab_size=320, spm_train_chars=30_000)
    train_or_load_tokenizer(cfg, stdlib_texts[0][:10], str(tmp_path), log=lambda s: None)
    for bad, match in ((dict(tokenizer="byte"), "is sentencepiece but config.data.tokenizer='byte'"),
                       (dict(vocab_size=4096), "vocab_size 320 but config.data.vocab_size=4096"),
                       (dict(spm_model_type="unigram"), "is bpe but")):
        with pytest.raises(ValueError, match=match) as e:
            train_or_load_tokenizer(DataConfig(**{**cfg.__dict__, **bad}), [], str(tmp_path))
        assert "fresh workdir" in str(e.value) and "\n" not in str(e.value)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer in"):
        load_tokenizer(str(tmp_path))
    tok = SentencePieceTokenizer.train(["some text here\n" * 20], 300, "bpe", 10_000)
    tok.save(str(tmp_path))
    with open(tmp_path / "tokenizer.model", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="does not match"):
        load_tokenizer(str(tmp_path))


# ---------------------------------------------------------------- BERT specials

LITERAL_SPECIALS = ("[CLS] a [SEP] b [SEP] [MASK] [PAD] [UNK] <unk> <s> </s> <pad> <mask> "
                    "\u2581[CLS]\n" * 3)


@pytest.fixture(scope="module")
def three_kinds(spm_bpe, stdlib_texts):
    return [ByteTokenizer(), CharTokenizer.train(stdlib_texts[0][:5] + [LITERAL_SPECIALS]),
            spm_bpe]


def test_specials_are_appended_after_the_old_vocabulary(spm_bpe):
    assert ByteTokenizer().special_ids == {"pad": 257, "unk": 258, "cls": 259, "sep": 260,
                                           "mask": 261}
    char = CharTokenizer.train(["ab"])
    assert (char.eos_id, char.special_ids) == (2, {"pad": 4, "unk": 3, "cls": 5, "sep": 6,
                                                   "mask": 7})
    n = spm_bpe.sp.get_piece_size()
    assert spm_bpe.special_ids == {"pad": n, "unk": 0, "cls": n + 1, "sep": n + 2, "mask": n + 3}
    assert spm_bpe.sp.id_to_piece(0) == "<unk>"
    # the token-cache key did not move: cached streams stay valid
    assert ByteTokenizer().fingerprint() == "f70fbb81f7b7ab6c"
    assert CharTokenizer(["a", "b"]).fingerprint() == "0d1cedd0690dc03d"


def test_specials_are_distinct_and_never_produced_by_text(three_kinds, stdlib_texts):
    for tok in three_kinds:
        ids = tok.special_ids
        assert set(ids) == set(tokenizers.SPECIALS)
        assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == tuple(
            ids[k] for k in ("pad", "unk", "cls", "sep", "mask"))
        assert len({*ids.values(), tok.eos_id}) == 6
        assert all(0 <= i < tok.vocab_size for i in ids.values())
        texts = [LITERAL_SPECIALS, *stdlib_texts[1]]
        encoded = tok.encode_batch(texts)
        flat = np.concatenate(encoded)
        never = [ids["pad"], ids["cls"], ids["sep"], ids["mask"], tok.eos_id]
        assert not np.isin(flat, never).any()
        if not isinstance(tok, CharTokenizer):  # char's UNK is real: unseen characters
            assert not tok.special_mask()[flat].any()
        assert not tok.special_mask()[encoded[0]].any()  # every char of the literals is known
        for text, x in zip(texts, encoded):  # specials render as nothing, count no bytes
            assert tok.decode(np.r_[ids["cls"], x[:7], ids["sep"], ids["mask"], x[7:],
                                    ids["sep"], ids["pad"], ids["pad"]]) == tok.decode(x)
        assert tok.decode(encoded[0]) == LITERAL_SPECIALS
        lengths = tok.byte_lengths()
        assert (lengths[never] == 0).all()


def test_special_mask_and_pieces_agree(three_kinds, stdlib_texts):
    ascii_text = "".join(t for t in stdlib_texts[1] if t.isascii())[:50_000] + LITERAL_SPECIALS
    known = set(three_kinds[1].chars)  # no UNK from the char tokenizer
    ascii_text = "".join(c for c in ascii_text if c.isascii() and c in known)
    for tok in three_kinds:
        pieces, mask, lengths = tok.pieces(), tok.special_mask(), tok.byte_lengths()
        assert len(pieces) == len(mask) == tok.vocab_size and mask.dtype == bool
        assert [i for i, p in enumerate(pieces) if p == ""] == np.flatnonzero(mask).tolist()
        assert mask[[tok.eos_id, *tok.special_ids.values()]].all()
        ids = tok.encode(ascii_text)
        assert "".join(pieces[i] for i in ids) == ascii_text  # pieces spell the text
        for i, p in enumerate(pieces):  # and agree with the byte accounting
            if p and p != "\ufffd":
                assert lengths[i] == len(p.encode()), (tok.kind, i, p)
    byte_pieces = ByteTokenizer().pieces()
    assert byte_pieces[ord(" ")] == " " and byte_pieces[0xC3] == "\ufffd"
    sp = three_kinds[2]
    controls = [i for i in range(sp.sp.get_piece_size()) if sp.sp.is_control(i)]
    assert controls and sp.special_mask()[controls].all()
    first_byte = sp.sp.piece_to_id("<0x0A>")
    assert sp.pieces()[first_byte] == "\n" and sp.pieces()[sp.sp.piece_to_id("<0x41>")] == "A"
    spaced = [i for i in range(sp.sp.get_piece_size()) if sp.sp.id_to_piece(i).startswith("\u2581")]
    assert spaced and all(sp.pieces()[i].startswith(" ") for i in spaced)


@pytest.mark.parametrize("kind", ["byte", "char", "sentencepiece"])
def test_files_without_specials_load_with_the_same_ids(kind, tmp_path, stdlib_texts):
    cfg = DataConfig(tokenizer=kind, vocab_size=320, spm_train_chars=30_000)
    tok = train_or_load_tokenizer(cfg, stdlib_texts[0][:10], str(tmp_path), log=lambda s: None)
    path = tmp_path / "tokenizer.json"
    spec = json.loads(path.read_text())
    assert spec["special_ids"] == tok.special_ids
    old = {k: v for k, v in spec.items() if k != "special_ids"}  # as the previous version wrote
    old["vocab_size"] = spec["vocab_size"] - (5 if kind == "byte" else 4)
    path.write_text(json.dumps(old))
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.special_ids == tok.special_ids and loaded.vocab_size == tok.vocab_size
    assert loaded.fingerprint() == tok.fingerprint()
    assert loaded.encode(TRICKY) == tok.encode(TRICKY)
    path.write_text(json.dumps(dict(spec, special_ids=dict(tok.special_ids, cls=3))))
    with pytest.raises(ValueError, match="records special ids .* delete"):
        load_tokenizer(str(tmp_path))


# ---------------------------------------------------------------- character offsets

LONG = "héllo 🙂 wörld\tx  y \u2581z\n" * 3500  # > _SPM_ENCODE_CHUNK: encoded in chunks
OFFSET_TEXTS = ["ä ö ß", "e\u0301 café", "emoji 🙂🙂x", "日本語のテキスト 中文",
                "\ttab\nnew\r\n  many   spaces  ", "a\u2581b \u2581\u2581 c\u2581", "", " ", "\n",
                TRICKY, LONG]


def check_offsets_well_formed(tok, texts):
    """ids are encode_batch's; spans int32 (N, 2), inside the text, in order. Returns them."""
    got = tok.encode_with_offsets(texts)
    assert len(got) == len(texts)
    for text, want, (ids, offsets) in zip(texts, tok.encode_batch(texts), got):
        assert ids.dtype == np.int32 and ids.tolist() == want.tolist()
        assert offsets.dtype == np.int32 and offsets.shape == (len(ids), 2)
        starts, ends = offsets.T
        assert (starts >= 0).all() and (starts <= ends).all() and (ends <= len(text)).all()
        assert (np.diff(starts) >= 0).all() and (np.diff(ends) >= 0).all()
    return got


def _check_offsets_round_trip(tok, texts):
    """Each token's span is its text (a byte of a multi-byte character: that character), and
    the distinct spans in order are the whole text, each character once."""
    assert len(LONG) > tokenizers._SPM_ENCODE_CHUNK and LONG in texts
    pieces = tok.pieces()
    for text, (ids, offsets) in zip(texts, check_offsets_well_formed(tok, texts)):
        spans = []
        for i, (s, e) in zip(ids.tolist(), offsets.tolist()):
            if pieces[i] in ("\ufffd", ""):  # part of a character, or char's [UNK]
                assert e - s == 1, (tok.kind, text[s:e])
            else:
                assert text[s:e] == pieces[i].replace("\u2581", " ")
            if not spans or spans[-1] != (s, e):
                spans.append((s, e))
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert "".join(text[s:e] for s, e in spans) == text


def test_byte_and_char_offsets():
    _check_offsets_round_trip(ByteTokenizer(), OFFSET_TEXTS)
    (ids, offsets), = ByteTokenizer().encode_with_offsets(["a🙂"])
    assert offsets.tolist() == [[0, 1]] + [[1, 2]] * 4  # every byte of 🙂 spans the emoji
    char = CharTokenizer.train(["abc ä\n"])
    _check_offsets_round_trip(char, OFFSET_TEXTS)
    (ids, offsets), = char.encode_with_offsets(["a🙂ä"])
    assert ids[1] == char.unk_id and offsets.tolist() == [[0, 1], [1, 2], [2, 3]]


def test_sentencepiece_offsets(spm_bpe, stdlib_texts):
    plain_long = LONG.replace("\u2581", "_")  # chunks encoded on threads, not split at "▁"
    _check_offsets_round_trip(spm_bpe, OFFSET_TEXTS + stdlib_texts[1][:3] + [plain_long])
    unigram = SentencePieceTokenizer.train(stdlib_texts[0][:5], 320, "unigram", 30_000)
    _check_offsets_round_trip(unigram, OFFSET_TEXTS)
    (ids, offsets), = spm_bpe.encode_with_offsets(["x  = 1"])
    spaced = [(spm_bpe.sp.id_to_piece(int(i)), s, e) for i, (s, e) in zip(ids, offsets)
              if spm_bpe.sp.id_to_piece(int(i)).startswith("\u2581")]
    assert spaced and all(e - s == len(p) for p, s, e in spaced)  # "▁" covers its space


def test_sentencepiece_offsets_agree_with_its_own_spans(spm_bpe):
    """sentencepiece's own byte spans (proto begin/end), as characters, where it gives one."""
    text = "".join(OFFSET_TEXTS[:5]) + "def f(x):\n    return 'héllo 🙂'\n"
    (ids, offsets), = spm_bpe.encode_with_offsets([text])
    try:
        proto = spm_bpe.sp.encode(text, return_type="proto")
    except TypeError:  # sentencepiece 0.2.0
        proto = spm_bpe.sp.encode(text, out_type="immutable_proto")
    data = text.encode()
    chars = [(len(data[:p.begin].decode()), len(data[:p.end].decode()))
             for p in proto.pieces if p.begin < p.end]  # a character's last byte holds it
    ours = [tuple(o) for o, p in zip(offsets.tolist(), proto.pieces) if p.begin < p.end]
    assert [p.id for p in proto.pieces] == ids.tolist() and ours == chars


def test_offsets_need_the_texts_bytes():
    with pytest.raises(ValueError, match="stand for 3 bytes but the text has 2"):
        tokenizers.char_offsets("é", np.array([1, 2]))
    assert tokenizers.char_offsets("", np.zeros(0, np.int32)).shape == (0, 2)
