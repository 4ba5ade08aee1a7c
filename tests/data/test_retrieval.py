"""The retrieval baselines' most similar train source: which words count, what characters find
that words miss, and what they return."""
import numpy as np
import pytest

from llmjax.data import retrieval

TRAIN = ["def get_running_loop():\n    return _running_loop.get()",
         "def parse_header(line):\n    return line.split(';')",
         "def close(self):\n    self.file.close()",
         "def close(self):\n    self.file.close()"]


def test_words_split_snake_case_names_and_keep_symbols():
    assert retrieval.words("def Get_Running_loop(self):") == [
        "def", "get_running_loop", "get", "running", "loop", "(", "self", ")", ":"]
    assert retrieval.words("__init__ _x x_") == ["__init__", "_x", "x_"]  # nothing to split


def test_nearest_by_shared_words_and_name_parts():
    queries = ["def running_loop_of(x):\n    return loop",  # shares only the parts of a name
               "def header_parse(text):\n    return text",
               "def close(self):\n    self.file.close()",  # two equal sources: the first
               "lambda"]  # no word in common with any train source
    assert retrieval.nearest(TRAIN, queries) == [0, 1, 2, -1]


def test_nearest_indexes_only_the_pool():
    assert retrieval.nearest(TRAIN, [TRAIN[2]], pool=2) != [2]
    assert retrieval.nearest(TRAIN[:0], [TRAIN[2]]) == [-1]
    assert retrieval.nearest(TRAIN, []) == []


def test_memory_matches_characters_where_words_differ():
    """A morphological variant: words match the pair sharing one whole word, the translation
    memory the pair sharing the stems (what a CAT tool's fuzzy match proposes)."""
    sources = ["Open file", "Files were closed"]
    targets = ["Datei öffnen", "Dateien wurden geschlossen"]
    query = ["Opened files"]
    assert retrieval.nearest(sources, query) == [1]
    proposals, sim_Q = retrieval.memory(sources, targets, query)
    assert proposals == ["Datei öffnen"] and 0.0 < sim_Q[0] < 1.0
    proposals, sim_Q = retrieval.memory(sources, targets, ["Open file", "Q", "open FILE"])
    assert proposals == ["Datei öffnen", "", "Datei öffnen"]  # none shares a character: ''
    assert sim_Q.dtype == np.float32 and sim_Q.tolist() == pytest.approx([1.0, 0.0, 1.0])


def test_memory_indexes_only_the_pool_and_wants_pairs():
    assert retrieval.memory(TRAIN, ["a", "b", "c", "d"], [TRAIN[2]], pool=2)[0] != ["c"]
    assert retrieval.memory([], [], ["x"])[0] == [""]
    assert retrieval.memory(TRAIN, ["a", "b", "c", "d"], [])[0] == []
    with pytest.raises(ValueError, match="4 train sources but 1 targets"):
        retrieval.memory(TRAIN, ["a"], ["x"])


def test_memory_matches_of_the_indexed_sources_skip_themselves():
    """Training pairs' memory (queries=None): each source's best other source, never itself,
    even where a duplicate ties it; -1 where no other source shares a character."""
    sources = ["Open file", "Open files", "Close window", "Close window", "Q"]
    best_Q, sim_Q = retrieval.memory_matches(sources)
    assert best_Q.tolist() == [1, 0, 3, 2, -1]
    assert sim_Q[2] == pytest.approx(1.0) and 0.0 < sim_Q[0] < 1.0 and sim_Q[4] == 0.0
    # Against other queries nothing is excluded: a query equal to a source finds it.
    assert retrieval.memory_matches(sources, ["open FILE"])[0].tolist() == [0]
    many = [f"message number {i}" for i in range(600)]  # more than one chunk of queries
    best, _ = retrieval.memory_matches(many)
    assert (best != np.arange(600)).all() and (best >= 0).all()
