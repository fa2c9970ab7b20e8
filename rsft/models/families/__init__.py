"""Model families (Qwen2/2.5, Qwen3, Llama 3.x, Mistral, InternLM2/2.5): one declarative entry each, registered
on import. A family added from outside calls `register` (docs/contributing.md, "Add a model family")."""

from rsft.models.families.base import FAMILIES, Family, Row, get, register, supported

# isort: off
# Registers the built-in families, in the order error messages list them.
from rsft.models.families import qwen  # noqa: F401
from rsft.models.families import llama  # noqa: F401
from rsft.models.families import internlm2  # noqa: F401
# isort: on

__all__ = ["FAMILIES", "Family", "Row", "get", "register", "supported"]
