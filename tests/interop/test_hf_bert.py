"""Hugging Face BERT <-> llmjax BERT: float32 logits parity with transformers' own models.

Tiny random HF models (LayerNorms and biases perturbed, so a transposed kernel, a dropped bias
or a wrong norm shows) are converted with config_from_hf + params_from_hf and compared with
transformers in eval mode over several shapes, with A/B token types and padding; exported
models are read back by transformers' from_pretrained.

Shape key: B batch, L length, V vocabulary, E width, C classes.
"""
import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.interop import hf_bert
from llmjax.models.registry import build

transformers = pytest.importorskip("transformers", reason="HF BERT parity needs transformers")
torch = pytest.importorskip("torch", reason="HF BERT parity needs torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="on-disk checks need safetensors")

VOCAB, LAYERS = 300, 2
SHAPES = [(1, 5), (3, 17), (2, 64)]  # (B, L); 64 = max_position_embeddings
MLM_FRESH = ["mlm_head/norm/bias", "mlm_head/norm/scale", "mlm_head/output_bias",
             "mlm_head/transform/bias", "mlm_head/transform/kernel", "nsp_head/bias", "nsp_head/kernel"]


def _hf_config(**overrides):
    return transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=LAYERS,
                                   num_attention_heads=4, intermediate_size=128,
                                   max_position_embeddings=64, type_vocab_size=2,
                                   initializer_range=0.3, **overrides)


def _hf_model(cls, **overrides):
    """A random transformers model in eval mode, with every LayerNorm and bias moved off its
    init (ones / zeros), which would hide scale/bias mix-ups."""
    torch.manual_seed(0)
    model = cls(_hf_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    return model


def _numpy(model) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _convert(tensors: dict[str, np.ndarray], hf_config: dict, **cfg_overrides):
    cfg = dataclasses.replace(hf_bert.config_from_hf(hf_config), **cfg_overrides)
    params, fresh = hf_bert.params_from_hf(tensors.__getitem__, frozenset(tensors), cfg)
    return cfg, params, fresh


def _inputs(B, L):
    """tokens, A/B token types and a padding mask (row 0 full length, others shorter)."""
    rng = np.random.default_rng(L)
    tokens = rng.integers(0, VOCAB, size=(B, L)).astype(np.int32)
    lengths = np.concatenate([[L], rng.integers(1, L + 1, size=B - 1)])
    mask = (np.arange(L)[None] < lengths[:, None]).astype(np.int32)
    types = ((np.arange(L)[None] >= lengths[:, None] // 2) & (mask == 1)).astype(np.int32)
    return tokens, types, mask


@functools.partial(jax.jit, static_argnums=0, static_argnames=("capture_intermediates", "mutable"))
def _apply(model, params, tokens, types, mask, **kw):
    return model.apply({"params": params}, tokens, token_types=types, attention_mask=mask, **kw)


def _torch_run(model, tokens, types, mask):
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(tokens, dtype=torch.long),
                     token_type_ids=torch.as_tensor(types, dtype=torch.long),
                     attention_mask=torch.as_tensor(mask, dtype=torch.long))


def _close(ours, theirs, mask=None):
    ours, theirs = np.asarray(ours), theirs.numpy() if hasattr(theirs, "numpy") else np.asarray(theirs)
    assert ours.shape == theirs.shape
    real = np.ones(ours.shape[:2], bool) if mask is None else mask.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def pretraining():
    model = _hf_model(transformers.BertForPreTraining)
    return model, _convert(_numpy(model), model.config.to_dict())


def test_pretraining_parity_over_shapes_types_and_padding(pretraining):
    hf, (cfg, params, fresh) = pretraining
    assert fresh == [] and cfg.vocab_size == VOCAB and cfg.max_len == 64 and cfg.num_labels == 0
    for B, L in SHAPES:
        tokens, types, mask = _inputs(B, L)
        mlm_BxLxV, nsp_Bx2 = _apply(build(cfg), params, tokens, types, mask)
        out = _torch_run(hf, tokens, types, mask)
        _close(mlm_BxLxV, out.prediction_logits, mask)  # padded positions are not compared
        _close(nsp_Bx2, out.seq_relationship_logits)


def test_scanned_layers_load_and_export_like_unrolled(pretraining):
    hf, (cfg, params, _) = pretraining
    scan_cfg, scan_params, _ = _convert(_numpy(hf), hf.config.to_dict(), scan_layers=True)
    assert scan_params["layers"]["attn"]["query"]["kernel"].shape == (LAYERS, 64, 4, 16)
    tokens, types, mask = _inputs(*SHAPES[1])  # the unrolled model is compiled for it already
    for ours, theirs in zip(_apply(build(scan_cfg), scan_params, tokens, types, mask),
                            _apply(build(cfg), params, tokens, types, mask)):
        _close(ours, theirs)
    assert (dict(hf_bert.params_to_hf(scan_params, scan_cfg)).keys()
            == dict(hf_bert.params_to_hf(params, cfg)).keys())
    for (name, a), (_, b) in zip(hf_bert.params_to_hf(scan_params, scan_cfg), hf_bert.params_to_hf(params, cfg)):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_save_pretrained_files_convert_like_the_state_dict(pretraining, tmp_path):
    hf, (cfg, params, _) = pretraining
    hf.save_pretrained(tmp_path)
    tensors = safetensors_numpy.load_file(tmp_path / "model.safetensors")
    assert "cls.predictions.decoder.weight" not in tensors  # the tied head is not stored
    disk_cfg, disk_params, fresh = _convert(tensors, json.loads((tmp_path / "config.json").read_text()))
    assert fresh == [] and disk_cfg == cfg
    jax.tree.map(np.testing.assert_array_equal, disk_params, params)


def test_legacy_gamma_beta_and_decoder_bias_names(pretraining):
    hf, (_, params, _) = pretraining
    legacy = {}
    for name, tensor in _numpy(hf).items():
        if name != "cls.predictions.bias":  # kept only as the decoder's bias
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            legacy[name] = tensor
    assert "bert.embeddings.LayerNorm.gamma" in legacy
    _, legacy_params, fresh = _convert(legacy, hf.config.to_dict())
    assert fresh == []
    jax.tree.map(np.testing.assert_array_equal, legacy_params, params)


def _assert_initialised(params, fresh, init_std):
    """Fresh leaves are the model's init (normal(init_std) kernels, zero biases, unit norm
    scales), not zeros or leftovers. (Comparing with a full model.init costs a 5 s compile.)"""
    for path in fresh:
        node = params
        for key in path.split("/"):
            node = node[key]
        if path.endswith("kernel"):
            assert abs(node.std() / init_std - 1) < 0.25, path
        else:
            np.testing.assert_array_equal(node, 1.0 if path.endswith("scale") else 0.0, err_msg=path)


def test_masked_lm_loads_with_a_fresh_pooler_and_nsp_head():
    hf = _hf_model(transformers.BertForMaskedLM)
    cfg, params, fresh = _convert(_numpy(hf), hf.config.to_dict())
    assert fresh == ["nsp_head/bias", "nsp_head/kernel", "pooler/bias", "pooler/kernel"]
    _assert_initialised(params, fresh, cfg.init_std)
    tokens, types, mask = _inputs(*SHAPES[1])  # same config as pretraining: compiled already
    mlm_BxLxV, _ = _apply(build(cfg), params, tokens, types, mask)
    _close(mlm_BxLxV, _torch_run(hf, tokens, types, mask).logits, mask)


def test_bert_model_without_prefix_matches_hidden_states_and_pooled_output():
    hf = _hf_model(transformers.BertModel)
    tensors = _numpy(hf)
    assert not any(n.startswith("bert.") for n in tensors)
    cfg, params, fresh = _convert(tensors, hf.config.to_dict())
    assert fresh == MLM_FRESH
    _assert_initialised(params, fresh, cfg.init_std)
    tokens, types, mask = _inputs(3, 13)
    _, state = _apply(build(cfg), params, tokens, types, mask, capture_intermediates=True,
                      mutable=("intermediates",))
    captured = state["intermediates"]
    out = _torch_run(hf, tokens, types, mask)
    _close(captured[f"layer_{LAYERS - 1}"]["__call__"][0], out.last_hidden_state, mask)
    _close(np.tanh(captured["pooler"]["__call__"][0]), out.pooler_output)


def _export(cfg, params, directory):
    (directory / "config.json").write_text(json.dumps(hf_bert.config_to_hf(cfg)))
    safetensors_numpy.save_file(dict(hf_bert.params_to_hf(params, cfg)), directory / "model.safetensors",
                                metadata={"format": "pt"})


def test_export_reloads_in_transformers_with_the_same_logits(pretraining, tmp_path):
    hf, (cfg, params, _) = pretraining
    _export(cfg, params, tmp_path)
    tokens, types, mask = _inputs(2, 23)
    before = _torch_run(hf, tokens, types, mask)
    again, info = transformers.BertForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    after = _torch_run(again.eval(), tokens, types, mask)
    _close(after.prediction_logits, before.prediction_logits, mask)
    _close(after.seq_relationship_logits, before.seq_relationship_logits)
    masked_lm = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    _close(_torch_run(masked_lm, tokens, types, mask).logits, before.prediction_logits, mask)


@pytest.mark.parametrize("head, arch, labels", [
    ("sequence", "BertForSequenceClassification", 3), ("token", "BertForTokenClassification", 5),
    ("span", "BertForQuestionAnswering", 2)])
def test_task_heads_import_and_export(tmp_path, head, arch, labels):
    """Each task architecture maps onto its llmjax head (span: HF's start/end logits are the
    head's [..., 0] / [..., 1]), and exports back as that architecture."""
    cls = getattr(transformers, arch)
    hf = _hf_model(cls, num_labels=labels, architectures=[arch])
    cfg, params, fresh = _convert(_numpy(hf), hf.config.to_dict())
    assert cfg.head == head and cfg.num_labels == (0 if head == "span" else labels)
    assert fresh == [] and "mlm_head" not in params and ("pooler" in params) == (head == "sequence")
    tokens, types, mask = _inputs(3, 10)

    def theirs(model):
        out = _torch_run(model, tokens, types, mask)
        if head == "span":
            return torch.stack([out.start_logits, out.end_logits], -1)
        return out.logits

    ours = _apply(build(cfg), params, tokens, types, mask)
    _close(ours, theirs(hf), mask if head != "sequence" else None)
    _export(cfg, params, tmp_path)
    _close(theirs(cls.from_pretrained(tmp_path).eval()), theirs(hf), mask if head != "sequence" else None)


@pytest.mark.parametrize("key, value", [
    ("hidden_act", "relu"), ("position_embedding_type", "relative_key"), ("is_decoder", True),
    ("add_cross_attention", True), ("tie_word_embeddings", False), ("model_type", "roberta"),
    ("vocab_size", None),
])
def test_config_json_options_llmjax_cannot_express(key, value):
    hf = {k: v for k, v in {**_hf_config().to_dict(), key: value}.items() if v is not None}
    with pytest.raises(ConfigError, match=f"{key}={value!r}") as err:
        hf_bert.config_from_hf(hf)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key, value", [
    ("norm_position", "pre"), ("position", "rope"), ("norm", "rmsnorm"), ("ffn", "swiglu"),
    ("ffn", "relu"), ("use_bias", False), ("num_kv_heads", 2),
])
def test_llmjax_options_bert_cannot_express(pretraining, key, value):
    _, (cfg, params, _) = pretraining
    bad = dataclasses.replace(cfg, **{key: value})
    for export in (hf_bert.config_to_hf, lambda c: next(hf_bert.params_to_hf(params, c))):
        with pytest.raises(ConfigError, match=f"model.{key}={value!r}") as err:
            export(bad)
        assert "\n" not in str(err.value)


def test_checkpoint_faults_are_one_line_errors(pretraining):
    hf, (cfg, _, _) = pretraining
    tensors, config = _numpy(hf), hf.config.to_dict()
    cases = [  # (tensors, error, message)
        ({**tensors, "cls.predictions.decoder.weight": tensors["cls.predictions.decoder.weight"] + 1},
         ConfigError, "ties the MLM decoder"),
        ({k: v for k, v in tensors.items() if k != "bert.encoder.layer.1.output.dense.bias"},
         ValueError, "lacks bert.encoder.layer.1.output.dense.bias"),
        ({k: v for k, v in tensors.items() if k != "cls.predictions.transform.dense.weight"},
         ValueError, "lacks cls.predictions.transform.dense.weight"),  # a partial head
        ({**tensors, "bert.pooler.dense.weight": tensors["bert.pooler.dense.weight"][:, :8]},
         ValueError, r"bert.pooler.dense.weight has shape \(64, 8\), expected \(64, 64\)"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message) as err:
            hf_bert.params_from_hf(bad.__getitem__, frozenset(bad), cfg)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="classifier_dropout"):
        hf_bert.config_from_hf({**config, "architectures": ["BertForSequenceClassification"],
                                "classifier_dropout": 0.3})
