"""FLOPs of a jitted function from its jaxpr, with every scan's trip count applied.

XLA's cost analysis counts a while-loop body once, so a scanned 40-layer model inside a scan over micro-batches
reports about 1/(40 * micro_batches) of its work. Counting on the jaxpr instead multiplies each scan body by its
length, a shard_map body by its device count, takes the larger branch of a cond, and sees rematerialised forward passes in the backward jaxpr (they
are real work on the chip). Only matrix products are counted (dot_general, 2*M*N*K), which is what MFU means;
Pallas kernels count their declared cost estimate when they carry one.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from jax.extend import core as jcore


def _dot_flops(eqn) -> float:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  out = eqn.outvars[0].aval.shape
  return 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)


def _sub_jaxprs(params: dict[str, Any]):
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jcore.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jcore.Jaxpr):
        yield item


def count(jaxpr: Any) -> dict[str, float]:
  """{"dot": matmul FLOPs, "kernel": declared Pallas FLOPs, "opaque_kernels": kernels with no estimate,
  "while_loops": unbounded loops counted once}."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  out = {"dot": 0.0, "kernel": 0.0, "opaque_kernels": 0, "while_loops": 0}

  def add(into, part, times=1.0):
    for k, v in part.items():
      into[k] += v * (times if k in ("dot", "kernel") else 1)

  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      out["dot"] += _dot_flops(eqn)
    elif name == "scan":
      add(out, count(eqn.params["jaxpr"]), eqn.params["length"])
    elif name == "cond":
      branches = [count(b) for b in eqn.params["branches"]]
      add(out, max(branches, key=lambda c: c["dot"] + c["kernel"]))
    elif name == "while":
      out["while_loops"] += 1
      add(out, count(eqn.params["body_jaxpr"]))
    elif name == "shard_map":  # the body is one device's share: every device of its manual axes runs it
      axes = eqn.params.get("newly_manual_axes") or eqn.params["mesh"].axis_names
      add(out, count(eqn.params["jaxpr"]), math.prod(eqn.params["mesh"].shape[a] for a in axes))
    elif name == "pallas_call":
      estimate = eqn.params.get("cost_estimate")
      if estimate is not None and getattr(estimate, "flops", None):
        out["kernel"] += float(estimate.flops)
      else:
        out["opaque_kernels"] += 1
    else:
      for sub in _sub_jaxprs(eqn.params):
        add(out, count(sub))
  return out


def of(fn: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
  return count(jax.make_jaxpr(fn)(*args, **kwargs))
