"""gettext:LANG: tiny .mo catalogs written here (one case per rule and fault), the normalised
split, placeholders(), the dev band, and the machine's real German catalogs when installed."""
import gettext
import os
import struct

import pytest

from llmjax.config import ConfigError
from llmjax.data import gettext_catalogs, pairs, sources
from llmjax.data.gettext_catalogs import normalise, placeholders, read_mo
from llmjax.data.pairs import check_pairs_spec, load_pairs

HEADER = ("Content-Type: text/plain; charset={charset}\n"
          "Plural-Forms: nplurals=2; plural=(n != 1);\n")


def write_mo(path, entries: dict[str, str], charset: str = "UTF-8", header: str = HEADER,
             order: str = "<") -> None:
    """A GNU .mo file (magic, revision 0, N, the two offset tables, then the strings) of
    entries (msgid -> msgstr; plural msgids and msgstrs joined by NUL, a context by EOT)."""
    entries = {"": header.format(charset=charset), **entries}
    keys = sorted(entries, key=lambda k: k.encode(charset))
    n = len(keys)
    ids_at, strs_at = 28, 28 + 8 * n
    blob, tables = b"", {"ids": [], "strs": []}
    for table, texts in (("ids", keys), ("strs", [entries[k] for k in keys])):
        for text in texts:
            raw = text.encode(charset)
            tables[table].append((len(raw), strs_at + 8 * n + len(blob)))
            blob += raw + b"\0"
    head = struct.pack(order + "7I", 0x950412DE, 0, n, ids_at, strs_at, 0, 0)
    flat = [x for table in ("ids", "strs") for pair in tables[table] for x in pair]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(head + struct.pack(f"{order}{4 * n}I", *flat) + blob)


def _root(tmp_path, catalogs: dict[str, dict[str, str]], lang: str = "xx") -> str:
    for name, entries in catalogs.items():
        write_mo(tmp_path / lang / "LC_MESSAGES" / name, entries)
    return str(tmp_path)


def _err(exc, fn, *args, **kw) -> str:
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def _quiet(spec, **kw):
    return load_pairs(spec, log=lambda s: None, **kw)


def _adds_up(stats: dict) -> None:
    for split in ("train", "eval"):
        s = stats[split]
        assert s["read"] == s["kept"] + sum(s["dropped"].values()), split
        assert set(s["dropped"]) <= set(pairs.DROP_REASONS)


def _fillers(n: int) -> dict[str, str]:
    """n plain kept messages, so that both splits hold pairs."""
    return {f"Filler message {chr(97 + i % 26)}{chr(97 + i // 26)}": f"Fuellnachricht {i}"
            for i in range(n)}


def test_writer_and_reader_agree_with_the_standard_library(tmp_path):
    entries = {"Open": "Öffnen", "menu\x04Quit": "Beenden", "%d file\0%d files": "%d Datei\0%d Dateien",
               "line one\nline\ttwo": "Zeile eins\nZeile\tzwei"}
    for order in "<>":
        path = tmp_path / f"{order == '<'}.mo"
        write_mo(path, entries, order=order)
        with open(path, "rb") as f:
            stdlib = gettext.GNUTranslations(f)._catalog
        got = read_mo(str(path))
        assert {m.source: m.target for m in got} == {
            "": stdlib[""], "Open": "Öffnen", "Quit": "Beenden", "%d file": "%d Datei",
            "line one\nline\ttwo": "Zeile eins\nZeile\tzwei"}
        assert stdlib["menu\x04Quit"] == "Beenden" and stdlib[("%d file", 0)] == "%d Datei"
        assert [(m.plural, m.context) for m in got if m.source in ("Quit", "%d file")] in (
            [(False, True), (True, False)], [(True, False), (False, True)])


def test_latin1_catalog_and_plural_form_for_one(tmp_path):
    """A latin-1 header (the stdlib cannot read it) and a Plural-Forms whose n = 1 is form 1."""
    path = tmp_path / "l1.mo"
    write_mo(path, {"Count": "Zähler"}, charset="ISO-8859-1",
             header=HEADER.replace("Content", "Last-Translator: Ralf Bächle\nContent"))
    with pytest.raises(UnicodeDecodeError), open(path, "rb") as f:
        gettext.GNUTranslations(f)
    assert [m.target for m in read_mo(str(path)) if m.source] == ["Zähler"]
    three = HEADER.replace("nplurals=2; plural=(n != 1);", "nplurals=3; plural=(n==0 ? 0 : n==1 ? 1 : 2);")
    write_mo(path, {"one file\0files": "keine\0eine Datei\0Dateien"}, header=three)
    assert [m.target for m in read_mo(str(path)) if m.source] == ["eine Datei"]


def test_corpus_rules_and_stats(tmp_path):
    root = _root(tmp_path, {
        "a.mo": {**_fillers(40), "Open": "Öffnen", "Save": "Speichern", "Empty": "", "Blank": "  ",
                 "Same": "Same", "%s: %s": "%s: %s!", "(%d) <b>&amp;</b>": "(%d)!",
                 "menu\x04Quit": "Beenden", "%d file\0%d files": "%d Datei\0%d Dateien",
                 "Tab\there\nand a newline": "Tab\thier\nund ein Zeilenumbruch"},
        "b.mo": {"Open": "Aufmachen", "Save": "Sichern"},
        "c.mo": {"Open": "Aufmachen"},
        "d.mo": {"Save": "Ablegen"}})
    rows, facts = gettext_catalogs.read_corpus("xx", root)
    reason = {}
    for why, source, target in rows:
        reason.setdefault((source, target), why)
    assert reason[("", gettext_catalogs.read_mo(f"{root}/xx/LC_MESSAGES/a.mo")[0].target)] == "header"
    assert reason[("Empty", "")] == reason[("Blank", "  ")] == "empty"
    assert reason[("Same", "Same")] == "identical"
    assert reason[("%s: %s", "%s: %s!")] == reason[("(%d) <b>&amp;</b>", "(%d)!")] == "no_letters"
    # the most common translation wins; a tie keeps the first (catalog name, then msgid)
    assert reason[("Open", "Aufmachen")] == "" and reason[("Open", "Öffnen")] == "duplicate_source"
    assert reason[("Save", "Speichern")] == ""
    assert reason[("Save", "Sichern")] == reason[("Save", "Ablegen")] == "duplicate_source"
    assert [r for r in rows if r[1] == "Open"].count(("", "Open", "Aufmachen")) == 1
    assert reason[("Quit", "Beenden")] == reason[("%d file", "%d Datei")] == ""
    assert reason[("Tab\there\nand a newline", "Tab\thier\nund ein Zeilenumbruch")] == ""
    assert facts == {"catalogs": 4, "skipped": [], "plural_kept": 1, "context_kept": 1}

    data = _quiet(f"gettext:xx:{root}", val_fraction=0.3)
    _adds_up(data.stats)
    got = dict(zip(data.train_sources + data.eval_sources, data.train_targets + data.eval_targets))
    assert got["Tab\there\nand a newline"] == "Tab\thier\nund ein Zeilenumbruch"  # exactly
    assert len(got) == len(data.train_sources) + len(data.eval_sources) == 40 + 5
    dropped = {r: data.stats["train"]["dropped"].get(r, 0) + data.stats["eval"]["dropped"].get(r, 0)
               for r in gettext_catalogs.DROP_REASONS}
    assert dropped == {"header": 4, "empty": 2, "identical": 1, "no_letters": 2, "duplicate_source": 4}
    assert data.stats["catalogs"] == {"read": 4, "skipped": [], "plural_kept": 1, "context_kept": 1}
    assert 0 <= data.stats["eval"]["near_duplicates"] <= len(data.eval_sources)
    assert "4 catalogs (0 skipped)" in pairs.describe(data.stats)
    for split in ("train", "eval"):  # both splits in sha1(source) order
        texts = getattr(data, f"{split}_sources")
        assert texts == sorted(texts, key=pairs._sha1)


def test_normalised_split_keeps_variants_together(tmp_path):
    assert normalise("Cannot  open %5.2f\tin 12 {x}") == "cannot open % in 00 %"
    assert normalise("cannot open %s") == normalise("Cannot open %d") == normalise("cannot open %(f)s")
    variants = {}
    for i in range(60):
        word = chr(97 + i % 26) * (1 + i // 26)
        variants[f"cannot open {word} %s"] = f"kann {word} %s nicht öffnen"
        variants[f"Cannot  open {word} %1$d"] = f"Kann {word} %1$d nicht öffnen"
    data = _quiet(f"gettext:xx:{_root(tmp_path, {'a.mo': variants})}", val_fraction=0.3)
    assert data.train_sources and data.eval_sources
    for sources_ in (data.train_sources, data.eval_sources):
        assert {normalise(s) for s in sources_} == {normalise(s) for s in sources_ if "%s" in s}
        assert len(sources_) == 2 * len({normalise(s) for s in sources_})


def test_placeholders():
    text = "Cannot open %1$s: %s %'d %-10s %5.2f %lu %(name)s {0} {} {name!r} {0:>5}"
    assert placeholders(text) == tuple(sorted(["%1$s", "%s", "%'d", "%-10s", "%5.2f", "%lu",
                                               "%(name)s", "{0}", "{}", "{name!r}", "{0:>5}"]))
    assert placeholders('<b>Bold</b> <a href="x">link</a><br/> &amp; &#160; <pathspec>') == tuple(sorted(
        ["<b>", "</b>", '<a href="x">', "</a>", "<br/>", "&amp;", "&#160;"]))
    assert placeholders("100%% done, 50% off, {not a field}") == ()
    assert placeholders("%s und %s") == placeholders("%s and %s") == ("%s", "%s")  # a multiset
    assert placeholders("%2$s %1$s") == placeholders("%1$s %2$s")  # order is free


def test_near_duplicates():
    train = ["cannot open file %s", "Permission denied"]
    queries = ["Cannot open  file %d", "cannot open the file %s", "Something else entirely"]
    assert gettext_catalogs.near_duplicates(train, queries) == 2  # ratio 1.0 and 0.95; none
    assert gettext_catalogs.near_duplicates(train, queries, ratio=0.99) == 1


def test_dev_band(tmp_path):
    root = _root(tmp_path, {"a.mo": _fillers(400)})
    eval_ = _quiet(f"gettext:xx:{root}", val_fraction=0.1)
    dev = _quiet(f"gettext:xx:{root}", val_fraction=0.1, eval_split="dev")
    bucket = {s: sources.split_bucket(normalise(s)) for s in eval_.train_sources + eval_.eval_sources}
    assert eval_.eval_sources and dev.eval_sources
    assert all(bucket[s] < 100 for s in eval_.eval_sources)
    assert all(100 <= bucket[s] < 200 for s in dev.eval_sources)
    assert all(bucket[s] >= 200 for s in dev.train_sources)
    assert sorted(dev.eval_sources + dev.train_sources) == sorted(eval_.train_sources)
    _adds_up(dev.stats)
    assert "under 0.5" in _err(ValueError, _quiet, f"gettext:xx:{root}", val_fraction=0.5,
                               eval_split="dev")


def test_missing_language_corrupt_and_unreadable_catalogs(tmp_path):
    root = _root(tmp_path, {"a.mo": _fillers(40)}, lang="xx_YY")
    msg = _err(ConfigError, check_pairs_spec, f"gettext:xx:{root}")
    assert "no gettext catalogs for 'xx'" in msg and "xx_YY: name one" in msg
    assert "pairs:GLOB" in msg and "tfds:wmt14_translate/de-en" in msg
    assert "no gettext catalogs" in _err(ConfigError, _quiet, f"gettext:xx:{root}")
    assert "no gettext catalogs for 'de'" in _err(ConfigError, check_pairs_spec, f"gettext:de:{tmp_path}/none")
    write_mo(tmp_path / "LC_MESSAGES" / "a.mo", _fillers(4))  # a root that is itself a language dir
    assert "no gettext catalogs for ''" in _err(ConfigError, check_pairs_spec, f"gettext::{tmp_path}")

    check_pairs_spec(f"gettext:xx_YY:{root}")
    bad = tmp_path / "xx_YY" / "LC_MESSAGES" / "broken.mo"
    bad.write_bytes(b"not a catalog at all, just text")
    (tmp_path / "xx_YY" / "LC_MESSAGES" / "dir.mo").mkdir()  # unreadable: not a file
    lines = []
    data = load_pairs(f"gettext:xx_YY:{root}", val_fraction=0.3, log=lines.append)
    assert data.stats["catalogs"]["read"] == 1
    assert data.stats["catalogs"]["skipped"] == [f"{bad}: not a valid .mo catalog (bad magic number)",
                                                 f"{bad.parent / 'dir.mo'}: Is a directory"]
    assert any("skipped 2 unreadable catalogs" in line and "broken.mo" in line for line in lines)
    (tmp_path / "xx_YY" / "LC_MESSAGES" / "a.mo").write_bytes(b"\xde\x12\x04\x95" + b"\0" * 8)
    msg = _err(ValueError, _quiet, f"gettext:xx_YY:{root}")
    assert "none of the 3 catalogs" in msg and "a.mo" in msg


def test_real_german_catalogs():
    if not gettext_catalogs.catalog_paths("de"):
        pytest.skip("no German gettext catalogs under /usr/share/locale")
    data = _quiet("gettext:de")
    s = data.stats
    _adds_up(s)
    assert len(data.train_sources) + len(data.eval_sources) > 30_000
    assert 0.03 < len(data.eval_sources) / len(data.train_sources) < 0.07
    assert s["catalogs"]["read"] > 50 and s["train"]["dropped"]["identical"] > 0
    assert len(set(data.train_sources + data.eval_sources)) == len(data.train_sources + data.eval_sources)
    assert not {normalise(x) for x in data.train_sources} & {normalise(x) for x in data.eval_sources}
    assert 0 < s["eval"]["near_duplicates"] < len(data.eval_sources)


def test_files_key_follows_the_catalogs(tmp_path):
    """The example cache's key changes when a package upgrade adds or rewrites a catalog."""
    root = _root(tmp_path, {"a.mo": _fillers(4)})
    first = pairs.files_key(f"gettext:xx:{root}")
    assert first and pairs.files_key(f"gettext:xx:{root}") == first
    write_mo(tmp_path / "xx" / "LC_MESSAGES" / "b.mo", _fillers(2))
    assert pairs.files_key(f"gettext:xx:{root}") != first
