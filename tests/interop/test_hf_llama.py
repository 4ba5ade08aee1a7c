"""Llama checkpoints <-> llmjax GPT (rope, rmsnorm, swiglu, grouped-query attention): logits
parity with transformers (plain, padded, cached), the round trip back to transformers, and
one-line errors for what either side cannot express."""
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="Llama parity tests compare against torch transformers")
transformers = pytest.importorskip("transformers", reason="Llama parity tests build transformers models")

from llmjax.config import ConfigError  # noqa: E402
from llmjax.interop import hf, hf_llama  # noqa: E402
from llmjax.models import registry  # noqa: E402
from llmjax.models.gpt import GPTConfig  # noqa: E402
from tests.interop import parity  # noqa: E402

VOCAB = 300
HF_CONFIG = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64, rope_theta=500.0,
                 rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.1)


def _reload(path):
    """transformers' model from an exported directory, which must fit it exactly."""
    model, info = transformers.LlamaForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny random LlamaForCausalLM (GQA 4:2, perturbed norms, untied head, rope_theta 500 so
    a wrong base shows) saved in 3 shards, and its llmjax conversion."""
    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**HF_CONFIG)).eval()
    parity.perturb(hf_model)
    path = str(tmp_path_factory.mktemp("llama") / "hf")
    hf_model.save_pretrained(path, max_shard_size="60KB")
    model, params, cfg = hf.load(path)
    return hf_model, path, model, params, cfg


def test_config_is_llama_style_gpt(llama):
    _, path, _, _, cfg = llama
    assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    assert (cfg.position, cfg.norm, cfg.ffn, cfg.use_bias) == ("rope", "rmsnorm", "swiglu", False)
    assert not cfg.tie_embeddings and (cfg.vocab_size, cfg.num_kv_heads, cfg.max_len) == (VOCAB, 2, 64)
    assert (cfg.rope_base, cfg.norm_epsilon) == (500.0, 1e-5)


def test_logits_match_transformers(llama):
    hf_model, _, model, params, _ = llama
    assert parity.max_diff_plain(model, params, hf_model, VOCAB, [(1, 1), (2, 9), (3, 64)]) < parity.TOL


def test_right_padding_matches_attention_mask(llama):
    hf_model, _, model, params, _ = llama
    assert parity.max_diff_right_padded(model, params, hf_model, VOCAB) < parity.TOL


def test_cached_left_padded_decoding_matches_full_forward(llama):
    hf_model, _, model, params, _ = llama
    assert parity.max_diff_cached(model, params, hf_model, VOCAB) < parity.TOL


def test_save_round_trips_through_transformers(llama, tmp_path):
    hf_model, _, model, params, cfg = llama
    hf.save(str(tmp_path / "out"), model, params, cfg)
    reloaded = _reload(tmp_path / "out")
    tokens = np.random.RandomState(0).randint(0, VOCAB, (2, 11))
    np.testing.assert_allclose(parity.hf_logits(reloaded, tokens), parity.hf_logits(hf_model, tokens), atol=1e-5)


def test_tied_llmjax_llama_exports_and_loads_back(tmp_path):
    """A tied, padded Llama-style GPT: transformers computes the same logits over the real ids,
    and loading the export gives back the same params less the padding rows (the tied head is
    not written)."""
    cfg = GPTConfig(num_layers=2, d_model=32, num_heads=4, num_kv_heads=1, mlp_dim=48, position="rope",
                    norm="rmsnorm", ffn="swiglu", use_bias=False).finalize(100, 16, "cpu", "float32")
    model = registry.build(cfg)
    params = parity.random_params(model)
    hf.save(str(tmp_path / "out"), model, params, cfg)
    reloaded = _reload(tmp_path / "out")
    tokens = np.random.RandomState(0).randint(0, 100, (2, 16))
    ours = parity.logits(model, params, tokens)
    assert np.abs(ours[..., :100] - parity.hf_logits(reloaded, tokens)).max() < parity.TOL
    _, loaded, loaded_cfg = hf.load(str(tmp_path / "out"))  # without the padding rows
    assert loaded_cfg.tie_embeddings and loaded_cfg.vocab_size == 100
    np.testing.assert_array_equal(loaded["embed"]["embedding"], params["embed"]["embedding"][:100])
    loaded["embed"]["embedding"] = params["embed"]["embedding"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)


@pytest.mark.parametrize("key, value", [
    ("rope_scaling", {"type": "linear", "factor": 2.0}),
    ("rope_parameters", {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}),
    ("attention_bias", True), ("mlp_bias", True), ("hidden_act", "gelu"), ("head_dim", 32)])
def test_config_from_hf_names_what_llmjax_cannot_express(key, value):
    with pytest.raises(ConfigError, match=f"Hugging Face Llama config {key}") as e:
        hf_llama.config_from_hf({**HF_CONFIG, "model_type": "llama", key: value})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key, value", [("position", "learned"), ("use_bias", True), ("ffn", "gelu"),
                                        ("norm_position", "post")])
def test_config_to_hf_names_what_llama_cannot_express(key, value):
    llama_style = {"position": "rope", "norm": "rmsnorm", "ffn": "swiglu", "use_bias": False}
    cfg = GPTConfig(num_layers=1, d_model=32, num_heads=4, **{**llama_style, key: value})
    with pytest.raises(ConfigError, match=f"config.model.{key}={value!r}: Llama"):
        hf_llama.config_to_hf(cfg)


def test_save_with_no_format_for_the_model_names_each_reason(tmp_path):
    cfg = GPTConfig(num_layers=1, d_model=32, num_heads=4, position="alibi").finalize(50, 8, "cpu", "float32")
    model = registry.build(cfg)
    with pytest.raises(ConfigError, match="no Hugging Face format expresses this model .gpt2: .*position='alibi'"
                                          ".*; llama: .*position='alibi'"):
        hf.save(str(tmp_path / "out"), model, parity.random_params(model), cfg)
    assert not list(tmp_path.iterdir())


def test_load_places_each_leaf_on_its_sharding(llama):
    """shardings (a pytree like the params) put each converted leaf where the loop wants it; a
    tree that does not match is a one-line error."""
    _, path, _, params, _ = llama
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("fsdp",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    by_vocab = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp", None))
    shardings = jax.tree_util.tree_map(lambda _: replicated, params)
    shardings["embed"]["embedding"] = by_vocab
    _, placed, _ = hf.load(path, shardings=shardings)
    assert placed["embed"]["embedding"].sharding == by_vocab
    assert placed["layer_1"]["attn"]["query"]["kernel"].sharding == replicated
    jax.tree_util.tree_map(np.testing.assert_array_equal, placed, params)
    del shardings["layer_1"]
    with pytest.raises(ValueError, match="shardings has no entry 'layer_1'"):
        hf.load(path, shardings=shardings)


def test_a_wide_mup_model_is_not_exported():
    cfg = GPTConfig(num_layers=1, d_model=64, num_heads=4, position="rope", norm="rmsnorm", ffn="swiglu",
                    use_bias=False, tie_embeddings=False, parametrization="mup", base_width=16)
    with pytest.raises(ConfigError, match="width multiplier 4 .*Llama has no logit"):
        hf_llama.config_to_hf(cfg)
