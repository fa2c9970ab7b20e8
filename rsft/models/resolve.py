"""Which model a run config means: the one place that turns the config's `model` section (`path`, `arch`,
`tokenizer`) into an architecture and a tokenizer directory. Training, evaluation, the fit check and the prompt
dump all ask here, so they cannot disagree."""

from __future__ import annotations

import os
from typing import Any

from rsft.models import presets
from rsft.models.config import ModelConfig


def architecture(
  model: Any, preset: str | None = None, allow_preset: bool = False
) -> tuple[ModelConfig, dict[str, Any] | None]:
  """(ModelConfig, the source config.json or None) for the `model` config section.

  `preset` (a name in rsft.models.presets) wins; then model.path's config.json; then, with allow_preset (sizing
  tools on a machine without the weights), the preset named like model.path's last component; then model.arch.
  """
  if preset:
    return presets.get(preset), None
  if model.path:
    if allow_preset and not os.path.exists(os.path.join(model.path, "config.json")):
      return presets.get(os.path.basename(os.path.normpath(model.path))), None
    return ModelConfig.from_dir(model.path)
  if model.arch:
    return ModelConfig.from_arch(model.arch.to_dict() if hasattr(model.arch, "to_dict") else dict(model.arch)), None
  raise ValueError(
    "no architecture: set model.path (an HF checkpoint dir) or model.arch (a from-scratch architecture)."
  )


def tokenizer_dir(model: Any) -> str | None:
  """model.tokenizer, else model.path (an HF dir usually carries its tokenizer files); None when neither is set."""
  return model.tokenizer or model.path or None
