"""The machine's gettext message catalogs as an English -> LANG parallel corpus.

Debian and Ubuntu ship every installed program's translations as compiled catalogs,
<root>/<LANG>/LC_MESSAGES/*.mo (root /usr/share/locale): each entry an English message and its
human translation (German: git, coreutils, PostgreSQL, GnuPG, GTK, libc, ISO country and
language names, ...). Rules, decided once so that the corpus means the same on every machine:

  language   exactly the directory named (`de` reads <root>/de only, not de_CH or de_AT: those
             are other spelling conventions; name one to read it instead).
  reading    every *.mo of the directory in file-name order, parsed here (the format is a magic
             number and two offset tables) and decoded with the catalog's own charset. The
             standard library's GNUTranslations decodes the header as UTF-8 before it knows the
             charset, so it refuses valid latin-1 catalogs (Debian's net-tools.mo). A catalog
             that cannot be read or is not a valid .mo file is skipped, named in the log and
             counted (a broken system file should not stop a run); none readable fails.
  entries    a context ("ctx\\x04msgid") is dropped from the source (it only guides
             translators; the message is the same text). A plural entry is kept as its singular
             msgid with the translation form that the catalog's Plural-Forms picks for n = 1
             (msgstr[0] in German and French): a real translation of that exact text, while the
             other forms translate the plural msgid. Fuzzy entries never reach a .mo file
             (msgfmt leaves them out unless --use-fuzzy, and the binary format keeps no flags).
  drops      each entry counts under the first reason that applies (DROP_REASONS): the header
             (msgid ""), an empty (or whitespace-only) translation, a translation identical to
             the source, a source with no letters once its placeholders and markup are removed
             ("%s: %s", "(%d)"), and a repeated English source (duplicate_source): of the
             catalogs' translations of one source the most common one is kept (ties: the first in
             catalog-name, msgid order), the consensus of the translators rather than an
             accident of file names.
  texts      kept exactly as the catalogs hold them: newlines, tabs, placeholders and markup
             (the pairs never pass through tab-separated text; the example cache stores UTF-8).

`placeholders` is the multiset that translation must preserve (a translator's check):
printf conversions (`%s`, `%5.2f`, `%-10s`, `%1$s`, `%'d`, `%lu`) and Python's `%(name)s`; brace
fields (`{}`, `{0}`, `{name}`, `{0:>5}`, `{name!r}`); markup tags of a fixed set of names
(MARKUP_TAGS: HTML and GTK's Pango markup, `<b>`, `</b>`, `<a href="...">`, `<br/>`; not
usage metavariables like git's `<pathspec>`, which translators translate); and character
entities (`&amp;`, `&lt;`, `&#160;`). `%%` (a literal percent sign) is not one, nor is a
printf conversion with the space flag (a .mo file does not say which messages are formats, and
"50% off" is text).

`normalise` is the split key: lower case, digits as 0, each printf/brace placeholder as "%",
whitespace runs as one space, so "cannot open %s" and "Cannot open %d" fall on the same side.
"""
from __future__ import annotations

import codecs
import collections
import difflib
import gettext
import glob
import os
import re
import struct
from collections.abc import Sequence
from typing import NamedTuple

DEFAULT_ROOT = "/usr/share/locale"
DROP_REASONS = ("header", "empty", "identical", "no_letters", "duplicate_source")
NEAR_DUPLICATE_RATIO = 0.9
MARKUP_TAGS = ("a", "b", "big", "br", "code", "em", "i", "kbd", "li", "p", "s", "small", "span",
               "strong", "sub", "sup", "tt", "u", "ul")
_MAGIC = 0x950412DE
_PRINTF = (r"%(?:\d+\$)?[-+#0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|Z|t)?"
           r"[diouxXeEfFgGaAcspn]")
_PY_NAMED = r"%\([^()]*\)[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
_BRACE = r"\{[A-Za-z0-9_]*(?:![rsa])?(?::[^{}]*)?\}"
_FORMAT = re.compile(f"%%|{_PY_NAMED}|{_PRINTF}|{_BRACE}")
_TAG = re.compile(r"</?(?:" + "|".join(MARKUP_TAGS) + r")(?:\s[^<>]*)?/?>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#\d+|#[xX][0-9A-Fa-f]+);")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s+")
_CHARSET = re.compile(rb"charset=([A-Za-z0-9_.:-]+)")
_PLURAL = re.compile(rb"plural=([^;\n]+)")


class Message(NamedTuple):
    """One catalog entry: the English source (context removed), its translation, and whether
    it was a plural entry or had a context."""
    source: str
    target: str
    plural: bool = False
    context: bool = False


def placeholders(text: str) -> tuple[str, ...]:
    """The sorted multiset of text's placeholders and markup (the module docstring's set)."""
    found = [m for m in _FORMAT.findall(text) if m != "%%"]
    return tuple(sorted(found + _TAG.findall(text) + _ENTITY.findall(text)))


def normalise(text: str) -> str:
    """The split key: placeholders as "%", lower case, digits as 0, whitespace runs as one space."""
    folded = _FORMAT.sub(lambda m: m.group() if m.group() == "%%" else "%", text)
    return _SPACE.sub(" ", _DIGIT.sub("0", folded.lower())).strip()


def has_letters(text: str) -> bool:
    """Whether text has a letter outside its placeholders, markup and entities."""
    bare = _ENTITY.sub(" ", _TAG.sub(" ", _FORMAT.sub(" ", text)))
    return any(c.isalpha() for c in bare)


def catalog_paths(lang: str, root: str = DEFAULT_ROOT) -> list[str]:
    """The .mo files of one language under root, sorted by file name."""
    return sorted(glob.glob(os.path.join(glob.escape(root), glob.escape(lang), "LC_MESSAGES",
                                         "*.mo")))


def missing_hint(lang: str, root: str = DEFAULT_ROOT) -> str:
    """Why gettext:LANG has nothing to read and what to do, in one line."""
    variants = sorted(os.path.basename(d) for d in glob.glob(os.path.join(
        glob.escape(root), glob.escape(lang) + "[_@]*")) if catalog_paths(os.path.basename(d), root))
    other = f" (catalogs exist for {', '.join(variants)}: name one)" if variants else ""
    return (f"no gettext catalogs for {lang!r} under {root}{other}: install the language's "
            "translations (Debian/Ubuntu: the packages' own translations ship with them; in a "
            "slim container install e.g. `language-pack-de` / remove the "
            "`path-exclude=/usr/share/locale` dpkg rule) or use task.dataset=pairs:GLOB / "
            "tfds:wmt14_translate/de-en")


def read_mo(path: str) -> list[Message]:
    """Every entry of a compiled catalog, the header included (source ""); a plural entry as
    its singular with the form for n = 1. ValueError naming the file when it is not a valid
    .mo file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _parse(data)
    except (ValueError, struct.error, UnicodeDecodeError, LookupError, SyntaxError) as e:
        raise ValueError(f"{path}: not a valid .mo catalog ({e})") from None


def _parse(data: bytes) -> list[Message]:
    if len(data) < 20:
        raise ValueError(f"{len(data)} bytes, shorter than the header")
    for order in "<>":
        if struct.unpack(order + "I", data[:4])[0] == _MAGIC:
            break
    else:
        raise ValueError("bad magic number")
    revision, n, ids_at, strs_at = struct.unpack(order + "4I", data[4:20])
    if revision >> 16 not in (0, 1):
        raise ValueError(f"unknown revision {revision >> 16}")

    def table(at: int) -> list[bytes]:
        offsets = struct.unpack_from(f"{order}{2 * n}I", data, at)
        out = []
        for length, start in zip(offsets[0::2], offsets[1::2]):
            if start + length > len(data):
                raise ValueError("a string runs past the end of the file")
            out.append(data[start:start + length])
        return out

    ids, strs = table(ids_at), table(strs_at)
    header = next((s for i, s in zip(ids, strs) if i == b""), b"")
    charset = _CHARSET.search(header)
    encoding = codecs.lookup(charset.group(1).decode("ascii") if charset else "utf-8").name
    rule = _PLURAL.search(header)
    form = gettext.c2py(rule.group(1).decode("ascii").strip())(1) if rule else 0
    out = []
    for msgid, msgstr in zip(ids, strs):
        context = b"\x04" in msgid
        msgid = msgid.split(b"\x04", 1)[1] if context else msgid
        plural = b"\x00" in msgid
        if plural:
            forms = msgstr.split(b"\x00")
            msgid, msgstr = msgid.split(b"\x00", 1)[0], forms[form] if form < len(forms) else b""
        out.append(Message(msgid.decode(encoding), msgstr.decode(encoding), plural, context))
    return out


def read_corpus(lang: str, root: str = DEFAULT_ROOT
                ) -> tuple[list[tuple[str, str, str]], dict]:
    """(reason or '', source, target) of every entry of every readable catalog, in catalog-name
    and msgid order, dropped ones with their reason; and facts: catalogs read, the ones
    skipped ("path: why"), plural and context entries kept."""
    paths = catalog_paths(lang, root)
    if not paths:
        raise ValueError(missing_hint(lang, root))
    rows: list[list] = []  # [reason, source, target, catalog]
    skipped = []
    kept_kinds = collections.Counter()
    for path in paths:
        try:
            messages = read_mo(path)
        except (OSError, ValueError) as e:
            skipped.append(str(e) if isinstance(e, ValueError) else f"{path}: {e.strerror}")
            continue
        for m in sorted(messages):
            rows.append([_drop_reason(m), m.source, m.target, len(rows)])
            kept_kinds["plural"] += m.plural and not rows[-1][0]
            kept_kinds["context"] += m.context and not rows[-1][0]
    if len(skipped) == len(paths):
        raise ValueError(f"gettext:{lang}: none of the {len(paths)} catalogs under "
                         f"{os.path.join(root, lang, 'LC_MESSAGES')} is readable ({skipped[0]}): "
                         "reinstall the language's translations")
    _mark_duplicates(rows)
    facts = {"catalogs": len(paths) - len(skipped), "skipped": skipped,
             "plural_kept": kept_kinds["plural"], "context_kept": kept_kinds["context"]}
    return [(r[0], r[1], r[2]) for r in rows], facts


def _drop_reason(m: Message) -> str:
    if not m.source:
        return "header"
    if not m.target.strip():
        return "empty"
    if m.target == m.source:
        return "identical"
    if not has_letters(m.source):
        return "no_letters"
    return ""


def _mark_duplicates(rows: list[list]) -> None:
    """Keep, of each source's kept rows, the first with its most common translation."""
    by_source: dict[str, list[list]] = collections.defaultdict(list)
    for row in rows:
        if not row[0]:
            by_source[row[1]].append(row)
    for group in by_source.values():
        if len(group) > 1:
            counts = collections.Counter(r[2] for r in group)
            best = max(group, key=lambda r: (counts[r[2]], -r[3]))
            for row in group:
                if row is not best:
                    row[0] = "duplicate_source"


def near_duplicates(train: Sequence[str], queries: Sequence[str],
                    ratio: float = NEAR_DUPLICATE_RATIO) -> int:
    """How many queries have a train text within a small edit distance: difflib's ratio >=
    `ratio` between the normalised query and its most similar normalised train text (found by
    llmjax.data.retrieval's TF-IDF nearest neighbour)."""
    from llmjax.data import retrieval

    train_n = [normalise(t) for t in train]
    query_n = [normalise(q) for q in queries]
    best = retrieval.nearest(train_n, query_n, pool=len(train_n))
    return sum(i >= 0 and difflib.SequenceMatcher(None, q, train_n[i], autojunk=False).ratio() >= ratio
               for q, i in zip(query_n, best))
