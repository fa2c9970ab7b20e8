"""Dip-and-recovery detection on a benchmark's score-vs-step curve (paper.md §5, Sec. 3.1-3.2).

A dip is the lowest score after the base (step 0) falling below the base by more than both `threshold` and the
noise, where noise is the two scores' 95% half-intervals added in quadrature (each interval is the bootstrap
over items that the sweep stores). Recovery is the first later step back at or above the base. A run whose last
checkpoint is still significantly below its base is flagged "under-optimised" (the study's reading: under-fitting
dominates under the default schedule; Sec. 3.4).

"Below" follows the metric's direction: for a lower-is-better metric (HEx-PHI's attack success rate) the dip is
the highest value and the gain is base - last. An unbounded metric (AlpacaEval's reward) gets no absolute
threshold: its dip is judged against its own bootstrap noise only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass
class Point:
  step: int
  value: float
  ci_low: float
  ci_high: float

  @property
  def half_width(self) -> float:
    return max(self.ci_high - self.ci_low, 0.0) / 2


@dataclasses.dataclass
class DipReport:
  base: float
  has_base: bool  # step 0 was evaluated (else the first checkpoint stands in)
  min_step: int
  min_value: float
  depth: float  # how far the worst point is worse than base (> 0: it got worse)
  dip: bool  # depth > threshold and > noise
  recovery_step: int | None
  final_step: int
  final_gain: float  # improvement last vs base, in the metric's direction (> 0: better)
  final_change: float  # last - base, raw (an ASR that rose is > 0)
  gain_significant: bool
  under_optimised: bool  # the last checkpoint is still significantly below base


def _noise(a: Point, b: Point) -> float:
  return math.hypot(a.half_width, b.half_width)


def dip_and_recovery(
  points: Sequence[Point], threshold: float = 0.0, higher_is_better: bool = True, bounded: bool = True
) -> DipReport:
  """The dip (worst point after base), its recovery and the final gain; `bounded=False` drops the threshold."""
  if not points:
    raise ValueError("no points")
  threshold = threshold if bounded else 0.0
  good = (lambda v: v) if higher_is_better else (lambda v: -v)
  points = sorted(points, key=lambda p: p.step)
  base = points[0]
  later = points[1:] or points
  low = min(later, key=lambda p: (good(p.value), p.step))
  depth = good(base.value) - good(low.value)
  dip = depth > threshold and depth > _noise(base, low)
  recovery = (
    next((p.step for p in later if p.step > low.step and good(p.value) >= good(base.value)), None) if dip else None
  )
  last = points[-1]
  gain = good(last.value) - good(base.value)
  significant = abs(gain) > _noise(base, last)
  return DipReport(
    base=base.value,
    has_base=base.step == 0,
    min_step=low.step,
    min_value=low.value,
    depth=depth,
    dip=dip,
    recovery_step=recovery,
    final_step=last.step,
    final_gain=gain,
    final_change=last.value - base.value,
    gain_significant=significant,
    under_optimised=gain < 0 and significant and -gain > threshold,
  )
