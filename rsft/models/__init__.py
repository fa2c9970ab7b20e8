"""Decoder family (Qwen2/2.5, Qwen3, Llama 3.x) and its output heads."""

from rsft.models.config import ModelConfig
from rsft.models.decoder import Decoder

__all__ = ["Decoder", "ModelConfig"]
