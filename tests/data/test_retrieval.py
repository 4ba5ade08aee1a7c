"""The retrieval baseline's nearest train source: which words count, and what it returns."""
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
