"""Reading and writing Hugging Face weight files: one safetensors file, shards + index, bfloat16,
pytorch_model.bin (single, sharded, pre-1.6 format), and one-line errors for what is not a checkpoint."""
import json
import os

import ml_dtypes
import numpy as np
import pytest

from llmjax.config import UserError
from llmjax.interop import hf_files


def _tensors():
    rng = np.random.RandomState(0)
    return {"a.weight": rng.randn(8, 16).astype(np.float32), "a.bias": rng.randn(16).astype(np.float32),
            "b.weight": rng.randn(32, 8).astype(np.float32), "ids": np.arange(5, dtype=np.int64)}


def _read_all(path):
    get, names = hf_files.read_tensors(str(path))
    return {name: get(name) for name in names}


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name, x in want.items():
        assert got[name].dtype == (np.float32 if x.dtype.kind not in "iub" else x.dtype), name
        np.testing.assert_array_equal(got[name], x.astype(got[name].dtype))


def test_single_file_round_trip(tmp_path):
    assert hf_files.write_tensors(str(tmp_path), _tensors().items()) == ["model.safetensors"]
    _assert_same(_read_all(tmp_path), _tensors())


def test_shards_and_index_round_trip(tmp_path):
    """600 bytes per shard: a.weight (512) + a.bias (64) share one, b.weight (1024, over the
    limit) gets its own, ids the last."""
    files = hf_files.write_tensors(str(tmp_path), _tensors().items(), max_shard_bytes=600)
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)] + ["model.safetensors.index.json"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["a.bias"] == "model-00001-of-00003.safetensors"
    assert index["metadata"]["total_size"] == sum(x.nbytes for x in _tensors().values())
    assert sorted(os.listdir(tmp_path)) == sorted(files)  # no temporary parts left
    _assert_same(_read_all(tmp_path), _tensors())


def test_bfloat16_reads_as_float32(tmp_path):
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    hf_files.write_tensors(str(tmp_path), [("w", x.astype(ml_dtypes.bfloat16))])
    got = _read_all(tmp_path)["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_duplicate_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tensor 'w' is written twice"):
        hf_files.write_tensors(str(tmp_path), [("w", np.zeros(2)), ("w", np.ones(2))])


def test_directory_without_weights_names_the_expected_files(tmp_path):
    with pytest.raises(ValueError, match="holds no Hugging Face weights: expected one of model.safetensors, "
                                         "model.safetensors.index.json, pytorch_model.bin"):
        hf_files.read_tensors(str(tmp_path))


def test_index_naming_a_missing_shard(tmp_path):
    hf_files.write_tensors(str(tmp_path), _tensors().items(), max_shard_bytes=600)
    os.remove(tmp_path / "model-00002-of-00003.safetensors")
    with pytest.raises(ValueError, match="names shards that are not there: model-00002-of-00003.safetensors"):
        hf_files.read_tensors(str(tmp_path))


def test_unknown_tensor_name(tmp_path):
    hf_files.write_tensors(str(tmp_path), _tensors().items())
    get, _ = hf_files.read_tensors(str(tmp_path))
    with pytest.raises(ValueError, match="tensor 'nope' is not in the checkpoint"):
        get("nope")


def test_bin_single_and_sharded(tmp_path):
    torch = pytest.importorskip("torch", reason=".bin checkpoints are read with torch.load")
    state = {k: torch.from_numpy(v) for k, v in _tensors().items()}
    state["half"] = torch.ones(3, dtype=torch.bfloat16) / 3
    want = {**_tensors(), "half": (torch.ones(3, dtype=torch.bfloat16) / 3).float().numpy()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    _assert_same(_read_all(tmp_path), want)
    legacy = tmp_path / "legacy"  # the pre-1.6 format, which cannot be memory-mapped
    legacy.mkdir()
    torch.save(state, legacy / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    _assert_same(_read_all(legacy), want)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[:2], names[2:])):
        file = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({n: state[n] for n in part}, sharded / file)
        weight_map.update((n, file) for n in part)
    (sharded / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _assert_same(_read_all(sharded), want)


class _NotATensor:
    pass


@pytest.mark.parametrize("content, reason", [({"w": "text"}, "not a plain dict of name -> tensor"),
                                             (_NotATensor(), "holds objects other than tensors")])
def test_bin_that_is_not_a_tensor_dict(tmp_path, content, reason):
    torch = pytest.importorskip("torch", reason=".bin checkpoints are read with torch.load")
    torch.save(content, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=reason) as e:
        hf_files.read_tensors(str(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("keep", [4, 50, -100])  # bytes kept: header length, header, all but the last tensor bytes
def test_truncated_safetensors_is_one_line_naming_the_file(tmp_path, keep):
    hf_files.write_tensors(str(tmp_path), _tensors().items())
    file = tmp_path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:keep])
    with pytest.raises(UserError, match=f"{file} is not a complete safetensors file .*: download it again") as e:
        _read_all(tmp_path)
    assert "\n" not in str(e.value)


def test_truncated_shard_and_broken_index_name_their_file(tmp_path):
    hf_files.write_tensors(str(tmp_path), _tensors().items(), max_shard_bytes=600)
    shard = tmp_path / "model-00002-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    get, _ = hf_files.read_tensors(str(tmp_path))
    with pytest.raises(UserError, match=f"{shard} is not a complete safetensors file"):
        get("b.weight")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(index.read_text()[:40])
    with pytest.raises(UserError, match=f"{index} is not valid JSON .*: download it again"):
        hf_files.read_tensors(str(tmp_path))


def test_broken_config_json_names_the_file(tmp_path):
    from llmjax.interop import hf

    (tmp_path / "config.json").write_text('{"model_type": "gpt2",')
    with pytest.raises(UserError, match=f"{tmp_path / 'config.json'} is not valid JSON .*: download it again") as e:
        hf.read_config(str(tmp_path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_bin_is_one_line_naming_the_file(tmp_path, legacy):
    torch = pytest.importorskip("torch", reason=".bin checkpoints are read with torch.load")
    file = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.zeros(64, 64)}, file, _use_new_zipfile_serialization=not legacy)
    file.write_bytes(file.read_bytes()[:-1000])
    with pytest.raises(UserError, match=f"{file} is not a complete PyTorch checkpoint .*: download it again") as e:
        hf_files.read_tensors(str(tmp_path))
    assert "\n" not in str(e.value)


def test_a_run_from_a_truncated_checkpoint_is_refused_before_any_work(tmp_path):
    """config.init_from (as configs/hf.py:DIR sets it): every shard's header is checked at resolve."""
    from llmjax.config import ConfigError
    from llmjax.experiment import base_config, resolve

    hf_files.write_tensors(str(tmp_path), _tensors().items(), max_shard_bytes=600)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    shard = tmp_path / "model-00003-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    cfg = base_config()
    cfg.init_from = str(tmp_path)
    with pytest.raises(ConfigError, match=f"config.init_from: {shard} is not a complete safetensors file"):
        resolve(cfg)
