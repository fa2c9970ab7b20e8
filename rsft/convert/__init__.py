"""HF safetensors <-> rsft parameters, through one declarative mapping table per family (mappings.py)."""

from rsft.convert.hf_to_rsft import load_params
from rsft.convert.rsft_to_hf import export

__all__ = ["export", "load_params"]
