"""Eight CPU devices for every test (sharding tests need them; others use device 0), XLA's CPU
backend at optimization level 0, and one JAX compilation cache per test session."""
import os
import shutil
import tempfile

flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    flags += " --xla_force_host_platform_device_count=8"
# Compiling dominates most tests of tiny models, so XLA's CPU backend compiles at optimization
# level 0 (its default is 2): the default suite's wall time on the 2-core CPU fell by about a fifth
# from level 1, and every test passes at both (the pinned regression losses, the decoding tests'
# 2e-5 tolerances and the slow tests included).
if "xla_backend_optimization_level" not in flags:
    flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = flags.strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Many tests compile the same programs (the tiny configs' train step, in-process and in the
# `llmjax.main` subprocesses they start), so one persistent compilation cache is shared by the
# xdist workers (they inherit this environment) and those subprocesses. Only compiles over jax's
# default 1 s are stored: caching every small one made the suite slower (writes cost more than
# the hits saved). It starts empty each session and is removed at its end; a cache dir the
# caller set (even empty: no cache) is used as it is. The size cap turns on jax's file lock, so
# concurrent writers are safe.
_SESSION_CACHE = ""
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="llmjax-test-jax-cache-")
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_SESSION_CACHE,
                      JAX_COMPILATION_CACHE_MAX_SIZE=str(2 << 30))


import pytest  # noqa: E402


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Under `-n auto` (pytest.ini: --dist loadgroup), the tests of a module that share one of
    its module-scoped fixtures (a training run, a converted model) go to one worker, so the
    fixture is made once rather than once on each worker that gets one of them."""
    for item in items:
        module = item.nodeid.split("::")[0]
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(d.scope != "function" and d.baseid == module
               for name in item.fixturenames for d in info.name2fixturedefs.get(name, ())):
            item.add_marker(pytest.mark.xdist_group(module))


def pytest_sessionfinish(session, exitstatus):
    if _SESSION_CACHE:  # only the process that made it (the controller, or a run without xdist)
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture()
def mocked_tfds(tmp_path, monkeypatch):
    """Real glue / imdb_reviews / wmt14_translate / conll2003 builder code over
    tfds.testing.mock_data's random examples.

    MockPolicy.USE_CODE leaves the builder unprepared with no splits, so we write each builder's
    own metadata (features from its code, array_record, the splits) and mock with USE_FILES.
    The mock's `__getitems__` drops `self` (tfds 4.9), so batch reads fall back to one by one.
    """
    # tfds imports its dataset modules lazily: these register the builders.
    import tensorflow_datasets.text.conll2003
    import tensorflow_datasets.text.glue
    import tensorflow_datasets.text.imdb
    import tensorflow_datasets.translate.wmt14  # noqa: F401
    from tensorflow_datasets.core import splits as splits_lib
    from tensorflow_datasets.core.data_sources import base

    import tensorflow_datasets as tfds

    for name, splits in (("glue/sst2", ("train", "validation", "test")),
                         ("glue/mrpc", ("train", "validation", "test")),
                         ("imdb_reviews", ("train", "test", "unsupervised")),
                         ("wmt14_translate/de-en", ("train", "validation", "test")),
                         ("conll2003", ("train", "dev", "test"))):
        b = tfds.builder(name, data_dir=str(tmp_path), file_format="array_record")
        b.info.set_splits(splits_lib.SplitDict([splits_lib.SplitInfo(
            name=s, shard_lengths=[9], num_bytes=0,
            filename_template=tfds.core.ShardedFileTemplate(
                data_dir=b.data_dir, dataset_name=b.name, split=s,
                filetype_suffix="array_record")) for s in splits]))
        os.makedirs(b.data_dir)
        b.info.write_to_directory(b.data_dir)
    monkeypatch.setattr(base.BaseDataSource, "__getitems__",
                        lambda self, keys: [self[k] for k in keys])
    with tfds.testing.mock_data(num_examples=9, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(tmp_path)):
        yield str(tmp_path)


