"""A LoRA training step as a PEFT adapter folder: `adapter_config.json` + `adapter_model.safetensors`, which
`peft.PeftModel.from_pretrained(base, folder)` puts on the base the step records, for users who serve with
transformers / vLLM adapters rather than a merged checkpoint (rsft.export_hf merges instead).

PEFT's layout per target module M (an nn.Linear of the HF model, weight [out, in]): `base_model.model.M.lora_A.weight`
[r, in] and `base_model.model.M.lora_B.weight` [out, r], scale lora_alpha / r. rsft's A [L, in..., r] and
B [L, r, out...] are the same matrices per layer with the head dims flattened, so the export is a reshape and a
transpose. The module names come from the family's weight table (the row whose rsft name is the target's kernel).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from rsft import sharding
from rsft.convert import step_dir
from rsft.convert.safetensors_io import write_file
from rsft.models import lora as lora_lib
from rsft.models.config import ModelConfig
from rsft.models.model import abstract_model

_GROUPS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn"}


def hf_modules(cfg: ModelConfig, targets: tuple[str, ...]) -> dict[str, str]:
  """target -> the HF module path with a `{i}` for the layer ("model.layers.{i}.self_attn.q_proj")."""
  out = {}
  for name in targets:
    kernel = f"layers.{_GROUPS.get(name, 'mlp')}.{name}.kernel"
    row = next((r for r in cfg.family.weights if kernel in r.targets), None)
    if row is None or len(row.targets) > 1:
      raise ValueError(
        f"train.lora.targets: {name} is part of {row.hf if row else 'no tensor'} in {cfg.model_type}'s checkpoints "
        "(a fused tensor), which a PEFT adapter cannot target on its own; export the merged model "
        "(rsft.export_hf) instead."
      )
    out[name] = row.hf.removesuffix(".weight")
  return out


def export_lora(step: str, out_dir: str) -> str:
  """Writes `step`'s adapters (a LoRA training step dir) as a PEFT adapter folder.

  Args:
    step: WORKDIR/checkpoints/<step> of a run with train.lora.rank > 0.
    out_dir: the folder to write (created).

  Returns:
    out_dir.
  """
  step, out_dir = os.fspath(step), os.fspath(out_dir)
  meta = step_dir.read_meta(step)
  record = meta.get("lora")
  if not record:
    raise ValueError(f"{step}: not a LoRA step (train.lora.rank was 0); rsft.export_hf writes the full model.")
  cfg = ModelConfig.from_arch(meta["model_config"])
  settings = lora_lib.from_record(record)
  modules = hf_modules(cfg, settings.targets)
  _, state, _ = abstract_model(cfg, "float32", "float32", lora=settings)
  adapters = step_dir.restore_params(step, lora_lib.split(sharding.abstract_arrays(state, sharding.Rules(None)))[0])
  tensors: dict[str, np.ndarray] = {}
  for group in ("self_attn", "mlp"):
    for name, module in adapters["layers"].get(group, {}).items():
      a, b = (np.asarray(module[k][...], np.float32) for k in ("lora_a", "lora_b"))
      for layer in range(cfg.num_layers):
        prefix = "base_model.model." + modules[name].format(i=layer)
        tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(a[layer].reshape(-1, settings.rank).T)
        tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(b[layer].reshape(settings.rank, -1).T)
  os.makedirs(out_dir, exist_ok=True)
  names = sorted(tensors)
  write_file(
    os.path.join(out_dir, "adapter_model.safetensors"),
    [(k, tensors[k].shape, tensors[k].dtype) for k in names],
    tensors.__getitem__,
  )
  with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
    json.dump(_adapter_config(record, settings, modules), f, indent=2)
  return out_dir


def _adapter_config(record: dict[str, Any], settings: lora_lib.LoRA, modules: dict[str, str]) -> dict[str, Any]:
  return {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "base_model_name_or_path": record["base"],
    "r": settings.rank,
    "lora_alpha": settings.alpha,
    "lora_dropout": 0.0,
    "target_modules": sorted(path.rsplit(".", 1)[-1] for path in modules.values()),
    "bias": "none",
    "fan_in_fan_out": False,
    "use_rslora": False,
    "init_lora_weights": True,
    "inference_mode": True,
    "modules_to_save": None,
  }
