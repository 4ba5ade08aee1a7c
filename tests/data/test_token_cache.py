"""The prepared corpus on disk: shards read as one stream, and a manifest that catches damage."""
import hashlib
import os
import re

import numpy as np
import pytest

from llmjax.data import token_cache
from llmjax.data.token_cache import CacheError, TokenStream


def _shards(tmp_path, lengths, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    arrays, paths = [], []
    for i, n in enumerate(lengths):
        a = rng.integers(0, 60000, n).astype(dtype)
        path = tmp_path / f"s{i}.bin"
        path.write_bytes(a.tobytes())
        arrays.append(a)
        paths.append(str(path))
    return paths, arrays


def test_a_stream_of_shards_reads_like_their_concatenation(tmp_path):
    paths, arrays = _shards(tmp_path, [7, 0, 1, 30, 5])  # an empty shard, a 1-token one
    whole = np.concatenate(arrays)
    stream = TokenStream(paths, [len(a) for a in arrays], np.uint16)
    assert len(stream) == len(whole) and stream.shape == whole.shape and stream.ndim == 1
    windows = np.arange(len(whole) - 4)[:, None] + np.arange(5)  # every window, straddling shards
    np.testing.assert_array_equal(stream[windows], whole[windows])
    np.testing.assert_array_equal(stream[3:40:3], whole[3:40:3])
    for a in range(-2, len(whole) + 2):  # contiguous slices are read shard by shard
        for b in range(-2, len(whole) + 2):
            np.testing.assert_array_equal(stream[a:b], whole[a:b])
    np.testing.assert_array_equal(np.asarray(stream.part(2, 4)), np.concatenate(arrays[3:5]))
    np.testing.assert_array_equal(np.asarray(stream), whole)
    np.testing.assert_array_equal(stream.counts(60000), np.bincount(whole, minlength=60000))
    with pytest.raises(IndexError):
        stream[np.array([len(whole)])]


def test_only_the_shards_a_batch_touches_are_opened(tmp_path):
    paths, arrays = _shards(tmp_path, [10, 10, 10])
    stream = TokenStream(paths, [10, 10, 10], np.uint16)
    stream[np.array([[21, 22]])]
    assert list(stream._maps) == [2]


def _prepared(tmp_path):
    directory = tmp_path / "prep"
    (directory / "tokens").mkdir(parents=True)
    shards = {}
    for split, n in (("train", 50), ("val", 9)):
        a = np.arange(n, dtype=np.uint16)
        path = token_cache.shard_path(str(directory), split, 0)
        with open(path, "wb") as f:
            f.write(a.tobytes())
        shards[split] = [{"file": os.path.relpath(path, directory), "tokens": n,
                          "sha1": token_cache.file_sha1(path)}]
    counts = np.bincount(np.arange(50), minlength=64).astype(np.int64)
    np.save(directory / token_cache.UNIGRAM, counts)
    manifest = {"dtype": "uint16", "shards": shards,
                "unigram_sha1": hashlib.sha1(counts.tobytes()).hexdigest()}
    token_cache.write_manifest(str(directory), manifest)
    return directory, token_cache.read_manifest(str(directory))


def test_a_finished_preparation_opens_with_its_counts(tmp_path):
    directory, manifest = _prepared(tmp_path)
    streams, counts = token_cache.open_streams(str(directory), manifest, 64)
    assert len(streams["train"]) == 50 and len(streams["val"]) == 9 and counts.sum() == 50


@pytest.mark.parametrize("damage, message", [
    ("missing", "is missing (the manifest lists it)"),
    ("short", "holds 98 bytes, the manifest says 100"),
    ("flipped", "fails its checksum"),
    ("unigram", "unigram.npy fails its checksum"),
    ("vouched", "holds token id 60000 >= the vocab size 64"),
])
def test_a_damaged_preparation_is_one_line(tmp_path, damage, message):
    directory, manifest = _prepared(tmp_path)
    train = directory / manifest["shards"]["train"][0]["file"]
    if damage == "missing":
        os.remove(train)
    elif damage == "short":
        train.write_bytes(train.read_bytes()[:-2])
    elif damage == "flipped":
        data = bytearray(train.read_bytes())
        data[5] ^= 1
        train.write_bytes(bytes(data))
    elif damage == "unigram":
        np.save(directory / token_cache.UNIGRAM, np.zeros(64, np.int64))
    else:  # a shard that vouches for itself (its manifest entry updated), yet is wrong
        train.write_bytes(np.full(50, 60000, np.uint16).tobytes())
        manifest["shards"]["train"][0]["sha1"] = token_cache.file_sha1(str(train))
    with pytest.raises(CacheError, match=re.escape(message)) as e:
        token_cache.open_streams(str(directory), manifest, 64)
    assert "\n" not in str(e.value) and f"delete {directory}" in str(e.value)


def test_an_unreadable_manifest_is_one_line_and_an_absent_one_is_unfinished(tmp_path):
    assert token_cache.read_manifest(str(tmp_path)) is None
    (tmp_path / token_cache.MANIFEST).write_text("{cut sho")
    with pytest.raises(CacheError, match="manifest.json is unreadable"):
        token_cache.read_manifest(str(tmp_path))


def test_a_stream_of_many_shards_keeps_few_open(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "OPEN_SHARDS", 4)
    paths, arrays = _shards(tmp_path, [3] * 20)
    stream = TokenStream(paths, [3] * 20, np.uint16)
    np.testing.assert_array_equal(stream[np.arange(60)], np.concatenate(arrays))
    assert len(stream._maps) == 4 and list(stream._maps) == [16, 17, 18, 19]
