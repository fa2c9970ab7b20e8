"""The decoder every family runs (Qwen2/2.5, Qwen3, Llama 3.x, Mistral, InternLM2/2.5; rsft/models/families/)."""

from rsft.models.config import ModelConfig
from rsft.models.decoder import Decoder

__all__ = ["Decoder", "ModelConfig"]
