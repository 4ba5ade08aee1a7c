"""The Python standard library as a tfds dataset: a real corpus that needs no download.

Every machine that runs llmjax has it, so the default run trains on ~30M characters of
real code and prose without internet. The builder is an ordinary
`tfds.core.GeneratorBasedBuilder`: it is prepared once as array_record into a data dir and
read back with `as_data_source`, exactly like any other tfds dataset (no TensorFlow needed).

The split is by file (a stable hash of the relative path), so a validation file is never
seen in training and the split does not move when files are added or removed.
"""
from __future__ import annotations

import math
import os
import sys
import sysconfig
from collections.abc import Iterator

import tensorflow_datasets as tfds
from etils import epath

from llmjax.data.atomic import write_error
from llmjax.data.holdout import eval_files
from llmjax.data.sources import is_validation

DEFAULT_VAL_FRACTION = 0.05
_SKIP_DIRS = ("site-packages", "dist-packages", "__pycache__")
_TOPIC_PREFIX = "pydoc_data.topics:"


def default_data_dir() -> str:
    """Where the stdlib corpus is prepared unless config.data.tfds_data_dir says otherwise."""
    return os.path.join(os.path.expanduser("~"), ".cache", "llmjax", "tfds")


def iter_documents(stdlib_dir: str | None = None) -> Iterator[tuple[str, str]]:
    """(relative path, text) of every readable UTF-8 .py file, then each pydoc topic; sorted."""
    root = stdlib_dir or sysconfig.get_paths()["stdlib"]
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        paths.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    for path in sorted(paths):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):  # test files with deliberate bad encodings
            continue
        yield os.path.relpath(path, root).replace(os.sep, "/"), text
    if stdlib_dir is None:  # the topics belong to the running interpreter
        from pydoc_data.topics import topics
        for name in sorted(topics):
            yield _TOPIC_PREFIX + name, topics[name]


class StdlibCorpusConfig(tfds.core.BuilderConfig):
    """One config per Python version (the content depends on it), validation share and the
    downstream tasks whose eval files the train split leaves out (llmjax.data.holdout)."""

    def __init__(self, *, val_fraction: float = DEFAULT_VAL_FRACTION, holdout: tuple[str, ...] = (),
                 **kwargs):
        super().__init__(**kwargs)
        self.val_fraction = val_fraction
        self.holdout = holdout


def _python_tag() -> str:
    return f"py{sys.version_info.major}_{sys.version_info.minor}"


def config_for(val_fraction: float, holdout: tuple[str, ...] = ()) -> StdlibCorpusConfig:
    """`py3_11` for the default share, `py3_11_val100` (per mille, rounded up) otherwise; then
    `_holdout_` and the held-out tasks' names (sorted) when there are any."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in (0, 1): e.g. 0.05")
    if val_fraction == DEFAULT_VAL_FRACTION and not holdout:
        return StdlibCorpus.BUILDER_CONFIGS[0]
    # h < f*1000 for integer h depends only on ceil(f*1000): equal names mean equal splits.
    permille = math.ceil(val_fraction * 1000)
    name = _python_tag() if val_fraction == DEFAULT_VAL_FRACTION else f"{_python_tag()}_val{permille:03d}"
    held = f", the eval files of {', '.join(holdout)} out of train" if holdout else ""
    if holdout:
        name += "_holdout_" + "_".join(sorted(holdout))
    return StdlibCorpusConfig(name=name, val_fraction=val_fraction, holdout=tuple(sorted(holdout)),
                              description=f"Python {sys.version.split()[0]} stdlib, "
                                          f"{permille}/1000 of files held out{held}")


class StdlibCorpus(tfds.core.GeneratorBasedBuilder):
    """Python's standard library source (.py files) and pydoc topics, split by file."""

    name = "llmjax_stdlib"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [StdlibCorpusConfig(
        name=_python_tag(), val_fraction=DEFAULT_VAL_FRACTION,
        description=f"Python {sys.version.split()[0]} stdlib, 5% of files held out")]

    def __init__(self, *, val_fraction: float | None = None, holdout: tuple[str, ...] = (),
                 stdlib_dir: str | None = None, **kwargs):
        """`val_fraction` and `holdout` pick the config (see `config_for`); `stdlib_dir` is for tests."""
        if val_fraction is not None or holdout:
            if "config" in kwargs:
                raise ValueError("pass either val_fraction/holdout or config to StdlibCorpus, not both")
            kwargs["config"] = config_for(DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction,
                                          holdout)
        self._stdlib_dir = stdlib_dir
        super().__init__(**kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """This file. tfds's own lookup imports `importlib_resources`, which Python 3.9+ lacks."""
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Python standard library .py files and pydoc topics, one per example.",
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "path": tfds.features.Text(),
            }),
            homepage="https://docs.python.org/3/library/",
            license="PSF-2.0",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the corpus is on this machine
        return {
            "train": self._generate_examples(validation=False),
            "validation": self._generate_examples(validation=True),
        }

    def _generate_examples(self, validation: bool):
        frac = self.builder_config.val_fraction
        held = frozenset() if validation else eval_files(self.builder_config.holdout, self._stdlib_dir)
        for path, text in iter_documents(self._stdlib_dir):
            if is_validation(path, frac) == validation and path not in held:
                yield path, {"text": text, "path": path}


def prepare_builder(data_dir: str | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
                    holdout: tuple[str, ...] = ()) -> StdlibCorpus:
    """The builder, prepared as array_record under data_dir (once; later calls reuse it). A data
    dir that cannot be written (an unwritable HOME, a full disk) is a one-line UserError."""
    data_dir = data_dir or default_data_dir()
    try:
        builder = StdlibCorpus(data_dir=data_dir, val_fraction=val_fraction, holdout=holdout)
        if not builder.is_prepared():
            from tensorflow_datasets.core.utils import tqdm_utils
            shown = getattr(tqdm_utils, "_active", True)
            tfds.display_progress_bar(False)  # it takes ~1 s; the bars would only clutter the log
            try:
                builder.download_and_prepare(
                    file_format="array_record",
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False))
            finally:
                tfds.display_progress_bar(shown)
    except OSError as e:
        raise write_error(f"cannot prepare the stdlib corpus in {data_dir}", e,
                          "set config.data.tfds_data_dir to a writable directory") from e
    return builder
