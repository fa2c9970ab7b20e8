"""Building blocks: parameters with logical axes, linear maps, RMSNorm, rotate-half RoPE, remat policies.

Numerics follow `transformers`: norms, RoPE angles and softmax in float32; matmuls in the compute dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rsft.models import lora as lora_lib
from rsft.models.config import ModelConfig


def precision(dtype) -> jax.lax.Precision:
  """float32 compute means true float32 matmuls.

  At DEFAULT precision GPUs use TF32 and TPUs bf16 passes: on an H100 that put token_logprobs 5e-4 away from
  transformers (1e-6 with HIGHEST; bench/accelerator_check.py). bf16 compute is unaffected.
  """
  return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else jax.lax.Precision.DEFAULT


def param(
  rngs: nnx.Rngs | None,
  shape: Sequence[int],
  axes: Sequence[str | None],
  dtype,
  init: str = "normal",
  scale: float = 0.02,
) -> nnx.Param:
  """An nnx.Param whose `logical_axes` metadata drives sharding (rsft.sharding.state_shardings)."""
  shape = tuple(shape)
  if init == "normal":
    value = scale * jax.random.normal(rngs.params(), shape, jnp.float32)
  elif init == "ones":
    value = jnp.ones(shape, jnp.float32)
  else:
    value = jnp.zeros(shape, jnp.float32)
  return nnx.Param(value.astype(dtype), logical_axes=tuple(axes))


def fan_in(eqn: str, shape: Sequence[int]) -> int:
  """The number of inputs each output sums over: the product of the kernel dimensions the einsum contracts with
  its input ("BTNH,NHD->BTD": N*H for o_proj, not shape[0] = N)."""
  inputs, kernel = eqn.split("->")[0].split(",")
  return math.prod(size for letter, size in zip(kernel, shape) if letter in inputs)


class Linear(nnx.Module):
  """A kernel applied with an explicit einsum (axis letters: B batch, T time, D embed, N heads, H head_dim, F mlp).

  `stack` prepends a "layers" dimension so the module holds every layer's weights; inside the layer scan the
  same module sees one layer's slice.
  """

  def __init__(
    self,
    eqn: str,
    shape: Sequence[int],
    axes: Sequence[str | None],
    *,
    rngs: nnx.Rngs,
    param_dtype,
    bias_shape: Sequence[int] | None = None,
    bias_axes: Sequence[str | None] = (),
    stack: int | None = None,
    lora: tuple[int, float, float] | None = None,
  ):
    """`lora` = (rank, scale, dropout) adds trainable low-rank adapters beside the kernel (rsft/models/lora.py)."""
    lead, lead_axes = ((stack,), ("layers",)) if stack else ((), ())
    self.eqn = eqn
    self.kernel = param(
      rngs, lead + tuple(shape), lead_axes + tuple(axes), param_dtype, scale=1 / math.sqrt(fan_in(eqn, shape))
    )
    self.bias = (
      param(rngs, lead + tuple(bias_shape), lead_axes + tuple(bias_axes), param_dtype, init="zeros")
      if bias_shape is not None
      else None
    )
    rank, self.lora_scale, self.lora_dropout = lora or (0, 0.0, 0.0)
    self.lora_a, self.lora_b = (
      lora_lib.adapter_params(rngs, eqn, shape, axes, rank, param_dtype, stack) if lora is not None else (None, None)
    )

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """x through the kernel (and the adapters); `dropout_key` (training only) drops the adapters' inputs at the
    LoRA dropout rate, as PEFT's lora_dropout does."""
    lhs, out = self.eqn.split(",")[0], self.eqn.split("->")[1]
    if lhs[:2] == out[:2] == "BT" and x.ndim == len(lhs):
      # Batch and time as one axis: a 2-D operand keeps every gradient dot to a single contracting axis; on XLA:CPU
      # the [B,T]-contracting weight gradient otherwise runs ~1.4x slower (bench/real_shapes.py, docs/performance.md).
      flat = jnp.einsum(
        "M" + self.eqn[2:].replace("->BT", "->M"),
        x.reshape(-1, *x.shape[2:]),
        self.kernel[...].astype(x.dtype),
        precision=precision(x.dtype),
      )
      y = flat.reshape(*x.shape[:2], *flat.shape[1:])
    else:
      y = jnp.einsum(self.eqn, x, self.kernel[...].astype(x.dtype), precision=precision(x.dtype))
    if self.lora_a is not None:
      f = lora_lib.factors(self.eqn)
      if dropout_key is not None and self.lora_dropout > 0:
        keep = jax.random.bernoulli(dropout_key, 1.0 - self.lora_dropout, x.shape)
        x = jnp.where(keep, x / (1.0 - self.lora_dropout), 0).astype(x.dtype)
      down = jnp.einsum(f.down, x, self.lora_a[...].astype(x.dtype), precision=precision(x.dtype))
      y = y + self.lora_scale * jnp.einsum(f.up, down, self.lora_b[...].astype(x.dtype), precision=precision(x.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(x.dtype)
    return y


class RMSNorm(nnx.Module):
  def __init__(self, dim: int, eps: float, *, param_dtype, axis: str = "norm", stack: int | None = None):
    lead, lead_axes = ((stack,), ("layers",)) if stack else ((), ())
    self.eps = eps
    self.scale = param(None, lead + (dim,), lead_axes + (axis,), param_dtype, init="ones")

  def __call__(self, x: jax.Array) -> jax.Array:
    # transformers casts back to the input dtype *before* multiplying by the weight; so do we.
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return self.scale[...].astype(x.dtype) * xf.astype(x.dtype)


def rope_inv_freq(cfg: ModelConfig, seq_len: jax.Array | int | None = None) -> np.ndarray | jax.Array:
  """float32 inverse frequencies, computed like transformers (incl. the llama3 band-wise rescaling).

  With dynamic NTK scaling (`cfg.rope_dynamic`) they depend on `seq_len`, the current sequence length (largest
  position + 1, as the reference's `torch.max(position_ids) + 1`): up to max_position_embeddings they are the
  default ones exactly, beyond it they come from `dynamic_ntk_inv_freq`. Without `seq_len` (or without dynamic
  scaling) the result is a static numpy array.
  """
  inv_freq = _default_inv_freq(cfg.rope_theta, cfg.head_dim)
  if cfg.rope_dynamic is not None:
    if seq_len is None:
      return inv_freq
    seq_len = jnp.asarray(seq_len)
    return jnp.where(seq_len[..., None] > cfg.max_position_embeddings, dynamic_ntk_inv_freq(cfg, seq_len), inv_freq)
  if cfg.rope_llama3 is None:
    return inv_freq
  factor, low_ff, high_ff, old_len = cfg.rope_llama3
  low_wavelen, high_wavelen = old_len / low_ff, old_len / high_ff
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low_ff) / (high_ff - low_ff)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def _default_inv_freq(theta: float, dim: int) -> np.ndarray:
  return (1.0 / (np.float32(theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))).astype(np.float32)


def dynamic_ntk_inv_freq(cfg: ModelConfig, seq_len: jax.Array | int) -> jax.Array:
  """Dynamic NTK inverse frequencies for a sequence of `seq_len` tokens, in float32 like the references
  (InternLM2DynamicNTKScalingRotaryEmbedding, transformers' `_compute_dynamic_ntk_parameters`):
    base' = theta * (factor * seq_len / max_position_embeddings - (factor - 1)) ** (dim / (dim - 2)).
  Only meaningful for seq_len > max_position_embeddings (rope_inv_freq selects it there).
  """
  dim, f = cfg.head_dim, np.float32(cfg.rope_dynamic)
  seq_len = jnp.asarray(seq_len, jnp.float32)[..., None]  # a length per row gives a row of frequencies each
  scale = f * seq_len / np.float32(cfg.max_position_embeddings) - (f - np.float32(1))
  base = np.float32(cfg.rope_theta) * scale ** np.float32(dim / (dim - 2))
  return 1.0 / base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / np.float32(dim))


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
  """Rotate-half RoPE (the HF layout, so q/k weights need no permutation). x: [B,T,N,H], positions: [B,T],
  inv_freq: [H/2], or [B, H/2] when each row has its own (dynamic NTK at each sequence's own length)."""
  inv_freq = jnp.asarray(inv_freq)
  inv_freq = inv_freq[None, None, :] if inv_freq.ndim == 1 else inv_freq[:, None, :]
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B,T,H/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  xf = x.astype(jnp.float32)
  half = xf.shape[-1] // 2
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  return (xf * cos + rotated * sin).astype(x.dtype)


# remat=save_names keeps these activations (tagged with checkpoint_name in decoder.py): q/k/v after RoPE, the
# attention output before o_proj, the MLP's gated hidden before down_proj, and its output.
_SAVE_NAMES = ("qkv", "attn_out", "attn_stats", "mlp_in", "mlp_out")  # attn_stats: ring attention's softmax sums
REMAT_POLICIES = {
  "none": None,
  "full": jax.checkpoint_policies.nothing_saveable,
  "save_dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
  "save_names": jax.checkpoint_policies.save_only_these_names(*_SAVE_NAMES),
  # MaxText's offloading: the one tensor full remat keeps per layer (its input) lives in host memory between
  # the forward and the backward pass (TPU/GPU; XLA:CPU has no pinned host space).
  "offload": jax.checkpoint_policies.save_and_offload_only_these_names(
    names_which_can_be_saved=[],
    names_which_can_be_offloaded=["decoder_layer_input"],
    offload_src="device",
    offload_dst="pinned_host",
  ),
}


def remat(fn, policy: str):
  """Wraps the scanned layer body; names follow MaxText's checkpoint_name taxonomy."""
  if policy not in REMAT_POLICIES:
    raise ValueError(f"remat policy {policy!r} is unknown; choose one of {sorted(REMAT_POLICIES)}.")
  if policy == "none":
    return fn
  return jax.checkpoint(fn, policy=REMAT_POLICIES[policy], prevent_cse=False)
