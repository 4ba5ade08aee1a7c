"""HFTokenizer: a Hugging Face tokenizer directory gives transformers' ids and decodes, with
llmjax's special ids and byte accounting, and survives save/load. Every tokenizer is trained
here on stdlib source (nothing is downloaded): byte-level BPE as vocab.json + merges.txt and
as tokenizer.json, BERT WordPiece as vocab.txt, Llama-style sentencepiece as tokenizer.model."""
import io
import itertools
import json
import os
import sysconfig

import numpy as np
import pytest

pytest.importorskip("tokenizers", reason="HFTokenizer is built on the tokenizers library")

from llmjax.data.hf_tokenizer import HFTokenizer  # noqa: E402
from llmjax.data.tokenizers import load_tokenizer  # noqa: E402
from tests.data.test_tokenizers import OFFSET_TEXTS, check_offsets_well_formed  # noqa: E402

SAMPLES = ["Hello world. The quick brown fox jumps over the lazy dog!",
           "def f(x):\n\tif x:\t# tab\n\t\treturn x  * 2\n    \n",
           "a   b\n\n\n  c\r\nend", "café naïve résumé Ångström", "日本語のテキスト 中文",
           "emoji 🎉🐍 ☃", "  leading and trailing  ", " ", "", "don't , isn't . ok ?"]
WITH_SPECIALS = ["hello <|endoftext|> [CLS] </s> <s> <unk> x", "a</s>b<s>  c", "</s>hello"]


def _stdlib_texts():
    std = sysconfig.get_paths()["stdlib"]
    return [open(os.path.join(std, f), encoding="utf-8").read()
            for f in ("textwrap.py", "string.py", "shlex.py", "fnmatch.py")]


def _write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """name -> directory of each tokenizer built from vocabulary files (not transformers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.implementations import BertWordPieceTokenizer
    import sentencepiece as spm
    texts, root = _stdlib_texts(), tmp_path_factory.mktemp("hf")
    gpt2 = root / "gpt2_files"
    gpt2.mkdir()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    bpe.model.save(str(gpt2))
    _write_json(gpt2 / "tokenizer_config.json",
                {"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>",
                 "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                 "add_prefix_space": False})
    bert = root / "bert"
    bert.mkdir()
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=600, show_progress=False)
    wp.save_model(str(bert))
    llama = root / "llama"
    llama.mkdir()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for t in texts for line in t.splitlines() if line.strip()]),
        model_writer=model, model_type="bpe", vocab_size=500, byte_fallback=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, character_coverage=0.99995, num_threads=1,
        minloglevel=2)
    (llama / "tokenizer.model").write_bytes(model.getvalue())
    return {"gpt2_files": str(gpt2), "bert": str(bert), "llama": str(llama)}


@pytest.fixture(scope="module")
def gpt2_json(dirs, tmp_path_factory):
    """The byte-level BPE as transformers saves it: tokenizer.json + tokenizer_config.json."""
    transformers = pytest.importorskip("transformers", reason="writes tokenizer.json")
    out = str(tmp_path_factory.mktemp("gpt2_json"))
    transformers.GPT2TokenizerFast.from_pretrained(dirs["gpt2_files"]).save_pretrained(out)
    assert os.path.isfile(os.path.join(out, "tokenizer.json"))
    return out


def _variant(source_dir, tmp_path, name, config):
    """A copy of source_dir's tokenizer file `name` with tokenizer_config.json = config."""
    path = tmp_path / "variant"
    path.mkdir()
    (path / name).write_bytes(open(os.path.join(source_dir, name), "rb").read())
    _write_json(path / "tokenizer_config.json", config)
    return str(path)


def _hf(path, family):
    transformers = pytest.importorskip("transformers", reason="compares with transformers")
    cls = {"gpt2": transformers.GPT2TokenizerFast, "bert": transformers.BertTokenizerFast,
           "llama": transformers.LlamaTokenizerFast}[family]
    return cls.from_pretrained(path)


def _check_matches_transformers(path, family):
    ref, tok = _hf(path, family), HFTokenizer.from_dir(path)
    for text in [*SAMPLES, *WITH_SPECIALS]:
        want = ref(text, add_special_tokens=False)["input_ids"]
        got = tok.encode(text)
        assert got == want, (text, got, want)
        assert tok.decode(got) == ref.decode(want, skip_special_tokens=True), text
    assert [x.tolist() for x in tok.encode_batch(SAMPLES)] == [tok.encode(t) for t in SAMPLES]
    assert tok.vocab_size == len(ref)
    return ref, tok


def test_gpt2_vocab_and_merges_match_transformers(dirs):
    ref, tok = _check_matches_transformers(dirs["gpt2_files"], "gpt2")
    assert tok.eos_id == ref.eos_token_id == ref.convert_tokens_to_ids("<|endoftext|>")


def test_gpt2_tokenizer_json_matches_transformers(gpt2_json):
    ref, tok = _check_matches_transformers(gpt2_json, "gpt2")
    assert tok.source == ("tokenizer.json",) and tok.eos_id == ref.eos_token_id


@pytest.mark.parametrize("config", [None, {"do_lower_case": False, "strip_accents": True,
                                      "clean_up_tokenization_spaces": True}])
def test_bert_wordpiece_matches_transformers(dirs, tmp_path, config):
    path = dirs["bert"] if config is None else _variant(dirs["bert"], tmp_path, "vocab.txt", config)
    ref, tok = _check_matches_transformers(path, "bert")
    assert tok.eos_id == ref.sep_token_id
    assert tok.special_ids == {"pad": ref.pad_token_id, "unk": ref.unk_token_id,
                               "cls": ref.cls_token_id, "sep": ref.sep_token_id,
                               "mask": ref.mask_token_id}


@pytest.mark.parametrize("config", [{}, {"tokenizer_class": "LlamaTokenizer", "legacy": True},
                                    {"add_prefix_space": False}])
def test_llama_sentencepiece_matches_transformers(dirs, tmp_path, config):
    path = dirs["llama"] if not config else _variant(dirs["llama"], tmp_path, "tokenizer.model",
                                                    config)
    ref, tok = _check_matches_transformers(path, "llama")
    assert (tok.eos_id, tok.unk_id, ref.eos_token_id, ref.unk_token_id) == (2, 0, 2, 0)


def test_byte_level_is_lossless_and_counts_bytes(dirs):
    tok = HFTokenizer.from_dir(dirs["gpt2_files"])
    lengths = tok.byte_lengths()
    assert lengths.shape == (tok.vocab_size,) and lengths[tok.eos_id] == 0
    for text in SAMPLES:
        ids = tok.encode_batch([text])[0]
        assert ids.dtype == np.int32 and tok.decode(ids) == text
        assert int(lengths[ids].sum()) == len(text.encode())
        if text.isascii():
            assert "".join(tok.pieces()[i] for i in ids) == text
    assert tok.encode("<|endoftext|>") == [tok.eos_id]  # as transformers: the special's id
    assert tok.decode([tok.eos_id, tok.vocab_size + 3]) == ""  # EOS and model padding


def test_sentencepiece_counts_the_prefix_space_and_byte_pieces(dirs):
    tok = HFTokenizer.from_dir(dirs["llama"])
    lengths = tok.byte_lengths()
    for text in SAMPLES:
        ids = tok.encode(text)
        prefix = text != "" and not text.startswith(" ")
        assert int(lengths[ids].sum()) == len(text.encode()) + prefix, text
        assert tok.decode(ids) == (text if prefix or not text else text[1:])
    assert tok.pieces()[tok.encode("\t")[-1]] == "\t"  # a byte-fallback piece


def test_wordpiece_bytes_drop_the_continuation_prefix(dirs):
    tok = HFTokenizer.from_dir(dirs["bert"])
    pieces, lengths = tok.pieces(), tok.byte_lengths()
    ids = tok.encode("formatting")
    assert len(ids) > 1 and "".join(pieces[i] for i in ids) == "formatting"
    assert int(lengths[ids].sum()) == len("formatting")
    assert tok.decode(tok.encode("Hello, World")) == "hello, world"


def test_special_ids_fall_back_to_existing_ids(dirs):
    gpt2 = HFTokenizer.from_dir(dirs["gpt2_files"])
    assert set(gpt2.special_ids.values()) == {gpt2.eos_id}  # GPT-2 has one special
    llama = HFTokenizer.from_dir(dirs["llama"])
    assert llama.special_ids == {"pad": 2, "unk": 0, "cls": 1, "sep": 2, "mask": 0}
    assert llama.special_mask()[[0, 1, 2]].all() and llama.special_mask().sum() == 3
    for tok in (gpt2, llama):
        assert max(tok.special_ids.values()) < tok.vocab_size


@pytest.mark.parametrize("name", ["gpt2_files", "bert", "llama"])
def test_save_and_load_round_trip(dirs, tmp_path, name):
    tok = HFTokenizer.from_dir(dirs[name])
    tok.save(str(tmp_path / "tok"))
    assert os.path.isdir(tmp_path / "tok" / "hf")
    back = load_tokenizer(str(tmp_path / "tok"))
    assert isinstance(back, HFTokenizer) and back.kind == "hf"
    assert [back.encode(t) for t in SAMPLES] == [tok.encode(t) for t in SAMPLES]
    assert (back.vocab_size, back.eos_id, back.special_ids, back.fingerprint()) == (
        tok.vocab_size, tok.eos_id, tok.special_ids, tok.fingerprint())
    source = tmp_path / "tok" / "hf" / tok.source[0]
    source.write_bytes(source.read_bytes() + b"\n")
    with pytest.raises(ValueError, match="does not match"):
        load_tokenizer(str(tmp_path / "tok"))


def _one_line_error(path, match):
    with pytest.raises(ValueError, match=match) as e:
        HFTokenizer.from_dir(str(path))
    assert "\n" not in str(e.value)


def test_errors_are_one_line(dirs, tmp_path):
    _one_line_error(tmp_path, "expected tokenizer.json, vocab.json \\+ merges.txt")
    (tmp_path / "tokenizer.json").write_text("{not json")
    _one_line_error(tmp_path, "tokenizer.json is damaged")
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer.model").write_bytes(b"\x00garbage")
    _one_line_error(tmp_path, "tokenizer.model is damaged")
    (tmp_path / "tokenizer.model").write_bytes(
        open(os.path.join(dirs["llama"], "tokenizer.model"), "rb").read())
    (tmp_path / "tokenizer_config.json").write_text("[1,")
    _one_line_error(tmp_path, "tokenizer_config.json is damaged")
    _write_json(tmp_path / "tokenizer_config.json", {"eos_token": "<eot>"})
    _one_line_error(tmp_path, "eos_token '<eot>' is not in the vocabulary")
    _write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer"})
    _one_line_error(tmp_path, "only Llama-style sentencepiece")


@pytest.mark.parametrize("name", ["gpt2_files", "gpt2_json", "bert", "llama", "llama_legacy"])
def test_offsets_are_character_spans(dirs, gpt2_json, tmp_path, name):
    """Byte-level BPE and Llama: a token's span is its text (a space before a word included,
    except the prefix space Llama adds, which is in no span; a byte of a multi-byte character
    spans that character), so the spans are the text; BERT's spans hold no space and never
    overlap. Special tokens span the string they matched."""
    import unicodedata
    path = (gpt2_json if name == "gpt2_json" else dirs[name] if name in dirs else
            _variant(dirs["llama"], tmp_path, "tokenizer.model", {"legacy": True}))
    tok = HFTokenizer.from_dir(path)
    pieces, special = tok.pieces(), tok.backend.special
    texts = [*OFFSET_TEXTS, *SAMPLES, *WITH_SPECIALS]
    for text, (ids, offsets) in zip(texts, check_offsets_well_formed(tok, texts)):
        spans, after_special = [], True
        for i, (s, e) in zip(ids.tolist(), offsets.tolist()):
            piece, got = pieces[i], text[s:e]
            if name.startswith("llama"):  # sentencepiece reads a "▁" in the text as a space
                got = got.replace("\u2581", " ")
            if i in special:  # the string it matched; BERT's [UNK]: the word it replaced
                assert got.strip() == got != "" and (name == "bert" or got in WITH_SPECIALS[0])
            elif piece == "\ufffd":
                assert e - s == 1
            elif name == "bert":
                assert got and not any(c.isspace() for c in got)
            else:
                assert got == piece or (after_special and piece.startswith(" ")
                                        and got == piece[1:]), (got, piece)
            after_special = i in special
            if s < e and (not spans or spans[-1] != (s, e)):
                spans.append((s, e))
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        if name == "bert":  # what it drops: spaces, controls (clean_text), stripped accents
            covered = {k for s, e in spans for k in range(s, e)}
            assert all(c.isspace() or unicodedata.category(c)[0] in "CM"
                       for k, c in enumerate(text) if k not in covered), text
        else:
            assert "".join(text[s:e] for s, e in spans) == text
    (ids, offsets), = tok.encode_with_offsets(["é🙂"])
    assert offsets.max() <= 2  # characters, not bytes
