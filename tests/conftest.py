"""CPU with 8 fake devices, so sharding is exercised for real (set before jax is imported)."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# IFEval's sentence splitter (NLTK punkt_tab): the copy beside the repo, as CI has it (users download it once).
_NLTK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "nltk_data")
if os.path.isdir(_NLTK):
  os.environ.setdefault("NLTK_DATA", os.path.abspath(_NLTK))
