"""GPT-2 checkpoints <-> llmjax GPT: logits parity with transformers (plain, padded, cached),
greedy generation token for token, every file layout, the round trip back to transformers,
and one-line errors for what either side cannot express."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="GPT-2 parity tests compare against torch transformers")
transformers = pytest.importorskip("transformers", reason="GPT-2 parity tests build transformers models")

from llmjax.config import ConfigError  # noqa: E402
from llmjax.generation import decode  # noqa: E402
from llmjax.interop import hf, hf_gpt2  # noqa: E402
from llmjax.models import registry  # noqa: E402
from llmjax.models.gpt import GPTConfig  # noqa: E402
from tests.interop import parity  # noqa: E402

VOCAB, POSITIONS = 257, 64


def _reload(path):
    """transformers' model from an exported directory, which must fit it exactly."""
    model, info = transformers.GPT2LMHeadModel.from_pretrained(path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A tiny random GPT2LMHeadModel (perturbed norms and biases) saved as safetensors, and its
    llmjax conversion."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=POSITIONS,
                                     initializer_range=0.1, bos_token_id=0, eos_token_id=0)
    hf_model = transformers.GPT2LMHeadModel(config).eval()
    parity.perturb(hf_model)
    path = str(tmp_path_factory.mktemp("gpt2") / "hf")
    hf_model.save_pretrained(path)
    model, params, cfg = hf.load(path)
    return hf_model, path, model, params, cfg


def test_config_is_unpadded_gpt2(gpt2):
    *_, cfg = gpt2
    assert (cfg.vocab_size, cfg.max_len, cfg.mlp_dim, cfg.ffn) == (VOCAB, POSITIONS, 256, "gelu")
    assert cfg.tie_embeddings and cfg.position == "learned" and cfg.dtype == "float32"


def test_logits_match_transformers(gpt2):
    hf_model, _, model, params, _ = gpt2
    assert parity.max_diff_plain(model, params, hf_model, VOCAB, [(1, 1), (2, 7), (3, POSITIONS)]) < parity.TOL


def test_right_padding_matches_attention_mask(gpt2):
    hf_model, _, model, params, _ = gpt2
    assert parity.max_diff_right_padded(model, params, hf_model, VOCAB) < parity.TOL


def test_cached_left_padded_decoding_matches_full_forward(gpt2):
    hf_model, _, model, params, _ = gpt2
    assert parity.max_diff_cached(model, params, hf_model, VOCAB) < parity.TOL


def test_greedy_generation_matches_transformers(gpt2):
    """Left-padded prompts of different lengths; eos id 0 is never reached in 12 steps (checked)."""
    hf_model, _, model, params, _ = gpt2
    prompts = [[5, 17, 99, 3, 250], [42, 7], [200, 201, 202]]
    ours = decode.generate(model, params, prompts, max_new_tokens=12, rng=jax.random.key(0), temperature=0.0)
    tokens_BxP, lengths_B = decode.left_pad(prompts, pad_id=0)
    mask_BxP = decode.prompt_mask(tokens_BxP, lengths_B)
    theirs = hf_model.generate(torch.tensor(tokens_BxP, dtype=torch.long),
                               attention_mask=torch.tensor(mask_BxP, dtype=torch.long), do_sample=False,
                               max_new_tokens=12, pad_token_id=0, eos_token_id=None)
    theirs = theirs[:, tokens_BxP.shape[1]:].numpy()
    assert theirs.shape == (3, 12) and 0 not in theirs
    np.testing.assert_array_equal(ours, theirs)


def test_sharded_safetensors_load_the_same(gpt2, tmp_path):
    hf_model, _, _, params, _ = gpt2
    hf_model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    _, sharded, _ = hf.load(str(tmp_path))
    jax.tree_util.tree_map(np.testing.assert_array_equal, sharded, params)


def test_bin_without_prefix_and_with_old_buffers_loads_the_same(gpt2, tmp_path):
    """A GPT2Model-style pytorch_model.bin (no "transformer." prefix, attn.bias / masked_bias
    buffers of old checkpoints, no lm_head) gives the same params; the buffers are reported."""
    hf_model, path, _, params, _ = gpt2
    state = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, POSITIONS, POSITIONS))
    state["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, tmp_path / "pytorch_model.bin")
    shutil.copy(os.path.join(path, "config.json"), tmp_path)
    logged = []
    _, from_bin, _ = hf.load(str(tmp_path), log=logged.append)
    jax.tree_util.tree_map(np.testing.assert_array_equal, from_bin, params)
    assert logged == ["hf: not read: 2 checkpoint tensors (h.0.attn.bias, h.0.attn.masked_bias)"]


def test_save_round_trips_through_transformers(gpt2, tmp_path):
    hf_model, _, model, params, cfg = gpt2
    hf.save(str(tmp_path / "out"), model, params, cfg, extra_config={"eos_token_id": 0})
    reloaded = _reload(tmp_path / "out")
    assert reloaded.config.eos_token_id == 0
    tokens = np.random.RandomState(0).randint(0, VOCAB, (2, 11))
    np.testing.assert_allclose(parity.hf_logits(reloaded, tokens), parity.hf_logits(hf_model, tokens), atol=1e-5)


def test_llmjax_trained_gpt_exports_padded_untied_and_scanned(tmp_path):
    """A GPT as llmjax trains it (padded vocabulary, untied head, scanned layers, exact GELU)
    gives transformers the same logits over its real ids; the padding rows (whose logits llmjax
    masks and transformers could not) are not exported."""
    cfg = GPTConfig(num_layers=2, d_model=32, num_heads=4, mlp_dim=48, ffn="gelu_exact", tie_embeddings=False,
                    scan_layers=True, init_std=0.2).finalize(100, 16, "cpu", "float32")
    model = registry.build(cfg)
    params = parity.random_params(model)
    hf.save(str(tmp_path / "out"), model, params, cfg)
    reloaded = _reload(tmp_path / "out")
    assert (reloaded.config.vocab_size, cfg.vocab_size) == (100, 128)
    tokens = np.random.RandomState(0).randint(0, 100, (2, 16))
    ours = parity.logits(model, params, tokens)
    assert np.abs(ours[..., :100] - parity.hf_logits(reloaded, tokens)).max() < parity.TOL


@pytest.mark.parametrize("key, value", [("position", "alibi"), ("norm_position", "post"), ("ffn", "swiglu"),
                                        ("use_bias", False), ("num_kv_heads", 2)])
def test_config_to_hf_names_what_gpt2_cannot_express(key, value):
    cfg = GPTConfig(num_layers=1, d_model=32, num_heads=4, **{key: value})
    with pytest.raises(ConfigError, match=f"config.model.{key}={value!r}: GPT-2"):
        hf_gpt2.config_to_hf(cfg)


@pytest.mark.parametrize("key, value", [("activation_function", "silu"), ("scale_attn_by_inverse_layer_idx", True),
                                        ("reorder_and_upcast_attn", True)])
def test_config_from_hf_names_what_llmjax_cannot_express(key, value):
    with pytest.raises(ConfigError, match=f"{key}={value!r}") as e:
        hf_gpt2.config_from_hf({"model_type": "gpt2", key: value})
    assert "\n" not in str(e.value)


def test_unknown_model_type_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "falcon"}))
    with pytest.raises(ConfigError, match="model_type='falcon' is not supported: llmjax converts gpt2, llama"):
        hf.load(str(tmp_path))


def test_is_hf_dir_and_save_refuses_a_non_empty_path(gpt2, tmp_path):
    _, path, model, params, cfg = gpt2
    assert hf.is_hf_dir(path) and not hf.is_hf_dir(str(tmp_path))
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists and is not an empty directory: save to a new path"):
        hf.save(str(tmp_path), model, params, cfg)
    assert os.listdir(tmp_path) == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    hf.save(str(tmp_path / "empty"), model, params, cfg)  # an empty directory is fine
    assert hf.is_hf_dir(str(tmp_path / "empty")) and sorted(os.listdir(tmp_path)) == ["empty", "keep.txt"]


def test_a_mup_model_exports_only_at_its_base_width():
    wide = GPTConfig(num_layers=1, d_model=64, num_heads=4, tie_embeddings=False, parametrization="mup", base_width=32)
    with pytest.raises(ConfigError, match="parametrization='mup' at width multiplier 2 .*GPT-2 has no logit"):
        hf_gpt2.config_to_hf(wide)
    at_base = GPTConfig(num_layers=1, d_model=32, num_heads=4, tie_embeddings=False, parametrization="mup")
    assert hf_gpt2.config_to_hf(at_base)["n_embd"] == 32  # m = 1: the same function as standard
