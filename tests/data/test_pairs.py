"""load_pairs: the embedded stdlib_docstrings task (a synthetic stdlib with one case per filter,
and the real one), pairs: files and tfds: through tfds.testing.mock_data's wmt14_translate."""
import collections
import hashlib
import textwrap

import pytest

from llmjax.config import ConfigError
from llmjax.data import pairs, sources
from llmjax.data.pairs import PAIR_SOURCES, check_pairs_spec, load_pairs


def _quiet(spec, **kw):
    return load_pairs(spec, log=lambda s: None, **kw)


def _err(exc, fn, *args, **kw) -> str:
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def _adds_up(stats: dict) -> None:
    for split in ("train", "eval"):
        s = stats[split]
        assert s["read"] == s["kept"] + sum(s["dropped"].values()), split
        assert set(s["dropped"]) <= set(pairs.DROP_REASONS)


def _names_by_split(val_fraction: float, n: int = 200) -> tuple[list[str], list[str]]:
    names = [f"mod{i}.py" for i in range(n)]
    return ([m for m in names if not sources.is_validation(m, val_fraction)],
            [m for m in names if sources.is_validation(m, val_fraction)])


# ---------------------------------------------------------------- stdlib_docstrings, synthetic

KEPT = '''
@functools.lru_cache(maxsize=None)
def kept(a, b):
    """Add two numbers and
    return the sum. More words
    follow in the first paragraph.

    Details that are not the summary.
    """

    total = a + b  # the docstring's blank line after it is gone
    return total
'''

CASES = {  # the function's source -> the reason it is dropped
    '''
def short():
    """Short."""
    return 1
''': "short_target",
    '''
def only_doc():
    """Only a docstring in here."""
''': "trivial_body",
    '''
def only_pass():
    """Only a pass in here."""
    pass
''': "trivial_body",
    '''
def only_dots():
    """Only an ellipsis in here."""
    ...
''': "trivial_body",
    '''
def abstract(self):
    """Subclasses implement this one."""
    raise NotImplementedError
''': "trivial_body",
    '''
def abstract_call(self):
    """Subclasses implement this one too."""
    raise NotImplementedError("subclass it")
''': "trivial_body",
    '''
def one_liner(): """Docstring on the def line."""; return 1
''': "inline_docstring",
    '''
def shares_line():
    """Docstring shares its line with code."""; x = 1
    return x
''': "inline_docstring",
    '''
def huge():
    """A function with far too much code."""
''' + "".join(f"    x{i} = {i} * 1000 + 123456789\n" for i in range(80)) + "    return x0\n":
        "long_source",
}
SHARED = '''
async def shared(x):
    """Return x doubled, twice over."""
    y = await x
    return y * 2
'''


@pytest.fixture()
def fake_stdlib(tmp_path):
    """A stdlib-like tree: a train file with every case, the same function in an eval file,
    tests and applications that must be skipped, and a file that does not parse."""
    train_names, eval_names = _names_by_split(0.5)
    root = tmp_path / "lib"

    def write(rel, text):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")

    methods = "class C:\n" + textwrap.indent(KEPT + SHARED, "    ")
    write(train_names[0], "import functools\n" + KEPT + "".join(CASES) + SHARED + methods)
    write(train_names[1], SHARED.replace("doubled, twice", "doubled, not twice")
          + SHARED.replace("shared", "third").replace("doubled, twice", "tripled, thrice"))
    write(eval_names[0], SHARED + SHARED.replace("shared", "other"))
    write(eval_names[1], SHARED + "def broken(:\n")  # does not parse: no examples
    for noise in ("test/mod.py", "pkg/tests/mod.py", "pkg/test_mod.py", "idlelib/mod.py",
                  "lib2to3/fixes/mod.py", "tkinter/test/mod.py", "site-packages/mod.py",
                  "__pycache__/mod.py"):
        write(noise, KEPT.replace("kept", "noise"))
    return str(root), train_names[:2], eval_names[:2]


def test_docstring_examples_filters_and_layout(fake_stdlib):
    root, (train_a, train_b), (eval_a, _) = fake_stdlib
    examples = pairs.docstring_examples(root, val_fraction=0.5)
    assert {e.path for e in examples} == {train_a, train_b, eval_a}  # no noise, nor broken file
    dropped = {e.line: e.dropped for e in examples if e.path == train_a}
    assert sorted(r for r in dropped.values() if r and r != "duplicate") == sorted(CASES.values())
    kept = [e for e in examples if e.target.startswith("Add two numbers")]
    assert [e.dropped for e in kept] == ["", "duplicate"]  # module level, method (dedented)
    top = kept[0]
    assert top.target == "Add two numbers and return the sum."
    assert top.source == textwrap.dedent('''\
        @functools.lru_cache(maxsize=None)
        def kept(a, b):
            total = a + b  # the docstring's blank line after it is gone
            return total''')
    assert kept[1].source == top.source
    assert kept[1].line > top.line and top.line == 4
    # the same summary in two files makes them one group, split by its first path (eval_a
    # here), so the pair's copies are on one side: the first read (in path order) stays
    group = pairs.file_groups(examples)
    assert eval_a < train_a and group[train_a] == group[eval_a] == eval_a != group[train_b]
    shared = [(e.path, e.line, e.dropped) for e in examples
              if e.target == "Return x doubled, twice over." and "def shared" in e.source]
    assert [d for p, _, d in shared if p == eval_a] == [""]
    assert [d for p, _, d in shared if p == train_a] == ["duplicate", "duplicate"]  # function, method
    assert [e.dropped for e in examples if e.path == eval_a and "def other" in e.source] == [""]
    assert [e.dropped for e in examples if e.path == train_b] == ["", ""]  # other targets: kept
    for e in examples:
        assert e.split == ("train" if e.path == train_b else "eval")
        assert '"""' not in e.source


def test_stdlib_docstrings_pairs_and_counts(fake_stdlib):
    root, _, _ = fake_stdlib
    examples = pairs.docstring_examples(root, val_fraction=0.5)
    data = pairs.stdlib_docstrings(root, val_fraction=0.5)
    _adds_up(data.stats)
    for split in ("train", "eval"):
        rows = [e for e in examples if e.split == split]
        kept = [e for e in rows if not e.dropped]
        s = data.stats[split]
        assert s["read"] == len(rows) and s["kept"] == len(kept)
        assert s["dropped"] == dict(collections.Counter(e.dropped for e in rows if e.dropped))
        got = list(zip(getattr(data, f"{split}_sources"), getattr(data, f"{split}_targets")))
        assert sorted(got) == sorted((e.source, e.target) for e in kept)
    assert data.stats["train"] == {"files": 1, "read": 2, "kept": 2, "dropped": {}}
    assert data.stats["eval"]["files"] == 2 and data.stats["eval"]["dropped"]["duplicate"] == 3
    capped = pairs.stdlib_docstrings(root, val_fraction=0.5, max_examples=1)
    assert capped.train_sources == data.train_sources[:1]
    assert capped.stats["train"]["dropped"]["max_examples"] == len(data.train_sources) - 1
    _adds_up(capped.stats)


def test_stdlib_docstrings_dev_band(fake_stdlib):
    root, _, _ = fake_stdlib
    examples = pairs.docstring_examples(root, val_fraction=0.25)
    dev = pairs.docstring_examples(root, val_fraction=0.25, dev=True)
    for e, d in zip(examples, dev):
        h = sources.split_bucket(pairs.file_groups(examples)[e.path])
        assert d.split == ("unread" if h < 250 else "eval" if h < 500 else "train")
        assert e.split == ("eval" if h < 250 else "train")


def test_stdlib_docstrings_needs_both_splits(tmp_path):
    (tmp_path / "mod0.py").write_text(KEPT)
    assert "run on a full CPython" in _err(ValueError, pairs.stdlib_docstrings, str(tmp_path))


# ---------------------------------------------------------------- stdlib_docstrings, real


@pytest.fixture(scope="module")
def real():
    lines = []
    return load_pairs("stdlib_docstrings", log=lines.append), lines


def test_real_stdlib_smoke(real):
    data, lines = real
    s = data.stats
    assert s["train"]["kept"] >= 3000 and s["eval"]["kept"] >= 100
    assert s["train"]["files"] >= 200 and s["eval"]["files"] >= 5
    assert len(data.train_sources) == len(data.train_targets) == s["train"]["kept"]
    assert len(data.eval_sources) == len(data.eval_targets) == s["eval"]["kept"]
    _adds_up(s)
    for reason in ("short_target", "trivial_body", "long_source", "duplicate"):
        assert s["train"]["dropped"][reason] > 0, reason
    assert len(lines) == 1 and lines[0].startswith("data stdlib_docstrings: train ")
    assert f"eval {s['eval']['kept']:,} pairs from {s['eval']['files']} files" in lines[0]
    assert all(len(t.split()) >= pairs.MIN_TARGET_WORDS for t in data.train_targets)
    assert all(len(x) <= pairs.MAX_SOURCE_CHARS for x in data.train_sources + data.eval_sources)
    assert not set(zip(data.train_sources, data.train_targets)) & set(
        zip(data.eval_sources, data.eval_targets))


def test_real_stdlib_deterministic_and_split_by_file_group(real):
    data, _ = real
    examples = pairs.docstring_examples()  # a second, independent pass over the stdlib
    group = pairs.file_groups(examples)
    train_files = {e.path for e in examples if e.split == "train"}
    eval_files = {e.path for e in examples if e.split == "eval"}
    assert train_files and eval_files and not train_files & eval_files
    assert all(sources.is_validation(group[p], 0.05) for p in eval_files)
    assert not any(sources.is_validation(group[p], 0.05) for p in train_files)
    assert all(pairs.is_library_module(p) for p in train_files | eval_files)
    in_order = sorted(examples, key=lambda e: hashlib.sha1(f"{e.path}:{e.line}".encode()).digest())
    for split in ("train", "eval"):  # the same pairs in the same order as the first pass
        kept = [(e.source, e.target) for e in in_order if e.split == split and not e.dropped]
        assert list(zip(getattr(data, f"{split}_sources"), getattr(data, f"{split}_targets"))) == kept


def test_real_stdlib_no_summary_on_both_sides(real):
    """Files that share a (normalised) summary are split together: no eval target is a train
    target (by file alone 18 were at val_fraction 0.05: cross-file copies like _pyio and io)."""
    from llmjax.data.gettext_catalogs import normalise

    data, _ = real
    assert not {normalise(t) for t in data.train_targets} & {normalise(t) for t in data.eval_targets}


def test_real_stdlib_nearest_train_target_beats_copying_the_source(real):
    """The nearest train pair's target beats copying the source's first line: similar functions
    in other files remain (by file alone, before file groups kept every summary on one side, it
    was twice the copy's BLEU: docs/encdec_experiments.md; now 2.4 against 1.4)."""
    from llmjax.data import retrieval
    from llmjax.evaluation.text_scores import text_scores

    data, _ = real
    queries, references = data.eval_sources[:200], data.eval_targets[:200]
    nearest = [data.train_targets[i] if i >= 0 else "" for i in retrieval.nearest(data.train_sources, queries)]
    copy = [source.splitlines()[0] for source in queries]  # a decorator or the def line
    assert text_scores(nearest, references)["bleu"] > text_scores(copy, references)["bleu"] > 0


# ---------------------------------------------------------------- pairs:GLOB


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_pairs_few_files_hold_out_the_last_lines(tmp_path):
    _write(tmp_path / "b.tsv", [f"b{i}\tB{i}" for i in range(20)])
    _write(tmp_path / "a.tsv", [f"a{i}\tA{i}" for i in range(20)] + ["", "   "])
    data = _quiet(f"pairs:{tmp_path}/*.tsv", val_fraction=0.25)
    assert data.train_sources == [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(10)]
    assert data.eval_sources == [f"b{i}" for i in range(10, 20)]
    assert data.eval_targets == [f"B{i}" for i in range(10, 20)]
    assert data.stats["train"] == {"read": 30, "kept": 30, "dropped": {}}


def test_pairs_many_files_split_by_file_and_filters(tmp_path):
    for i in range(12):
        lines = [f"src {i} {j}\ttgt {i} {j}" for j in range(5)]
        _write(tmp_path / "data" / "deep" / f"f{i:02d}.tsv", lines)
    _write(tmp_path / "data" / "deep" / "f00.tsv", ["dup\tdup", "dup\tdup", " \tno source",
                                                    "x\t", "a b\tc d"])
    data = _quiet(f"pairs:{tmp_path}/data/**/*.tsv", val_fraction=0.3)
    eval_files = {i for i in range(12) if sources.is_validation(f"deep/f{i:02d}.tsv", 0.3)}
    assert 0 < len(eval_files) < 12 and 0 not in eval_files  # relative to the glob's root
    assert sorted(data.eval_sources) == sorted(f"src {i} {j}" for i in eval_files
                                               for j in range(5))
    assert data.train_sources[:2] == ["dup", "a b"] and data.train_targets[1] == "c d"
    assert data.stats["train"]["dropped"] == {"duplicate": 1, "empty": 2}
    _adds_up(data.stats)
    capped = _quiet(f"pairs:{tmp_path}/data/**/*.tsv", val_fraction=0.3, max_examples=3)
    assert capped.train_sources == data.train_sources[:3] and capped.eval_sources == data.eval_sources
    _adds_up(capped.stats)


def test_pairs_dev_band_by_file_and_by_lines(tmp_path):
    """eval_split='dev': eval on the band val_fraction <= h < 2 * val_fraction, train above it,
    the eval band unread; the line-tail split likewise by lines."""
    for i in range(40):
        _write(tmp_path / "many" / f"f{i:02d}.tsv", [f"src {i}\ttgt {i}"])
    spec = f"pairs:{tmp_path}/many/*.tsv"
    band = {f"src {i}": sources.split_bucket(f"f{i:02d}.tsv") for i in range(40)}
    eval_, dev = _quiet(spec, val_fraction=0.2), _quiet(spec, val_fraction=0.2, eval_split="dev")
    assert all(band[x] < 200 for x in eval_.eval_sources)
    assert dev.eval_sources and all(200 <= band[x] < 400 for x in dev.eval_sources)
    assert all(band[x] >= 400 for x in dev.train_sources)
    assert sorted(dev.train_sources + dev.eval_sources) == sorted(eval_.train_sources)
    _write(tmp_path / "few" / "a.tsv", [f"a{i}\tA{i}" for i in range(20)])
    few = _quiet(f"pairs:{tmp_path}/few/*.tsv", val_fraction=0.25, eval_split="dev")
    assert few.train_sources == [f"a{i}" for i in range(10)]
    assert few.eval_sources == [f"a{i}" for i in range(10, 15)]  # the last 5 (eval) unread
    assert "under 0.5" in _err(ValueError, _quiet, spec, val_fraction=0.5, eval_split="dev")


@pytest.mark.parametrize("line, tabs", [("no tab here", 0), ("one\ttwo\tthree", 2)])
def test_pairs_bad_line_is_one_line_error(tmp_path, line, tabs):
    _write(tmp_path / "a.tsv", ["fine\tline", "", line])
    msg = _err(ValueError, _quiet, f"pairs:{tmp_path}/*.tsv")
    assert f"a.tsv:3: {tabs} tabs" in msg and "exactly one tab" in msg


def test_pairs_empty_glob_and_no_pairs(tmp_path):
    spec = f"pairs:{tmp_path}/*.tsv"
    assert "matches no files" in _err(ConfigError, check_pairs_spec, spec)
    assert "matches no files" in _err(ConfigError, _quiet, spec)
    _write(tmp_path / "a.tsv", ["", "  "])
    assert "hold no pairs" in _err(ValueError, _quiet, spec)
    _write(tmp_path / "a.tsv", ["only\tone"])
    assert "leave 0 for train and 1 for eval" in _err(ValueError, _quiet, spec)


@pytest.mark.parametrize("spec", ["stdlib", "tfds:", "pairs:", "text:x", ""])
def test_bad_specs(spec):
    msg = _err(ConfigError, check_pairs_spec, spec)
    assert all(form in msg for form in PAIR_SOURCES)


def test_embedded_specs_refuse_tfds_settings(tmp_path):
    assert "source_key" in _err(ValueError, _quiet, "stdlib_docstrings", source_key="de")
    assert "splits" in _err(ValueError, _quiet, "stdlib_docstrings", eval_split="test")
    assert "val_fraction" in _err(ValueError, _quiet, "stdlib_docstrings", val_fraction=1.0)
    assert "max_examples" in _err(ValueError, _quiet, "stdlib_docstrings", max_examples=-1)


# ---------------------------------------------------------------- tfds:

WMT = "tfds:wmt14_translate/de-en"


def _records(data_dir, split, name=WMT[5:]):
    import tensorflow_datasets as tfds
    builder = tfds.builder(name, data_dir=data_dir)
    return [r for _, r in sources.read_records(builder, split)]


def test_tfds_translation_supervised_keys_and_swap(mocked_tfds):
    data = _quiet(WMT, tfds_data_dir=mocked_tfds)
    train, val = _records(mocked_tfds, "train"), _records(mocked_tfds, "validation")
    full = [(r["de"], r["en"]) for r in train]
    assert list(zip(data.train_sources, data.train_targets)) == [
        (s, t) for s, t in full if s.strip() and t.strip()]
    assert data.eval_sources == [r["de"] for r in val] and data.eval_targets == [r["en"] for r in val]
    assert data.train_sources != data.train_targets
    _adds_up(data.stats)
    swapped = _quiet(WMT, tfds_data_dir=mocked_tfds, source_key="en", target_key="de")
    assert swapped.train_sources == data.train_targets and swapped.eval_targets == data.eval_sources
    test = _quiet(WMT, tfds_data_dir=mocked_tfds, eval_split="test", max_examples=4)
    assert test.eval_sources == [r["de"] for r in _records(mocked_tfds, "test")]
    assert test.stats["train"]["read"] == 4


def test_tfds_bad_keys_and_splits(mocked_tfds):
    msg = _err(ValueError, _quiet, WMT, tfds_data_dir=mocked_tfds, source_key="fr")
    assert "source_key='fr'" in msg and "de, en" in msg
    msg = _err(ValueError, _quiet, WMT, tfds_data_dir=mocked_tfds, target_key="label")
    assert "target_key='label'" in msg
    assert "no such split" in _err(ValueError, _quiet, WMT, tfds_data_dir=mocked_tfds,
                                   eval_split="dev")
    msg = _err(ValueError, _quiet, "tfds:imdb_reviews", tfds_data_dir=mocked_tfds)
    assert "target_key='label'" in msg and "Text features: text" in msg  # supervised, not text
    msg = _err(ValueError, _quiet, "tfds:glue/mrpc", tfds_data_dir=mocked_tfds)
    assert "set source_key and target_key" in msg and "sentence1, sentence2" in msg
    mrpc = _quiet("tfds:glue/mrpc", tfds_data_dir=mocked_tfds, source_key="sentence1",
                  target_key="sentence2")
    assert mrpc.eval_sources == [r["sentence1"] for r in _records(mocked_tfds, "validation", "glue/mrpc")]
    assert "tfds build" in _err(ValueError, _quiet, "tfds:wmt14_translate/fr-en",
                                tfds_data_dir=mocked_tfds)


def test_tfds_drops_empty_pairs_from_train_only(mocked_tfds, monkeypatch):
    read = sources.read_records

    def with_an_empty_pair(builder, split, limit=0):
        yield from read(builder, split, limit)
        yield -1, {"de": " ", "en": "an empty source"}

    monkeypatch.setattr(sources, "read_records", with_an_empty_pair)
    data = _quiet(WMT, tfds_data_dir=mocked_tfds)
    assert data.stats["train"]["dropped"] == {"empty": 1} and " " not in data.train_sources
    assert data.eval_sources[-1] == " " and data.stats["eval"]["dropped"] == {}  # eval stays whole


def test_split_identifiers():
    from llmjax.data.pairs import split_identifiers

    code = "def get_running_loop(self, max_len=_DEFAULT):\n    return __all__ + a_b_1 + _x_"
    assert split_identifiers(code) == ("def get _ running _ loop(self, max _ len=_DEFAULT):\n"
                                       "    return __all__ + a _ b _ 1 + _x_")


def test_a_stream_reads_the_files_again_each_pass_and_decides_the_split_once(tmp_path):
    """open_pairs streams what load_pairs collects; each pass reads the files again (an edit
    shows), the by-file split falls back once (one log line), and stats come with each pass."""
    for i in range(10):  # 10 files of one pair each: at val_fraction 0.01 none is held out
        _write(tmp_path / f"f{i}.tsv", [f"s{i}\tt{i}"] * (2 if i == 0 else 1))
    lines = []
    stream = pairs.open_pairs(f"pairs:{tmp_path}/*.tsv", val_fraction=0.01, log=lines.append)
    assert stream.stats is None and not lines  # nothing is read before the first pass
    first = list(stream)
    assert first == [("train", f"s{i}", f"t{i}") for i in range(9)] + [("eval", "s9", "t9")]
    assert stream.stats["train"] == {"read": 10, "kept": 9, "dropped": {"duplicate": 1}}
    assert stream.stats["eval"] == {"read": 1, "kept": 1, "dropped": {}}
    assert list(stream) == first and len(lines) == 1 and "holding out the last" in lines[0]
    data = _quiet(f"pairs:{tmp_path}/*.tsv", val_fraction=0.01)
    assert list(zip(data.train_sources, data.train_targets)) == [(s, t) for _, s, t in first[:9]]
    assert data.stats == stream.stats
    _write(tmp_path / "f0.tsv", ["edited\tpair", "edited\tpair"])  # the same line count
    assert next(iter(stream)) == ("train", "edited", "pair")
