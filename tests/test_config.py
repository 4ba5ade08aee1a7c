"""config.resolve: every bad value fails with one line naming the key and the fix."""
import pytest

from llmjax import config as C


def _cfg(**overrides):
    c = C.base_config()
    c.data.tokenizer = "byte"
    for key, value in overrides.items():
        group, leaf = key.split("__")
        c[group][leaf] = value
    return c


@pytest.mark.parametrize("overrides, needle", [
    ({"model__d_model": 100, "model__num_heads": 3}, "config.model.d_model=100"),
    ({"model__num_kv_heads": 4, "model__num_heads": 6}, "config.model.num_kv_heads=4"),
    ({"data__seq_len": 300, "model__max_len": 256}, "config.data.seq_len=300"),
    ({"model__position": "relative"}, "config.model.position='relative'"),
    ({"optim__schedule": "exp"}, "config.optim.schedule"),
    ({"train__dtype": "float16"}, "config.train.dtype"),
    ({"train__batch_size": 10, "train__grad_accum_steps": 4}, "config.train.batch_size=10"),
    ({"data__dataset": "text:/nonexistent/*.txt"}, "matches no files"),
    ({"data__dataset": "hf:foo"}, "config.data.dataset"),
    ({"train__num_steps": 0}, "config.train.num_steps=0"),
    ({"model__dropout": 1.5}, "config.model.dropout"),
])
def test_bad_values_fail_with_one_line(overrides, needle):
    with pytest.raises(C.ConfigError) as e:
        C.resolve(_cfg(**overrides), num_devices=1)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_empty_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(C.ConfigError, match="empty"):
        C.resolve(_cfg(data__dataset=f"text:{tmp_path}/*.txt"), num_devices=1)


def test_batch_must_divide_devices():
    with pytest.raises(C.ConfigError, match="divisible by mesh data\\*fsdp=8"):
        C.resolve(_cfg(train__batch_size=12), num_devices=8)
    with pytest.raises(C.ConfigError, match="config.mesh"):
        C.resolve(_cfg(mesh__data=3, mesh__fsdp=1, mesh__tensor=1), num_devices=8)


def test_unknown_key_in_config_file():
    c = _cfg()
    c.model.num_layer = 3  # a typo a config file could make
    with pytest.raises(C.ConfigError, match="unknown key"):
        C.resolve(c, num_devices=1)


def test_mesh_shape_fills_the_rest():
    assert C.mesh_shape(C.MeshConfig(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
    assert C.mesh_shape(C.MeshConfig(data=-1, fsdp=1, tensor=1), 8) == (8, 1, 1)
    assert C.mesh_shape(C.MeshConfig(data=1, fsdp=-1, tensor=1), 8) == (1, 8, 1)


def test_resolve_freezes_and_model_config_pads_vocab():
    run = C.resolve(_cfg(), num_devices=1)
    m = run.model_config(vocab_size=257, platform="cpu")
    assert m.vocab_size == 320 and m.attention_backend == "xla" and m.num_kv_heads == m.num_heads
    assert run.model_config(257, "gpu").attention_backend == "cudnn"
    with pytest.raises(Exception):
        run.train.num_steps = 3  # frozen


def test_check_resumable():
    saved = C.base_config().to_dict()
    current = C.base_config().to_dict()
    current["train"]["num_steps"] = 5000  # extending a run is fine
    C.check_resumable(saved, current, "w")
    current["model"]["d_model"] = 512
    with pytest.raises(C.ConfigError, match="config.model.d_model=512 but the run in w used 384"):
        C.check_resumable(saved, current, "w")
