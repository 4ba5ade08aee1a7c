"""experiment.resolve: every bad value fails with one line naming the key and the fix; each
family's and task's keys come from its registered dataclass."""
import dataclasses

import pytest

from llmjax import config as C
from llmjax import experiment as E
from llmjax.blocks import attention, transformer
from llmjax.models.gpt import GPTConfig


def _cfg(**overrides):
    c = E.base_config()
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
        E.resolve(_cfg(**overrides), num_devices=1)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_empty_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(C.ConfigError, match="empty"):
        E.resolve(_cfg(data__dataset=f"text:{tmp_path}/*.txt"), num_devices=1)


def test_batch_must_divide_devices():
    with pytest.raises(C.ConfigError, match="divisible by mesh data\\*fsdp=8"):
        E.resolve(_cfg(train__batch_size=12), num_devices=8)
    with pytest.raises(C.ConfigError, match="config.mesh"):
        E.resolve(_cfg(mesh__data=3, mesh__fsdp=1, mesh__tensor=1), num_devices=8)


def test_unknown_key_in_config_file():
    c = _cfg()
    c.model.num_layer = 3  # a typo a config file could make
    with pytest.raises(C.ConfigError, match="unknown key"):
        E.resolve(c, num_devices=1)


def test_a_key_of_another_family_names_the_family_and_lists_its_keys():
    c = _cfg(model__name="lstm")  # GPT's keys, switched to the LSTM
    with pytest.raises(C.ConfigError, match=r"config.model.attention_backend='auto': unknown key for model "
                                            r"family 'lstm'; known keys of config.model: name, num_layers, "
                                            r"d_model, hidden,") as e:
        E.resolve(c, num_devices=1)
    assert "num_heads" not in str(e.value)


def test_mesh_shape_fills_the_rest():
    assert C.mesh_shape(C.MeshConfig(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
    assert C.mesh_shape(C.MeshConfig(data=-1, fsdp=1, tensor=1), 8) == (8, 1, 1)
    assert C.mesh_shape(C.MeshConfig(data=1, fsdp=-1, tensor=1), 8) == (1, 8, 1)


def test_resolve_freezes_and_finalize_pads_vocab():
    run = E.resolve(_cfg(), num_devices=1)
    assert isinstance(run.model, GPTConfig) and run.model.num_kv_heads == 0
    m = run.model.finalize(vocab_size=257, max_len=128, platform="cpu", dtype="bfloat16")
    assert m.vocab_size == 320 and m.attention_backend == "xla" and m.num_kv_heads == m.num_heads
    assert m.max_len == 128 and m.dtype == "bfloat16"
    assert run.model.finalize(257, 128, "gpu", "float32").attention_backend == "cudnn"
    with pytest.raises(Exception):
        run.train.num_steps = 3  # frozen


def test_check_resumable():
    saved = E.base_config().to_dict()
    current = E.base_config().to_dict()
    current["train"]["num_steps"] = 5000  # extending a run is fine
    E.check_resumable(saved, current, "w")
    current["model"]["d_model"] = 512
    with pytest.raises(C.ConfigError, match="config.model.d_model=512 but the run in w used 384"):
        E.check_resumable(saved, current, "w")


def test_where_and_how_the_corpus_is_prepared_may_change_on_resume():
    saved = E.base_config().to_dict()
    current = E.base_config().to_dict()
    current["data"].update(prepared_dir="/corpora/stdlib", num_workers=8, eval_tokens=0)
    E.check_resumable(saved, current, "w")
    current["data"]["vocab_size"] = 8192
    with pytest.raises(C.ConfigError, match="config.data.vocab_size=8192"):
        E.check_resumable(saved, current, "w")


def test_a_key_added_since_the_run_was_recorded_resumes_at_its_default():
    """config.json of a run from before data.decode_errors existed lacks it: not a change (for
    a resume, and for a fork of that run: both compare with config.first_change)."""
    saved = E.base_config().to_dict()
    del saved["data"]["decode_errors"]
    current = E.base_config().to_dict()
    E.check_resumable(saved, current, "w")
    assert C.first_change(saved, current, ("data",)) is None
    current["data"]["decode_errors"] = "replace"
    with pytest.raises(C.ConfigError, match="config.data.decode_errors='replace' but the run in "
                                            "w used 'strict'"):
        E.check_resumable(saved, current, "w")


def test_keys_and_defaults_come_from_the_registered_dataclasses():
    c = E.base_config()
    keys = {f.name for f in dataclasses.fields(GPTConfig) if not f.metadata.get("runtime")}
    assert set(c.model.keys()) == keys and "vocab_size" not in c.model and "dtype" not in c.model
    assert c.model.d_model == GPTConfig.d_model and c.task.name == "lm"
    with pytest.raises(C.ConfigError, match="config.model.name='nope': unknown model family"):
        E.base_config("nope")


def test_choice_lists_have_one_source():
    """Every choice a block accepts is accepted by the config, and nothing else (attention
    backends: the config used to reject 'jax', which the attention accepts)."""
    for backend in attention.BACKENDS:
        E.resolve(_cfg(model__attention_backend=backend), num_devices=1)
    for remat in transformer.REMATS:
        E.resolve(_cfg(model__remat=remat), num_devices=1)
    with pytest.raises(C.ConfigError, match="must be one of auto, xla, jax, cudnn"):
        E.resolve(_cfg(model__attention_backend="flash"), num_devices=1)


def test_wrong_type_is_one_line():
    import ml_collections

    c = _cfg()
    c.train = ml_collections.ConfigDict(dict(c.train.to_dict(), num_steps="ten"))  # a whole group replaced
    with pytest.raises(C.ConfigError, match="config.train.num_steps='ten': must be of type int"):
        E.resolve(c, num_devices=1)


@pytest.mark.parametrize("model, task", [("gpt", "mlm"), ("bert", "lm")])
def test_a_task_the_family_cannot_train_is_one_line(model, task):
    from llmjax.experiment import base_config, resolve

    with pytest.raises(C.ConfigError, match=rf"config.task.name='{task}': config.model.name='{model}' is trained on"):
        resolve(base_config(model, task))
