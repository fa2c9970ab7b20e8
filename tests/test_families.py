"""Mistral (sliding window, reward head) and InternLM2 (fused grouped wqkv, dynamic NTK rope): float32 parity with
transformers, KV-cache generation parity, HF -> rsft -> HF bit-exact, presets and the InternLM2.5-20B run row.

InternLM2 is remote code (no transformers class): its reference is a transformers Llama with the same weights and
dynamic rope, written to disk in InternLM2's names and fused layout (tiny_models.build_internlm2).
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from test_convert import assert_bit_equal, read_all

import rsft
from rsft import sharding
from rsft.models import ModelConfig, attention, presets
from rsft.models.layers import rope_inv_freq
from rsft.tools import tiny_models

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def mistral(tmp_path_factory):
  path = tmp_path_factory.mktemp("mistral")
  return path, tiny_models.build("mistral", path)  # sliding_window 16


@pytest.fixture(scope="module")
def internlm2(tmp_path_factory):
  path = tmp_path_factory.mktemp("internlm2")
  return path, tiny_models.build_internlm2(path)  # max_position_embeddings 64, dynamic NTK factor 2, biases


def test_mistral_sliding_window_logprobs_match_transformers(mistral):
  path, hf = mistral
  ids, mask = tiny_models.left_padded_batch(length=72, pad=11)  # 4.5 windows, left padding
  want = tiny_models.hf_logprobs(hf, ids, mask)
  for impl in ("xla", "chunked", "cudnn"):
    m = rsft.load_model(path, attention=impl)
    assert m.config.sliding_window == 16 and m.config.head_dim == 12
    np.testing.assert_allclose(np.asarray(rsft.token_logprobs(m, ids, mask)), want, atol=1e-4, rtol=0, err_msg=impl)
  hf.config.sliding_window = None  # the window matters at this length: full attention is far off
  try:
    assert np.abs(tiny_models.hf_logprobs(hf, ids, mask) - want).max() > 1e-2
  finally:
    hf.config.sliding_window = 16


def _window_inputs(t=200, h=128):
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(3, t, m, h)), jnp.float32) for m in (4, 2, 2))
  seg = np.zeros((3, t), np.int32)
  seg[0, : t - 7] = 1  # one segment, right padding
  seg[1, :90], seg[1, 90:170] = 1, 2  # packed
  seg[2, 37:] = 1  # left padding
  return q, k, v, seg


@pytest.mark.parametrize("impl", ["chunked", "cudnn", "splash"])
def test_every_attention_implementation_honours_the_window(impl):
  """Against an independent numpy mask: key j visible to query i iff same segment and 0 <= i - j < window."""
  window = 24
  q, k, v, seg = _window_inputs()
  rows = [seg, np.repeat(seg[:1], 3, axis=0)]  # as built; every row one right-padded segment (cudnn's flash branch)
  for seg in rows if impl == "cudnn" else rows[:1]:
    i, j = np.arange(seg.shape[1])[:, None], np.arange(seg.shape[1])[None, :]
    mask = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0) & (i - j >= 0) & (i - j < window)
    want = np.asarray(attention.dot_product_attention(q, k, v, jnp.asarray(mask)))
    if impl == "chunked":
      got = attention.chunked(q, k, v, jnp.asarray(seg), chunk=64, window=window)
    elif impl == "cudnn":  # on CPU the same jax.nn.dot_product_attention call runs through XLA
      got = attention.cudnn(q, k, v, jnp.asarray(seg), window=window)
    else:
      got = attention.splash(q, k, v, jnp.asarray(seg), sharding.Rules(None), interpret=True, block=128, window=window)
    real = seg[..., None, None] > 0
    np.testing.assert_allclose(np.where(real, got, 0), np.where(real, want, 0), atol=2e-5)


def test_mistral_greedy_generate_matches_transformers(mistral):
  """The KV-cache path: prompts of 40, 25 and 7 tokens left-padded into one 64-token bucket and prefilled in
  pieces of 16 (so prefill, like decode, attends through the cache mask), then 24 new tokens; window 16."""
  path, hf = mistral
  rng = np.random.default_rng(5)
  prompts = [rng.integers(1, tiny_models.VOCAB, n).tolist() for n in (40, 25, 7)]
  want, want_lp = _hf_greedy(hf, prompts, 24)
  out = rsft.generate(rsft.load_model(path), prompts, 24, options=rsft.Options(prefill_chunk=16), stop_token_ids=[])
  np.testing.assert_array_equal(np.asarray(out.tokens), want)
  np.testing.assert_allclose(np.asarray(out.logprobs), want_lp, atol=1e-4, rtol=0)


def _hf_greedy(hf, prompts, new):
  width = max(map(len, prompts))
  ids, mask = np.zeros((len(prompts), width), np.int64), np.zeros((len(prompts), width), np.int64)
  for r, p in enumerate(prompts):
    ids[r, width - len(p) :], mask[r, width - len(p) :] = p, 1
  with torch.no_grad():
    out = hf.generate(
      input_ids=torch.tensor(ids),
      attention_mask=torch.tensor(mask),
      max_new_tokens=new,
      do_sample=False,
      eos_token_id=None,
      pad_token_id=0,
      output_scores=True,
      return_dict_in_generate=True,
    )
  tokens = out.sequences[:, width:]
  lp = torch.stack(out.scores, 1).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
  return tokens.numpy(), lp.numpy()


def test_mistral_reward_scores_match_transformers(tmp_path):
  """Table 5's RM-Mistral-7B path: MistralForSequenceClassification with a window shorter than the rows."""
  hf = tiny_models.build("mistral", tmp_path, head="score", seed=3)
  ids, mask = tiny_models.left_padded_batch(length=60, pad=9)
  got = np.asarray(rsft.reward_scores(rsft.load_model(tmp_path), ids, mask))
  pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
  with torch.no_grad():
    want = (
      hf(
        input_ids=torch.tensor(ids).long(),
        attention_mask=torch.tensor(mask).long(),
        position_ids=torch.tensor(pos).long(),
      )
      .logits[:, 0]
      .numpy()
    )
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_mistral_round_trip_and_config(tmp_path, mistral):
  out = rsft.export_hf(rsft.load_model(mistral[0]), tmp_path / "out")
  assert_bit_equal(mistral[0], out)
  assert transformers.AutoConfig.from_pretrained(out).sliding_window == 16
  # From scratch: a null window is written out (transformers' default would otherwise be 4096) and read back.
  cfg = presets.get("mistral_7b")
  (tmp_path / "scratch").mkdir()
  (tmp_path / "scratch" / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
  assert transformers.AutoConfig.from_pretrained(tmp_path / "scratch").sliding_window is None
  assert ModelConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
  assert ModelConfig.from_hf_dict({**cfg.to_hf_dict(), "sliding_window": 4096}).sliding_window == 4096
  with pytest.raises(ValueError, match="use_sliding_window"):
    ModelConfig.from_hf_dict(dict(presets.get("qwen2.5_7b").to_hf_dict(), use_sliding_window=True))


def test_internlm2_logprobs_match_transformers_within_and_beyond_max_position(internlm2, tmp_path):
  path, llama = internlm2
  m = rsft.load_model(path)
  cfg = m.config
  assert (cfg.model_type, cfg.rope_dynamic, cfg.num_heads // cfg.num_kv_heads, cfg.qkv_bias) == (
    "internlm2",
    2.0,
    3,
    True,
  )
  for length in (60, 160):  # max_position_embeddings is 64: default rope, then dynamic NTK over 2.5x the context
    ids, mask = tiny_models.left_padded_batch(length=length, pad=13)
    want = tiny_models.hf_logprobs(llama, ids, mask)
    np.testing.assert_allclose(np.asarray(rsft.token_logprobs(m, ids, mask)), want, atol=1e-4, rtol=0)
  # The same weights without the scaling fail the contract past max_position_embeddings: the test can tell.
  raw = json.loads((path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps(dict(raw, rope_scaling=None)))
  os.symlink(path / "model.safetensors", tmp_path / "model.safetensors")
  assert np.abs(np.asarray(rsft.token_logprobs(rsft.load_model(tmp_path), ids, mask)) - want).max() > 1e-3


def test_internlm2_generate_past_max_position_matches_transformers(internlm2):
  """Decoding from 50 to 80 tokens crosses max_position_embeddings=64: the cache keeps each key's rotation and
  each step uses the frequencies for the row's current length, as transformers' generate does for one sequence
  (rsft's rows never depend on their slot-mates; transformers' batched generate would use the longest row's)."""
  path, llama = internlm2
  rng = np.random.default_rng(7)
  prompts = [rng.integers(3, tiny_models.VOCAB, n).tolist() for n in (50, 37)]
  out = rsft.generate(rsft.load_model(path), prompts, 30, stop_token_ids=[])
  for prompt, tokens, logprobs in zip(prompts, out.tokens, out.logprobs):
    want, want_lp = _hf_greedy(llama, [prompt], 30)
    np.testing.assert_array_equal(np.asarray([tokens]), want)
    np.testing.assert_allclose(np.asarray([logprobs]), want_lp, atol=1e-4, rtol=0)


def _reference_dynamic_ntk(theta, dim, factor, max_pos, seq_len):
  """InternLM2DynamicNTKScalingRotaryEmbedding in numpy float32: the base is recomputed past max_pos."""
  f32 = np.float32
  inv = lambda base: (f32(1) / base ** (np.arange(0, dim, 2).astype(f32) / f32(dim))).astype(f32)
  if seq_len <= max_pos:
    return inv(f32(theta))
  base = f32(theta) * ((f32(factor) * f32(seq_len) / f32(max_pos)) - f32(factor - 1)) ** f32(dim / (dim - 2))
  return inv(base)


def test_dynamic_ntk_inv_freq_matches_the_reference_formula():
  cfg = presets.get("internlm2.5_20b")
  assert cfg.rope_dynamic == 2.0 and cfg.max_position_embeddings == 32768
  default = rope_inv_freq(cfg)
  for seq_len in (1, 4096, 32768, 32769, 40000, 65536, 200000):
    got = np.asarray(rope_inv_freq(cfg, seq_len))
    want = _reference_dynamic_ntk(1e6, 128, 2.0, 32768, seq_len)
    np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=str(seq_len))
    if seq_len <= 32768:
      assert np.array_equal(got, default)  # identical to default rope within the context
  assert np.asarray(rope_inv_freq(cfg, 65536))[-1] < 0.5 * default[-1]  # the base grew


@pytest.mark.parametrize("bias,dtype", [(False, "bfloat16"), (True, "float32")])
def test_internlm2_round_trip_is_bit_exact(tmp_path, bias, dtype):
  src = tmp_path / "hf"
  tiny_models.build_internlm2(src, dtype=dtype, bias=bias)
  out = rsft.export_hf(rsft.load_model(src), tmp_path / "out")
  assert_bit_equal(src, out)
  assert any(k.endswith("attention.wqkv.bias") for k in read_all(out)) == bias
  assert json.loads((src / "config.json").read_text()) == json.loads((tmp_path / "out" / "config.json").read_text())
  assert os.path.exists(os.path.join(out, "modeling_internlm2.py"))  # auto_map's remote code travels
  cfg = ModelConfig.from_dir(src)[0]  # a from-scratch InternLM2's config.json reads back as the same architecture
  assert ModelConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_internlm2_wrong_layout_is_named(tmp_path):
  tiny_models.build_internlm2(tmp_path)
  raw = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps(dict(raw, num_key_value_heads=1)))
  with pytest.raises(ValueError, match=r"attention\.wqkv\.weight' has shape \(120, 72\), expected \(96, 72\)"):
    rsft.load_model(tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(dict(raw, architectures=["InternLM2ForSequenceClassification"])))
  with pytest.raises(ValueError, match="only InternLM2ForCausalLM"):
    rsft.load_model(tmp_path)


def test_presets_and_the_internlm_run_row():
  from rsft import config as rconfig
  from rsft.train.metrics import param_count

  intern = presets.get("internlm2_5-20b")
  assert (
    intern.hidden_size,
    intern.intermediate_size,
    intern.num_layers,
    intern.num_heads,
    intern.num_kv_heads,
    intern.vocab_size,
    intern.tie_word_embeddings,
    intern.qkv_bias,
  ) == (6144, 16384, 48, 48, 8, 92544, False, False)
  assert abs(param_count(intern) / 1e9 - 19.86) < 0.01  # InternLM2.5-20B's published size
  assert ModelConfig.from_hf_dict(intern.to_hf_dict()) == intern
  assert presets.get("RM-Mistral-7B").head == "score" and presets.get("mistral_7b").sliding_window is None
  paper = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "paper.py")
  c = rconfig.load_config_file(paper, "model=internlm2.5_20b,data=math_nocot")
  assert c.model.path.endswith("internlm2_5-20b") and c.data.eos_token == "</s>"
  assert (c.train.verl_rows_per_micro, c.train.global_batch_size, c.data.max_length) == (2, 256, 20000)
