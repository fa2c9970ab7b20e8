"""One decoder for Qwen2/Qwen2.5, Qwen3, Llama 3.x, Mistral and InternLM2, in Flax NNX.

Layers are stored stacked `[L, ...]` in a single `DecoderLayer` module and run with `jax.lax.scan` (constant
compile time in depth). Parameter names mirror Hugging Face's Llama layout, so the conversion table is a
transpose/reshape per tensor (InternLM2's fused wqkv is split on load). The family differences are flags of
ModelConfig: qkv/o bias, q/k RMSNorm, rope scaling (llama3, dynamic NTK), sliding-window attention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from rsft.models import attention, context_parallel
from rsft.models.config import ModelConfig
from rsft.models.layers import Linear, RMSNorm, apply_rope, param, remat, rope_inv_freq
from rsft.models.lora import LoRA
from rsft.sharding import Rules, sequence_shards


def positions_from_mask(mask: jax.Array) -> jax.Array:
  """HF positions: the number of real tokens before this one (left padding does not shift positions)."""
  return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0).astype(jnp.int32)


def _full_attention(q, k, v, segment_ids, positions, implementation, rules, window):
  """Rows split over a `sequence` axis take context-parallel attention; whole rows the chosen kernel."""
  if sequence_shards(rules.mesh) > 1:
    return context_parallel.attention(q, k, v, segment_ids, positions, implementation, rules, window)
  return attention.self_attention(q, k, v, segment_ids, implementation, rules, window)


def _adapted(lora: LoRA | None, name: str) -> dict:
  """Linear's `lora` argument for module `name`: adapters only on the targets."""
  return dict(lora=(lora.rank, lora.scale, lora.dropout)) if lora is not None and name in lora.targets else {}


def _key(dropout_key: jax.Array | None, index: int) -> jax.Array | None:
  """An independent dropout key per adapted map (None: no dropout)."""
  return None if dropout_key is None else jax.random.fold_in(dropout_key, index)


class Attention(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, param_dtype, stack: int | None, lora: LoRA | None = None):
    d, n, k, h = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    kw = dict(rngs=rngs, param_dtype=param_dtype, stack=stack)
    qb = dict(bias_shape=(n, h), bias_axes=("q_heads", "head_dim")) if cfg.qkv_bias else {}
    kvb = dict(bias_shape=(k, h), bias_axes=("kv_heads", "head_dim")) if cfg.qkv_bias else {}
    ob = dict(bias_shape=(d,), bias_axes=("embed",)) if cfg.o_bias else {}
    q_axes, kv_axes = ("embed", "q_heads", "head_dim"), ("embed", "kv_heads", "head_dim")
    self.q_proj = Linear("BTD,DNH->BTNH", (d, n, h), q_axes, **kw, **qb, **_adapted(lora, "q_proj"))
    self.k_proj = Linear("BTD,DKH->BTKH", (d, k, h), kv_axes, **kw, **kvb, **_adapted(lora, "k_proj"))
    self.v_proj = Linear("BTD,DKH->BTKH", (d, k, h), kv_axes, **kw, **kvb, **_adapted(lora, "v_proj"))
    o_axes = ("q_heads", "head_dim", "embed")
    self.o_proj = Linear("BTNH,NHD->BTD", (n, h, d), o_axes, **kw, **ob, **_adapted(lora, "o_proj"))
    self.window = cfg.sliding_window  # None: full causal attention
    if cfg.qk_norm:
      self.q_norm = RMSNorm(h, cfg.rms_norm_eps, param_dtype=param_dtype, axis="head_dim", stack=stack)
      self.k_norm = RMSNorm(h, cfg.rms_norm_eps, param_dtype=param_dtype, axis="head_dim", stack=stack)
    else:
      self.q_norm = self.k_norm = None

  def __call__(
    self,
    x,
    positions,
    inv_freq,
    rules: Rules,
    *,
    segment_ids=None,
    mask=None,
    cache=None,
    paged=None,
    implementation: str = "xla",
    dropout_key=None,
  ):
    """Full-sequence self-attention over `segment_ids` [B,T] with `implementation` (see attention.py), or, with
    cache = (k_all, v_all, layer, write_index), x's keys/values written into the [L, B, S, K, H] caches at
    (layer, column write_index) and attention over that layer's filled columns under `mask` (a CacheMask), or,
    with paged = (k_pool, v_pool, layer, pages, live), written into each row's pages at its columns `positions`
    and attention over its written pages (attention.paged_attention). Returns (out, cache)."""
    q, k, v = (proj(x, _key(dropout_key, i)) for i, proj in enumerate((self.q_proj, self.k_proj, self.v_proj)))
    if self.q_norm is not None:  # Qwen3: per-head RMSNorm *before* RoPE (torchtune#2809 had it after).
      q, k = self.q_norm(q), self.k_norm(k)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    q = rules.constrain(q, ("batch", "length", "act_heads", None))
    k = rules.constrain(k, ("batch", "length", "act_kv_heads", None))
    q, k, v = (checkpoint_name(a, "qkv") for a in (q, k, v))  # remat=save_names keeps these
    if paged is not None:
      k_pool, v_pool, layer, pages, live = paged
      if attention.resolve(implementation, 1) == "splash" and attention.paged_kernel_fits(
        q, k_pool, self.window, rules
      ):
        out, k_pool, v_pool = attention.paged_kernel_step(q, k, v, k_pool, v_pool, layer, pages, live, rules)
        return self.o_proj(out), (k_pool, v_pool)  # TPU: its Pallas paged-attention kernel
      k_pool = attention.write_pages(k_pool, layer, pages, positions, k, live)
      v_pool = attention.write_pages(v_pool, layer, pages, positions, v, live)
      out = attention.paged_attention(q, k_pool, v_pool, layer, pages, positions, self.window)
      return self.o_proj(out), (k_pool, v_pool)
    if cache is None:
      out = _full_attention(q, k, v, segment_ids, positions, implementation, rules, self.window)
      return self.o_proj(checkpoint_name(out, "attn_out"), _key(dropout_key, 3)), None
    k_all, v_all, layer, index = cache  # all layers' cache, updated in place: only the new columns are written
    at = (layer, 0, index, 0, 0)
    k_all = jax.lax.dynamic_update_slice(k_all, k.astype(k_all.dtype)[None], at)
    v_all = jax.lax.dynamic_update_slice(v_all, v.astype(v_all.dtype)[None], at)
    if segment_ids is not None:  # a whole prompt into an empty cache: it attends to itself, with the kernel
      out = _full_attention(q, k, v, segment_ids, positions, implementation, rules, self.window)
    else:  # queries against the cache, reading its filled columns only
      out = attention.cached_attention(q, k_all, v_all, layer, mask)
    return self.o_proj(out), (k_all, v_all)


class MLP(nnx.Module):
  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, param_dtype, stack: int | None, lora: LoRA | None = None):
    d, f = cfg.hidden_size, cfg.intermediate_size
    kw = dict(rngs=rngs, param_dtype=param_dtype, stack=stack)
    self.gate_proj = Linear("BTD,DF->BTF", (d, f), ("embed", "mlp"), **kw, **_adapted(lora, "gate_proj"))
    self.up_proj = Linear("BTD,DF->BTF", (d, f), ("embed", "mlp"), **kw, **_adapted(lora, "up_proj"))
    self.down_proj = Linear("BTF,FD->BTD", (f, d), ("mlp", "embed"), **kw, **_adapted(lora, "down_proj"))

  def __call__(self, x, rules: Rules, dropout_key=None):
    hidden = jax.nn.silu(self.gate_proj(x, _key(dropout_key, 4))) * self.up_proj(x, _key(dropout_key, 5))
    hidden = checkpoint_name(rules.constrain(hidden, ("batch", "length", "act_mlp")), "mlp_in")
    return checkpoint_name(self.down_proj(hidden, _key(dropout_key, 6)), "mlp_out")


class DecoderLayer(nnx.Module):
  """All L layers' weights; `__call__` runs one layer on that layer's slice (inside the scan)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, param_dtype, lora: LoRA | None = None):
    kw = dict(rngs=rngs, param_dtype=param_dtype, stack=cfg.num_layers, lora=lora)
    self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, param_dtype=param_dtype, stack=cfg.num_layers)
    self.self_attn = Attention(cfg, **kw)
    self.post_attention_layernorm = RMSNorm(
      cfg.hidden_size, cfg.rms_norm_eps, param_dtype=param_dtype, stack=cfg.num_layers
    )
    self.mlp = MLP(cfg, **kw)

  def __call__(self, x, positions, inv_freq, rules: Rules, dropout_key=None, **attention_kw):
    attn, cache = self.self_attn(
      self.input_layernorm(x), positions, inv_freq, rules, dropout_key=dropout_key, **attention_kw
    )
    x = x + attn
    x = x + self.mlp(self.post_attention_layernorm(x), rules, dropout_key)
    return rules.constrain(x, ("batch", "length", "act_embed")), cache


class Embed(nnx.Module):
  def __init__(self, vocab: int, dim: int, *, rngs: nnx.Rngs, param_dtype):
    self.embedding = param(rngs, (vocab, dim), ("vocab", "embed"), param_dtype)


class Decoder(nnx.Module):
  """Embedding, scanned layers, final norm, and the output head (LM head or reward `score`).

  `dtype` is the compute dtype; parameters are stored in `param_dtype` (fp32 master weights for training).
  """

  def __init__(
    self,
    cfg: ModelConfig,
    *,
    rngs: nnx.Rngs,
    param_dtype=jnp.float32,
    dtype=jnp.float32,
    rules: Rules = Rules(None),
    remat_policy: str = "none",
    attention_impl: str = "auto",
    lora: LoRA | None = None,
  ):
    attention.resolve(attention_impl, 0)  # validates the name
    if lora is not None:
      lora.check(cfg)
    self.cfg, self.dtype, self.rules, self.remat_policy = cfg, dtype, rules, remat_policy
    self.attention_impl = attention_impl
    d, v = cfg.hidden_size, cfg.vocab_size
    self.embed_tokens = Embed(v, d, rngs=rngs, param_dtype=param_dtype)
    self.layers = DecoderLayer(cfg, rngs=rngs, param_dtype=param_dtype, lora=lora)
    self.norm = RMSNorm(d, cfg.rms_norm_eps, param_dtype=param_dtype)
    if cfg.head == "score":
      self.score = param(rngs, (d, cfg.num_labels), ("embed", "labels"), param_dtype)
    elif not cfg.tie_word_embeddings:
      self.lm_head = param(rngs, (d, v), ("embed", "vocab"), param_dtype)

  def __call__(
    self, ids: jax.Array, positions: jax.Array, segment_ids: jax.Array, dropout_key: jax.Array | None = None
  ) -> jax.Array:
    """Final-normed hidden states [B,T,D].

    segment_ids [B,T]: 0 = padding; a token attends to earlier tokens of its own segment (packing and padding
    share one mask). positions [B,T]: RoPE positions (HF convention: real tokens before this one).
    dropout_key: LoRA dropout while training (a key per layer and adapted map); None everywhere else.
    """
    x = self._embed(ids)
    graphdef, layer_state = nnx.split(self.layers)
    inv_freq = rope_inv_freq(self.cfg, jnp.max(positions) + 1)  # dynamic NTK: the longest row's length
    segment_ids = self.rules.constrain(segment_ids, ("batch", "length"))

    def body(h, xs):
      one_layer, key = xs
      h = checkpoint_name(h, "decoder_layer_input")
      return nnx.merge(graphdef, one_layer)(
        h,
        positions,
        inv_freq,
        self.rules,
        dropout_key=key,
        segment_ids=segment_ids,
        implementation=self.attention_impl,
      )[0], None

    keys = None if dropout_key is None else jax.random.split(dropout_key, self.cfg.num_layers)
    x, _ = jax.lax.scan(remat(body, self.remat_policy), x, (layer_state, keys))
    return self.norm(x)

  def extend(
    self,
    ids: jax.Array,
    positions: jax.Array,
    cache: dict[str, jax.Array],
    write_index: jax.Array,
    kv_valid: jax.Array,
    segment_ids: jax.Array | None = None,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Runs ids [B,T] on top of a KV cache (prefill: T = prompt length at index 0; decode: T = 1).

    cache: {"k", "v"} of [L, B, S, K, H]; the new keys go to columns [write_index, write_index + T).
    kv_valid [B, S]: cache columns holding real tokens (after this call's writes). Column order is time order,
    so query t attends to valid columns <= write_index + t. With `segment_ids` [B,T] (a whole prompt written at
    column 0 of an empty cache) attention runs over the new tokens alone with `model.attention`'s kernel.
    Returns final-normed hidden [B,T,D] and the cache.

    Sliding window: columns hold positions, not time steps of their own (left padding takes columns), so the
    window is measured in positions: a valid column's token sits at position (valid columns before it), and
    query t at `positions[:, t]` sees it iff 0 <= distance < window.
    Dynamic NTK: the keys in the cache keep the rotation they were written with, and this call's queries and keys
    use the frequencies for the row's own length now (its count of valid columns). That is what transformers'
    generate does for one sequence (it recomputes inv_freq from max(position_ids) + 1 as the sequence grows), so
    decoding past max_position_embeddings matches it step for step, and a row's tokens never depend on which
    other rows share its batch (transformers' batched generate takes the batch's longest row instead); a full
    forward over the same tokens rotates every key with the final length's frequencies (as HF's does).
    """
    t = ids.shape[1]
    window = self.cfg.sliding_window
    mask = attention.CacheMask(
      kv_valid,
      write_index + jnp.arange(t),
      write_index + t,
      positions if window is not None else None,
      jnp.cumsum(kv_valid, axis=-1) - 1 if window is not None else None,
      window,
    )
    x = self._embed(ids)
    graphdef, layer_state = nnx.split(self.layers)
    inv_freq = rope_inv_freq(self.cfg, jnp.sum(kv_valid, axis=-1))  # per row: its own length

    def body(carry, xs):  # the cache rides in the carry so the loop updates it in place
      h, k_all, v_all = carry
      one_layer, layer = xs
      h, (k_all, v_all) = nnx.merge(graphdef, one_layer)(
        h,
        positions,
        inv_freq,
        self.rules,
        mask=mask,
        cache=(k_all, v_all, layer, write_index),
        segment_ids=segment_ids,
        implementation=self.attention_impl,
      )
      return (h, k_all, v_all), None

    layers = jnp.arange(self.cfg.num_layers)
    (x, k, v), _ = jax.lax.scan(body, (x, cache["k"], cache["v"]), (layer_state, layers))
    return self.norm(x), {"k": k, "v": v}

  def extend_paged(
    self, ids: jax.Array, k_pool: jax.Array, v_pool: jax.Array, pages: attention.Pages, live: jax.Array
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Runs ids [B,T] as the last T tokens of each row of a paged cache (the sampler's decode, T = 1).

    pages.lengths counts this call's tokens, so token t of row b sits at column (= position) lengths - T + t;
    rows not `live` [B] (tokens not live [B,T]: a left-padded prefill piece) write only the scratch page.
    Returns final-normed hidden [B,T,D] and the two pools."""
    t = ids.shape[1]
    positions = (pages.lengths[:, None] - t + jnp.arange(t)).astype(jnp.int32)
    x = self._embed(ids)
    graphdef, layer_state = nnx.split(self.layers)
    inv_freq = rope_inv_freq(self.cfg, pages.lengths)  # dynamic NTK: each row at its own length

    def body(carry, xs):  # the pools ride in the carry so the loop updates them in place
      h, k_all, v_all = carry
      one_layer, layer = xs
      h, (k_all, v_all) = nnx.merge(graphdef, one_layer)(
        h, positions, inv_freq, self.rules, paged=(k_all, v_all, layer, pages, live), implementation=self.attention_impl
      )
      return (h, k_all, v_all), None

    layers = jnp.arange(self.cfg.num_layers)
    (x, k_pool, v_pool), _ = jax.lax.scan(body, (x, k_pool, v_pool), (layer_state, layers))
    return self.norm(x), k_pool, v_pool

  def _embed(self, ids: jax.Array) -> jax.Array:
    table = self.embed_tokens.embedding[...]
    if sequence_shards(self.rules.mesh) > 1:  # gathered over fsdp x sequence first (in the compute dtype): XLA
      table = self.rules.constrain(table.astype(self.dtype), ("vocab", None))  # cannot reshard a lookup split by
    x = jnp.take(table, ids, axis=0).astype(self.dtype)  # embed to rows split by batch x length
    return self.rules.constrain(x, ("batch", "length", "act_embed"))

  def head_kernel(self) -> jax.Array:
    """[D, V] output projection in the compute dtype (the embedding's transpose when tied)."""
    if self.cfg.tie_word_embeddings:
      return self.embed_tokens.embedding[...].T.astype(self.dtype)
    return self.lm_head[...].astype(self.dtype)
