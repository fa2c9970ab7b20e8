"""Per-benchmark numbers from per-sample scores: avg@k, unbiased pass@k, maj@k, bootstrap intervals over items.

Conventions (eval_anchors.md §2.7): avg@k is the mean over items of the item's mean score over its k samples
(= unbiased pass@1 with n = k); pass@k = 1 - C(n-c, k) / C(n, k) in product form, reported only when every
item has at least k samples; intervals resample items (not samples), percentile method, fixed seed.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k for one item with n samples of which c are correct (Chen et al. 2021)."""
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority(answers: Sequence[Hashable | None], scores: Sequence[float]) -> float:
  """maj@k: the score of the most frequent extracted answer (first seen wins ties; no answer never wins)."""
  counts = collections.Counter(a for a in answers if a is not None)
  if not counts:
    return 0.0
  top = max(counts.values())
  winner = next(a for a in answers if a is not None and counts[a] == top)
  return float(scores[answers.index(winner)])


def bootstrap_ci(
  per_item: Sequence[float], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
  values = np.asarray(per_item, np.float64)
  if values.size == 0:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
  lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
  return float(lo), float(hi)


def ratio_ci(
  sums: np.ndarray, counts: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
  """Interval of a pooled ratio sum(sums) / sum(counts), resampling items."""
  if sums.size == 0:
    return float("nan"), float("nan")
  pick = np.random.default_rng(seed).integers(0, sums.size, (resamples, sums.size))
  ratios = sums[pick].sum(axis=1) / np.maximum(counts[pick].sum(axis=1), 1)
  lo, hi = np.quantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2])
  return float(lo), float(hi)


def summarize(samples: dict[Hashable, list[dict]], ks: Sequence[int] = (1,)) -> dict[str, dict[str, float]]:
  """samples: item id -> its samples, each {"score": 0..1, "answer": hashable|None, "tokens": int,
  "truncated": bool, "extra": {name: float | list of floats}}. Returns metric name -> {"value", "ci_low",
  "ci_high", "n_items"}; an extra float is averaged like the score, an extra list is pooled over all entries."""
  items = [v for v in samples.values() if v]
  out: dict[str, dict[str, float]] = {}

  def put(name: str, per_item: list[float]) -> None:
    lo, hi = bootstrap_ci(per_item)
    out[name] = dict(
      value=float(np.mean(per_item)) if per_item else float("nan"), ci_low=lo, ci_high=hi, n_items=len(per_item)
    )

  k_max = min(len(v) for v in items) if items else 0
  put(f"avg@{k_max}", [float(np.mean([s["score"] for s in v])) for v in items])
  for k in ks:
    if 1 < k <= k_max:
      put(f"pass@{k}", [pass_at_k(len(v), sum(s["score"] >= 1.0 for s in v), k) for v in items])
  if k_max > 1:
    put(f"maj@{k_max}", [majority([s.get("answer") for s in v], [s["score"] for s in v]) for v in items])
  for name in sorted({k for v in items for s in v for k in s.get("extra", {})}):
    values = [[s["extra"][name] for s in v if name in s.get("extra", {})] for v in items]
    if any(isinstance(x, list) for vs in values for x in vs):  # pooled over every entry (IFEval inst-level)
      sums = np.asarray([sum(sum(x) for x in vs) for vs in values], np.float64)
      counts = np.asarray([sum(len(x) for x in vs) for vs in values], np.float64)
      out[name] = dict(
        value=float(sums.sum() / max(counts.sum(), 1)),
        n_items=len(values),
        **dict(zip(("ci_low", "ci_high"), ratio_ci(sums, counts))),
      )
    else:
      put(name, [float(np.mean(vs)) for vs in values if vs])
  if any(str(s.get("status", "")).startswith("grader_error") for v in items for s in v):  # counted, never hidden
    put(
      "grader_error_rate",
      [float(np.mean([str(s.get("status", "")).startswith("grader_error") for s in v])) for v in items],
    )
  put("response_tokens", [float(np.mean([s.get("tokens", 0) for s in v])) for v in items])
  put("truncation_rate", [float(np.mean([bool(s.get("truncated")) for s in v])) for v in items])
  return out
