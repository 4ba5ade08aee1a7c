"""BERT's sentence-pair (NSP) examples, built in token space on the prepared token streams.

The prepared corpus is already a 1-D stream (each document's ids, then EOS), so the text is
not read twice: documents are cut into segments with per-id tables derived from
`tokenizer.pieces()` (one rule for code and prose, vectorised with numpy), and instances are
made as in BERT's create_pretraining_data.py (Devlin et al. 2019), each stored as ranges into
the stream rather than copies (29 bytes an instance). A large stream is built block by block in
worker processes and its instances kept in a memory-mapped file, so neither memory nor the
time to the first step of a later run grows with the corpus. Batches are pure functions of
(seed, step), like PackedBatches.

Shape key: B batch rows, L seq_len, T stream tokens, S segments, D documents, N instances.
"""
from __future__ import annotations

import bisect
import concurrent.futures.process  # BrokenProcessPool: not loaded until a pool starts
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable

import numpy as np

from llmjax.config import UserError
from llmjax.data.atomic import atomic_write
from llmjax.data.order import EpochOrder
from llmjax.data.token_cache import TokenStream
from llmjax.data.tokenizers import Tokenizer
from llmjax.data.workers import Workers

_SENTENCE_ENDS = (".", "!", "?")


@dataclasses.dataclass(frozen=True)
class PieceTables:
    """Per-id facts about each token's text that segmentation needs (all shape (vocab_size,))."""
    content: np.ndarray  # bool: has non-whitespace text
    space: np.ndarray  # bool: non-empty and whitespace only
    newlines: np.ndarray  # int32: newlines in a whitespace-only piece (0 otherwise)
    ends_sentence: np.ndarray  # bool: ends in . ! ?
    starts_space: np.ndarray  # bool: starts with whitespace (a newline included)
    ends_line: np.ndarray  # bool: ends with a newline

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> PieceTables:
        pieces = tokenizer.pieces()
        space = np.array([p != "" and p.isspace() for p in pieces])
        return cls(content=np.array([p.strip() != "" for p in pieces]), space=space,
                   newlines=np.array([p.count("\n") if s else 0 for p, s in zip(pieces, space)],
                                     np.int32),
                   ends_sentence=np.array([p.endswith(_SENTENCE_ENDS) for p in pieces]),
                   starts_space=np.array([p[:1].isspace() for p in pieces]),
                   ends_line=np.array([p.endswith("\n") for p in pieces]))


@dataclasses.dataclass(frozen=True)
class Segments:
    """Segments of the stream's documents; a document's segments tile it (EOS excluded)."""
    start: np.ndarray  # int64 (S,): stream position of each segment's first token
    length: np.ndarray  # int64 (S,)
    doc_first: np.ndarray  # int64 (D,): first segment of each document with text
    doc_count: np.ndarray  # int64 (D,): its number of segments


def segment_stream(tokens_T: np.ndarray, tokenizer: Tokenizer, max_len: int) -> Segments:
    """Cut each document of the stream into segments (see segment_tokens)."""
    return segment_tokens(np.asarray(tokens_T), PieceTables.from_tokenizer(tokenizer),
                          tokenizer.eos_id, max_len)


def segment_tokens(tok: np.ndarray, tab: PieceTables, eos_id: int, max_len: int) -> Segments:
    """Cut each document into segments: at sentence ends and blank lines, then long ones.

    A sentence ends after a piece ending in . ! ? when the next piece starts with whitespace;
    a blank line is two newlines with only whitespace between them (the cut goes after the
    last newline of the whitespace run, so the next line keeps its indentation). Whitespace-only
    pieces of text join the segment before them (the first segment: the one after). A segment
    longer than max_len is cut after every line end, then every max_len tokens.
    """
    if max_len < 1:
        raise ValueError(f"max_len={max_len} must be positive")
    n = len(tok)
    eos = np.flatnonzero(tok == eos_id)
    doc_starts = np.concatenate([[0], eos + 1]).astype(np.int64)
    doc_ends = np.concatenate([eos, [n]]).astype(np.int64)
    content_C = np.zeros(n + 1, _index_dtype(n))  # content_C[i] = tokens with text before i
    np.cumsum(tab.content[tok], out=content_C[1:])
    has_text = content_C[doc_ends] > content_C[doc_starts]
    doc_starts, doc_ends = doc_starts[has_text], doc_ends[has_text]

    cuts = _sorted_unique(_sentence_cuts(tok, tab), _blank_line_cuts(tok, tab, content_C, eos))
    starts, docs = _keep_starts(cuts, doc_starts, doc_ends, content_C)

    ends = np.minimum(np.append(starts[1:], n), doc_ends[docs])
    long = ends - starts > max_len
    if long.any():  # cut long segments after each line end
        line_cuts = np.flatnonzero(tab.ends_line[tok[:-1]]) + 1
        seg = np.searchsorted(starts, line_cuts, side="right") - 1
        ok = seg >= 0
        ok[ok] = long[seg[ok]] & (line_cuts[ok] < ends[seg[ok]])
        line_cuts = line_cuts[ok]
        starts, docs = _keep_starts(_sorted_unique(starts, line_cuts), doc_starts, doc_ends,
                                    content_C)
        ends = np.minimum(np.append(starts[1:], n), doc_ends[docs])
    extra = np.maximum(ends - starts - 1, 0) // max_len  # then hard cuts every max_len tokens
    if extra.any():
        owner = np.repeat(np.arange(len(starts)), extra)
        k = np.arange(len(owner)) - np.repeat(np.cumsum(extra) - extra, extra) + 1
        hard = starts[owner] + k * max_len
        order = np.argsort(np.concatenate([starts, hard]), kind="stable")
        starts = np.concatenate([starts, hard])[order]
        docs = np.concatenate([docs, docs[owner]])[order]
        ends = np.minimum(np.append(starts[1:], n), doc_ends[docs])
    _, doc_first, doc_count = np.unique(docs, return_index=True, return_counts=True)
    return Segments(start=starts.astype(np.int64), length=(ends - starts).astype(np.int64),
                    doc_first=doc_first.astype(np.int64), doc_count=doc_count.astype(np.int64))


def _sentence_cuts(tok: np.ndarray, tab: PieceTables) -> np.ndarray:
    """Positions right after a piece ending in . ! ? that is followed by whitespace."""
    return np.flatnonzero(tab.ends_sentence[tok[:-1]] & tab.starts_space[tok[1:]]) + 1


def _blank_line_cuts(tok: np.ndarray, tab: PieceTables, content_C: np.ndarray,
                     eos: np.ndarray) -> np.ndarray:
    """Positions right after the last newline of each whitespace run holding two or more."""
    nl_pos = np.flatnonzero(tab.newlines[tok])  # whitespace pieces holding newlines (sparse)
    if len(nl_pos) == 0:
        return nl_pos
    # newline pieces j and j+1 share a whitespace run when only whitespace is between them:
    # no text and no EOS (the stream's only pieces that are neither text nor whitespace)
    doc = np.searchsorted(eos, nl_pos)
    joined = (content_C[nl_pos[1:]] == content_C[nl_pos[:-1] + 1]) & (doc[1:] == doc[:-1])
    last_in_run = np.append(~joined, True)
    two_or_more = (tab.newlines[tok[nl_pos]] >= 2) | np.insert(joined, 0, False)
    return nl_pos[last_in_run & two_or_more] + 1


def _sorted_unique(*arrays: np.ndarray) -> np.ndarray:
    x = np.sort(np.concatenate(arrays))
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if len(x) else x


def _index_dtype(n: int) -> np.dtype:
    """int32 counts where they fit: halves the memory and time of cumsums over the stream."""
    return np.dtype(np.int32 if n < 2**31 - 1 else np.int64)


def _keep_starts(cuts: np.ndarray, doc_starts: np.ndarray, doc_ends: np.ndarray,
                 content_C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment starts, their document): every document start, and each cut inside a document
    that has text both before it (in the document) and before the next cut."""
    d = np.searchsorted(doc_starts, cuts, side="right") - 1
    ok = d >= 0
    ok[ok] = (cuts[ok] > doc_starts[d[ok]]) & (cuts[ok] < doc_ends[d[ok]])
    cuts, d = cuts[ok], d[ok]
    starts = np.concatenate([doc_starts, cuts])
    docs = np.concatenate([np.arange(len(doc_starts)), d])
    first = np.concatenate([np.ones(len(doc_starts), bool), np.zeros(len(cuts), bool)])
    order = np.argsort(starts, kind="stable")
    starts, docs, first = starts[order], docs[order], first[order]
    ends = np.minimum(np.append(starts[1:], content_C.shape[0] - 1), doc_ends[docs])
    text_in = content_C[ends] > content_C[starts]
    text_before = content_C[starts] > content_C[doc_starts[docs]]
    keep = first | (text_in & text_before)
    return starts[keep], docs[keep]


# ---------------------------------------------------------------- instances


def truncation_counts(len_a: np.ndarray, len_b: np.ndarray, max_num_tokens: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Tokens BERT's truncate_seq_pair removes from A and from B (closed form of its loop).

    The loop drops one token at a time from the longer side (B on ties) until the pair fits:
    first the difference comes off the longer side, then the two alternate, B first.
    """
    excess = np.maximum(len_a + len_b - max_num_tokens, 0)
    first = np.minimum(excess, np.abs(len_a - len_b))
    rest = excess - first
    a_longer = len_a > len_b
    from_a = np.where(a_longer, first, 0) + rest // 2
    from_b = np.where(a_longer, 0, first) + rest - rest // 2
    return from_a, from_b


def build_pass(seg: Segments, max_num_tokens: int, short_seq_prob: float,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One pass of BERT's instance creation over every document (as ranges into the stream).

    Per document: a target length (max_num_tokens, or with short_seq_prob a random one in
    [2, max_num_tokens]); segments are accumulated until they reach it; A is the first a_end
    of them (random in [1, len-1]); B is the rest (label 0) or, with probability 0.5 and always
    when the chunk is one segment, a random span of another document (label 1), in which case
    the unused segments are put back. The pair is then truncated to max_num_tokens from the
    front or back of the longer side at random.
    """
    starts = seg.start.tolist()
    cum = np.concatenate([[0], np.cumsum(seg.length)]).tolist()
    doc_first, doc_count = seg.doc_first.tolist(), seg.doc_count.tolist()
    n_docs, M = len(doc_first), max_num_tokens
    # Every chunk consumes at least one segment, so S draws of each kind are enough.
    # Draws stay a float64 array, read a chunk's six at a time: as lists they would cost
    # 32 bytes each, the largest part of a block's memory.
    draws_6xS = rng.random((6, max(1, len(starts))))
    a0, la, b0, lb, label, forced = [], [], [], [], [], []
    k = 0
    for d in range(n_docs):
        i = doc_first[d]
        end = i + doc_count[d]
        while i < end:
            u_short, u_target, u_split, u_coin, u_doc, u_from = draws_6xS[:, k].tolist()
            target = M if u_short >= short_seq_prob else 2 + int(u_target * (M - 1))
            x = bisect.bisect_left(cum, cum[i] + target, i + 1, end)  # chunk = segments [i, x)
            a_end = 1 if x - i == 1 else 1 + int(u_split * (x - i - 1))
            a0.append(starts[i])
            la.append(cum[i + a_end] - cum[i])
            if x - i == 1 or u_coin < 0.5:
                r = int(u_doc * (n_docs - 1))
                r += r >= d
                s = doc_first[r] + int(u_from * doc_count[r])
                y = bisect.bisect_left(cum, cum[s] + max(1, target - la[-1]), s + 1,
                                       doc_first[r] + doc_count[r])
                b0.append(starts[s])
                lb.append(cum[y] - cum[s])
                label.append(1)
                forced.append(x - i == 1)
                i += a_end  # the unused segments go back
            else:
                b0.append(starts[i + a_end])
                lb.append(cum[x] - cum[i + a_end])
                label.append(0)
                forced.append(False)
                i = x
            k += 1
    a_start, a_len = np.array(a0, np.int64), np.array(la, np.int64)
    b_start, b_len = np.array(b0, np.int64), np.array(lb, np.int64)
    cut_a, cut_b = truncation_counts(a_len, b_len, M)
    front_a, front_b = rng.binomial(cut_a, 0.5), rng.binomial(cut_b, 0.5)  # a coin per token
    return {"a_start": a_start + front_a, "a_len": a_len - cut_a,
            "b_start": b_start + front_b, "b_len": b_len - cut_b,
            "label": np.array(label, np.int32), "forced": np.array(forced, bool)}


# ---------------------------------------------------------------- blocks


BLOCK_TOKENS = 1 << 24  # a block's instances pair its own documents; memory is per block
FORMAT = 1  # bump when the instances' meaning changes (names the cache files)
_PASS_STREAM = 1  # pass p draws from default_rng([seed, p, 1, block]); epoch order from [seed, epoch]

COUNTS = ("documents", "segments", "examples", "random_next", "forced_random", "tokens")
INSTANCE = np.dtype([("a_start", "<i8"), ("a_len", "<i4"), ("b_start", "<i8"), ("b_len", "<i4"),
                     ("label", "<i4"), ("forced", "?")])


def stream_blocks(tokens: np.ndarray | TokenStream, block_tokens: int = BLOCK_TOKENS
                  ) -> list[tuple[int, int]]:
    """[start, end) stream ranges of the blocks: runs of whole shards (documents never straddle
    one) of at least block_tokens tokens, a short tail joining the block before it. An array
    in memory is one block."""
    if not isinstance(tokens, TokenStream) or len(tokens.lengths) <= 1:
        return [(0, len(tokens))]
    bounds = tokens.starts.tolist()
    blocks, first = [], 0
    for end in range(1, len(bounds)):
        if bounds[end] - bounds[first] >= block_tokens:
            blocks.append((bounds[first], bounds[end]))
            first = end
    if first < len(bounds) - 1:
        if blocks and bounds[-1] - bounds[first] < block_tokens // 2:
            blocks[-1] = (blocks[-1][0], bounds[-1])
        else:
            blocks.append((bounds[first], bounds[-1]))
    return blocks


def _rng(seed: int, p: int, block: int) -> np.random.Generator:
    """Block 0 keeps the key a whole-stream build always used, so a corpus of one block gives
    the instances it gave before blocks existed."""
    return np.random.default_rng([seed, p, _PASS_STREAM] + ([block] if block else []))


def block_instances(tokens_T: np.ndarray, offset: int, tab: PieceTables, eos_id: int,
                    max_num_tokens: int, short_seq_prob: float, seed: int, passes: int,
                    block: int) -> tuple[list[np.ndarray], dict]:
    """One INSTANCE array per pass over a block's tokens (which start at stream position
    offset), and the block's counts (COUNTS: summed over blocks, they give the stats without
    reading the instances again)."""
    seg = segment_tokens(np.asarray(tokens_T), tab, eos_id, max(1, max_num_tokens // 2))
    if len(seg.doc_first) < 2:
        return [np.empty(0, INSTANCE)] * passes, {"documents": len(seg.doc_first),
                                                  "segments": len(seg.start)}
    out = []
    for p in range(passes):
        built = build_pass(seg, max_num_tokens, short_seq_prob, _rng(seed, p, block))
        inst = np.empty(len(built["label"]), INSTANCE)
        for name in INSTANCE.names:
            inst[name] = built[name]
        inst["a_start"] += offset
        inst["b_start"] += offset
        out.append(inst)
    whole = np.concatenate(out)
    return out, {"documents": len(seg.doc_first), "segments": len(seg.start),
                 "examples": len(whole), "random_next": int(whole["label"].sum()),
                 "forced_random": int(whole["forced"].sum()),
                 "tokens": int(whole["a_len"].sum(dtype=np.int64) + whole["b_len"].sum(dtype=np.int64)
                               + 3 * len(whole))}


# ---------------------------------------------------------------- batches


class SentencePairs:
    """[CLS] A [SEP] B [SEP] examples with NSP labels; the batch of a step is a pure function.

    Instances come from `passes` passes over the documents (BERT's dupe_factor). The stream is
    cut into blocks of about BLOCK_TOKENS tokens at shard boundaries (stream_blocks), built
    independently (in `workers` spawned processes), so memory does not grow with the corpus; a
    random B comes from another document of the same block, as in BERT's
    create_pretraining_data run on one input shard. Pass p of block b draws from
    default_rng([seed, p, 1, b]) (a stream apart from the epoch order's). Instances are held
    pass by pass, block by block: in memory, or with cache_dir in one memory-mapped file named
    by everything they depend on (built once, reused by every later run and resume, like
    Megatron's sample index files). Segments are at most half of max_num_tokens = seq_len - 3,
    so a full-length chunk always holds two or more of them (a one-segment chunk forces a
    random B, as in BERT). Instances are visited in llmjax.data.order.EpochOrder (shuffled per
    epoch for training, in order for eval); eval rows past the end are all [PAD] with weight 0
    (and attention_mask 0).
    """

    def __init__(self, tokens: np.ndarray | TokenStream, tokenizer: Tokenizer, seq_len: int,
                 batch_size: int, seed: int, *, shuffle: bool, passes: int = 5,
                 short_seq_prob: float = 0.1, cache_dir: str | None = None, source_id: str = "",
                 workers: int = 1, block_tokens: int = BLOCK_TOKENS,
                 log: Callable[[str], None] | None = None):
        if np.ndim(tokens) != 1:
            raise ValueError(f"tokens must be a 1-D stream, got shape {np.shape(tokens)}")
        if seq_len < 5:
            raise ValueError(f"seq_len={seq_len} leaves no room for [CLS] A [SEP] B [SEP]: "
                             "use seq_len >= 5")
        if batch_size < 1 or passes < 1:
            raise ValueError(f"batch_size={batch_size} and passes={passes} must be positive")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob={short_seq_prob} must be in [0, 1]")
        t0 = time.perf_counter()
        self.tokens, self.seq_len, self.batch_size = tokens, seq_len, batch_size
        self.seed, self.shuffle = seed, shuffle
        self.max_num_tokens = seq_len - 3
        self.pad_id, self.cls_id, self.sep_id = tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id
        blocks = stream_blocks(tokens, block_tokens)
        job = dict(tab=PieceTables.from_tokenizer(tokenizer), eos_id=tokenizer.eos_id,
                   max_num_tokens=self.max_num_tokens, short_seq_prob=short_seq_prob, seed=seed,
                   passes=passes)
        if cache_dir is None:
            built = [block_instances(tokens[s:e], s, block=b, **job)
                     for b, (s, e) in enumerate(blocks)]
            self.instances = np.concatenate([inst[p] for p in range(passes) for inst, _ in built])
            counts = {k: sum(c.get(k, 0) for _, c in built) for k in COUNTS}
        else:
            key = hashlib.sha1(json.dumps(
                [FORMAT, source_id, len(tokens), seq_len, seed, passes, short_seq_prob,
                 block_tokens, tokenizer.fingerprint()]).encode()).hexdigest()[:16]
            path = os.path.join(cache_dir, f"pairs-{key}.npy")
            counts = _cached(path, tokens, blocks, job, workers, log or (lambda _: None))
        if counts["documents"] < 2:
            raise ValueError(f"the token stream has {counts['documents']} document(s) with text, "
                             "too few for sentence pairs (a random B comes from another document): "
                             "use more data, at least two documents with text")
        if cache_dir is not None:
            self.instances = np.load(path, mmap_mode="r")
        self._order = EpochOrder(self.num_examples, batch_size, seed, shuffle)
        n = max(counts["examples"], 1)
        self.stats = {"documents": counts["documents"], "segments": counts["segments"],
                      "blocks": len(blocks), "examples": self.num_examples,
                      "random_next": counts["random_next"] / n,
                      "forced_random": counts["forced_random"] / n,
                      "mean_tokens": counts["tokens"] / n, "seconds": time.perf_counter() - t0}

    a_start = property(lambda self: self.instances["a_start"])
    a_len = property(lambda self: self.instances["a_len"])
    b_start = property(lambda self: self.instances["b_start"])
    b_len = property(lambda self: self.instances["b_len"])
    labels = property(lambda self: self.instances["label"])
    forced_random = property(lambda self: self.instances["forced"])

    @property
    def num_examples(self) -> int:
        return len(self.instances)

    @property
    def num_batches(self) -> int:
        """Batches that cover every example once (the last one padded when not shuffling)."""
        return self._order.num_batches

    def indices(self, step: int, rows: slice | None = None) -> np.ndarray:
        """Example indices of the step's batch (or its `rows` part); -1 marks padding."""
        return self._order.indices(step, rows)

    def batch(self, step: int, rows: slice | None = None) -> dict[str, np.ndarray]:
        """tokens, token_types, attention_mask int32 (B, L); nsp_labels int32, weights f32 (B,)."""
        idx = self.indices(step, rows)
        real = idx >= 0
        inst = self.instances[np.where(real, idx, 0)]  # (B,) records, read from the file
        la_B1 = np.where(real, inst["a_len"], 0)[:, None].astype(np.int64)
        lb_B1 = np.where(real, inst["b_len"], 0)[:, None].astype(np.int64)
        t_1xL = np.arange(self.seq_len)[None, :]
        in_a_BxL = (t_1xL >= 1) & (t_1xL < 1 + la_B1)
        in_b_BxL = (t_1xL >= 2 + la_B1) & (t_1xL < 2 + la_B1 + lb_B1)
        pos_BxL = np.where(in_a_BxL, inst["a_start"][:, None] + t_1xL - 1,
                           np.where(in_b_BxL, inst["b_start"][:, None] + t_1xL - 2 - la_B1, 0))
        tokens_BxL = np.where(in_a_BxL | in_b_BxL, np.asarray(self.tokens[pos_BxL], np.int32),
                              np.int32(self.pad_id))
        sep_BxL = (t_1xL == 1 + la_B1) | (t_1xL == 2 + la_B1 + lb_B1)
        tokens_BxL[sep_BxL] = self.sep_id
        tokens_BxL[:, 0] = self.cls_id
        length_B1 = np.where(real[:, None], 3 + la_B1 + lb_B1, 0)
        tokens_BxL[~real] = self.pad_id
        types_BxL = (t_1xL >= 2 + la_B1) & (t_1xL < length_B1)
        return {"tokens": tokens_BxL.astype(np.int32),
                "token_types": types_BxL.astype(np.int32),
                "attention_mask": (t_1xL < length_B1).astype(np.int32),
                "nsp_labels": np.where(real, inst["label"], 0).astype(np.int32),
                "weights": real.astype(np.float32)}


def _cached(path: str, tokens: np.ndarray | TokenStream, blocks: list[tuple[int, int]], job: dict,
            workers: int, log: Callable[[str], None]) -> dict:
    """Build the instance file at path unless it is there; the blocks' summed COUNTS.

    Each block's passes are saved by the worker that builds them (`path.b{b}.p{p}.npy`, then
    `path.b{b}.json` last), then joined pass by pass into path, written atomically, and
    `path.json` last: a build that is killed resumes from its finished blocks, and a
    half-written file is never read."""
    if os.path.exists(f"{path}.json") and os.path.exists(path):
        with open(f"{path}.json", encoding="utf-8") as f:
            return json.load(f)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t0, parts = time.time(), [f"{path}.b{b}" for b in range(len(blocks))]
    todo = [b for b in range(len(blocks)) if not os.path.exists(f"{parts[b]}.json")]
    n = max(1, min(workers, len(todo)))
    log(f"data: building BERT sentence pairs from {len(tokens):,} tokens in {len(blocks)} "
        f"block(s), {len(todo)} to do, {n} worker(s)")
    pool = Workers(n)
    try:
        for _ in pool.imap(_block_job, ((_block_tokens(tokens, *blocks[b]), blocks[b][0], job, b,
                                         parts[b]) for b in todo)):
            pass
    except concurrent.futures.process.BrokenProcessPool:
        raise UserError(f"a worker building {path} died (out of memory?): run again with fewer "
                        "workers (config.data.num_workers); finished blocks are kept") from None
    finally:
        pool.close(cancel=True)
    counts, lengths = dict.fromkeys(COUNTS, 0), []
    for part in parts:
        with open(f"{part}.json", encoding="utf-8") as f:
            done = json.load(f)
        lengths.append(done.pop("lengths"))
        counts = {k: counts[k] + done.get(k, 0) for k in COUNTS}
    if counts["documents"] >= 2:
        def join(f) -> None:  # written, not memory-mapped: the pages would count as ours
            header = {"descr": np.lib.format.dtype_to_descr(INSTANCE), "fortran_order": False,
                      "shape": (int(np.sum(lengths)),)}
            np.lib.format.write_array_header_2_0(f, header)
            for p in range(job["passes"]):
                for part in parts:
                    f.write(np.load(f"{part}.p{p}.npy").tobytes())

        atomic_write(path, join)
        atomic_write(f"{path}.json", lambda f: f.write(json.dumps(counts).encode()))
        for part in parts:
            for q in range(job["passes"]):
                os.remove(f"{part}.p{q}.npy")
            os.remove(f"{part}.json")
        log(f"data: {int(np.sum(lengths)):,} sentence pairs in {time.time() - t0:.1f}s, "
            f"saved to {path}")
    return counts


def _block_tokens(tokens: np.ndarray | TokenStream, start: int, end: int
                  ) -> np.ndarray | TokenStream:
    """What a worker needs to read tokens[start:end]: a stream of the block's own shards
    (pickled as file names) or, for an array, the slice."""
    if not isinstance(tokens, TokenStream):
        return tokens[start:end]
    first = int(np.searchsorted(tokens.starts, start, side="right")) - 1
    return tokens.part(first, int(np.searchsorted(tokens.starts, end, side="left")))


def _block_job(tokens: np.ndarray | TokenStream, offset: int, job: dict, block: int,
               part: str) -> None:
    instances, counts = block_instances(np.asarray(tokens), offset, block=block, **job)
    for p, inst in enumerate(instances):
        atomic_write(f"{part}.p{p}.npy", lambda f, a=inst: np.save(f, a))
    counts["lengths"] = [len(a) for a in instances]
    atomic_write(f"{part}.json", lambda f: f.write(json.dumps(counts).encode()))
