"""The study's own readings across runs: its Tables 1-2 (the last checkpoint per benchmark), the over-fitting
signal of its §3.4 and the CoT-vs-NoCoT safety pairing of its Fig. 6."""

from __future__ import annotations

import json
import os
import statistics

from rsft.analysis import runs


def _fmt(value: float, bounded: bool) -> str:
  return f"{100 * value:.1f}" if bounded else f"{value:.2f}"


def last_checkpoint_table(all_runs: list[runs.Run]) -> list[str]:
  """Runs x benchmarks at each run's last evaluated step (x100 for proportions, raw for rewards), with each
  run's base (step 0) on the row above it when it was evaluated: the layout of the study's Tables 1-2."""
  names: list[str] = []
  for r in all_runs:
    names += [b for b, _ in r.benchmarks() if b not in names and r.headline(b)]
  if not names:
    return ["No headline scores yet."]
  arrow = lambda b: "" if all_runs[0].direction(b)[0] else " (lower is better)"
  lines = ["| run | step | " + " | ".join(f"{b}{arrow(b)}" for b in names) + " |", "|" + "---|" * (len(names) + 2)]
  for r in all_runs:
    curves = {b: r.curve(b, r.headline(b)) for b in names if r.headline(b)}
    steps = sorted({p.step for pts in curves.values() for p in pts})
    if not steps:
      continue
    shown = ([0] if steps[0] == 0 and len(steps) > 1 else []) + [steps[-1]]
    for step in shown:
      cells = []
      for b in names:
        point = next((p for p in curves.get(b, []) if p.step == step), None)
        cells.append(_fmt(point.value, r.direction(b)[1]) if point else "-")
      lines.append(f"| {r.name}{' (base)' if step == 0 else ''} | {step} | " + " | ".join(cells) + " |")
  return lines


def _mean_by_step(r: runs.Run, benches: list[str], metric_of) -> dict[int, float]:
  by_step: dict[int, list[float]] = {}
  for b in benches:
    for p in r.curve(b, metric_of(b)):
      by_step.setdefault(p.step, []).append(p.value)
  return {s: statistics.mean(v) for s, v in by_step.items() if len(v) == len(benches)}


def overfitting(all_runs: list[runs.Run], in_domain: tuple[str, ...], threshold: float) -> list[str]:
  """§3.4: over-fitting shows as a late in-domain drop (the last checkpoint below the in-domain peak by more than
  `threshold`) while response length rises again (the last length above its post-surge minimum by > 10%)."""
  lines = [
    "| run | in-domain peak (step) | last (step) | drop | length min after surge (step) | last length | "
    "over-fitting signal |",
    "|" + "---|" * 7,
  ]
  for r in all_runs:
    benches = [b for b, d in r.benchmarks() if d in in_domain and r.headline(b) and r.direction(b)[1]]
    score = _mean_by_step(r, benches, r.headline)
    length = _mean_by_step(r, benches, lambda b: "response_tokens")
    if len(score) < 3:
      continue
    steps = sorted(score)
    peak = max(steps, key=lambda s: (score[s], -s))
    last = steps[-1]
    drop = score[peak] - score[last]
    rising, low_step, low = False, None, None
    if length:
      surge = max(length, key=lambda s: length[s])
      after = [s for s in sorted(length) if s >= surge]
      low_step = min(after, key=lambda s: length[s])
      low = length[low_step]
      rising = low_step < max(length) and length[max(length)] > 1.1 * low
    signal = drop > threshold and last > peak and rising
    lines.append(
      f"| {r.name} | {100 * score[peak]:.1f} ({peak}) | {100 * score[last]:.1f} ({last}) | "
      f"{100 * drop:+.1f} | {'-' if low is None else f'{low:.0f} ({low_step})'} | "
      f"{'-' if not length else f'{length[max(length)]:.0f}'} | {'**yes**' if signal else 'no'} |"
    )
  if len(lines) == 2:
    return ["Needs three or more evaluated steps of an in-domain benchmark."]
  return lines


def _arm(workdir: str) -> tuple[str | None, str | None]:
  """(model path, "cot" | "nocot" | None) from the run's config.json: its data files name the arm."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None, None
  with open(path) as f:
    cfg = json.load(f)
  data = str(cfg.get("data", {}).get("train_files") or "").lower().replace("-", "").replace("_", "")
  arm = "nocot" if "nocot" in data else "cot" if "cot" in data else None
  return cfg.get("model", {}).get("path"), arm


def cot_vs_nocot_safety(all_runs: list[runs.Run]) -> list[str]:
  """Fig. 6: runs of one base model trained on the CoT and on the NoCoT version of the same data (same queries
  and final solutions), side by side on every safety benchmark: base, last value and change."""
  arms: dict[str, dict[str, runs.Run]] = {}
  for r in all_runs:
    model, arm = _arm(r.workdir)
    if model and arm:
      arms.setdefault(model, {})[arm] = r
  lines = [
    "| base model | benchmark | base | CoT run: last (change) | NoCoT run: last (change) |",
    "|---|---|---|---|---|",
  ]
  for model, pair in arms.items():
    if set(pair) != {"cot", "nocot"}:
      continue
    for bench in [b for b, d in pair["cot"].benchmarks() if d == "safety"]:
      ends = {}
      for arm in ("cot", "nocot"):
        pts = pair[arm].curve(bench, pair[arm].headline(bench) or "")
        ends[arm] = pts
      if not (ends["cot"] and ends["nocot"]):
        continue
      base = ends["cot"][0].value if ends["cot"][0].step == 0 else ends["nocot"][0].value
      cell = lambda pts: f"{100 * pts[-1].value:.1f} ({100 * (pts[-1].value - base):+.1f})"
      lines.append(
        f"| {os.path.basename(model.rstrip('/'))} | {bench} | {100 * base:.1f} | {cell(ends['cot'])} | "
        f"{cell(ends['nocot'])} |"
      )
  if len(lines) == 2:
    return [
      "Needs a CoT run and a NoCoT run of the same base model (data files named *CoT* / *NoCoT*, e.g. "
      "configs/paper.py data=math_cot and data=math_nocot) with a safety benchmark (hexphi) evaluated."
    ]
  return lines


def sections(all_runs: list[runs.Run], in_domain: tuple[str, ...], threshold: float) -> list[tuple[str, list[str]]]:
  return [
    ("Last checkpoint across runs (the study's Tables 1-2)", last_checkpoint_table(all_runs)),
    ("Over-fitting signal (the study's §3.4)", overfitting(all_runs, in_domain, threshold)),
    ("Safety: CoT vs NoCoT on the same queries (the study's Fig. 6)", cot_vs_nocot_safety(all_runs)),
  ]
