"""analyze.py: one report over one or more runs: WORKDIR/report/{index.html (self-contained), report.md, *.png}.

Sections: training dynamics; scores vs step with 95% intervals grouped in-domain / out-of-domain / general /
safety; dip-and-recovery per benchmark; response length; reasoning markers; safety vs reasoning. Plots use
matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import statistics
from typing import Any

import numpy as np
from absl import logging

from rsft.analysis import dynamics, markup, patterns, runs, study_tables

SUMMARY = "What happened"
PROBE_ALARM = 0.1  # nats per token the probe must fall to call its onset (probe_lead)
SECTIONS = (
  "Training dynamics",
  "Scores vs step",
  "Dip and recovery",
  "Response length",
  "Reasoning markers",
  "Token-level log-probs",
  "Model size comparison",
  "Safety vs reasoning",
  "Thinking budgets",
  "Forgetting probe vs sampled scores",
)
GROUPS = ("in-domain", "out-of-domain", "general", "safety", "other")


STYLE = {
  "axes.grid": True,
  "grid.alpha": 0.3,
  "axes.spines.top": False,
  "axes.spines.right": False,
  "font.size": 9,
  "axes.titlesize": 10,
  "legend.fontsize": 7,
  "legend.frameon": False,
  "lines.markersize": 4,
}  # one look for every figure of the report, with tab10's colours


def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  plt.rcParams.update(STYLE)
  plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=plt.get_cmap("tab10").colors)
  return plt


def _grid(n: int, width: float = 4.0):
  plt = _plt()
  cols = min(n, 3)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.0 * rows), squeeze=False)
  for ax in axes.flat[n:]:
    ax.axis("off")
  return fig, list(axes.flat[:n])


def _save(fig, out_dir: str, name: str) -> str:
  path = os.path.join(out_dir, name)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  _plt().close(fig)
  return name


def training_dynamics(all_runs: list[runs.Run], out_dir: str) -> tuple[str | None, list[str]]:
  keys = [k for k in ("loss", "lr", "grad_norm", "entropy") if any(k in m for r in all_runs for m in r.metrics)]
  if not keys:
    return None, ["No `metrics.jsonl` in these runs."]
  fig, axes = _grid(len(keys))
  for ax, key in zip(axes, keys):
    for r in all_runs:
      rows = [m for m in r.metrics if key in m]
      ax.plot([m["step"] for m in rows], [m[key] for m in rows], label=r.name)
    ax.set_title(key)
    ax.set_xlabel("step")
  axes[0].legend(fontsize=7)
  last = {r.name: r.metrics[-1] for r in all_runs if r.metrics}
  lines = [f"- {name}: {m['step']} steps, final loss {m.get('loss', float('nan')):.4f}" for name, m in last.items()]
  return _save(fig, out_dir, "dynamics.png"), lines


def scores_vs_step(all_runs: list[runs.Run], out_dir: str, in_domain: tuple[str, ...]) -> tuple[list[str], list[str]]:
  by_group: dict[str, list[tuple[str, str]]] = {}
  for r in all_runs:
    for bench, domain in r.benchmarks():
      entry = by_group.setdefault(runs.group(domain, in_domain), [])
      if bench not in [b for b, _ in entry]:
        entry.append((bench, domain))
  images, lines = [], []
  for g in GROUPS:
    if g not in by_group:
      continue
    fig, axes = _grid(len(by_group[g]))
    for ax, (bench, _) in zip(axes, by_group[g]):
      for r in all_runs:
        metric = r.headline(bench)
        pts = r.curve(bench, metric) if metric else []
        if not pts:
          continue
        steps = [p.step for p in pts]
        ax.plot(steps, [p.value for p in pts], marker="o", label=f"{r.name} {metric}")
        ax.fill_between(steps, [p.ci_low for p in pts], [p.ci_high for p in pts], alpha=0.2)
      ax.set_title(bench)
      ax.set_xlabel("step")
      ax.legend(fontsize=7)
    images.append(_save(fig, out_dir, f"scores_{g.replace('-', '_')}.png"))
    lines.append(f"- **{g}**: {', '.join(b for b, _ in by_group[g])}")
  return images, lines


def dip_table(all_runs: list[runs.Run], threshold: float) -> tuple[list[str], list[dict[str, Any]]]:
  rows = []
  header = [
    "run",
    "benchmark",
    "metric",
    "base",
    "min (step)",
    "depth",
    "dip",
    "recovered at",
    "final gain",
    "significant",
    "under-optimised",
  ]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in all_runs:
    for bench, _ in r.benchmarks():
      metric = r.headline(bench)
      pts = r.curve(bench, metric) if metric else []
      if len(pts) < 2:
        continue
      higher, bounded = r.direction(bench)
      d = dynamics.dip_and_recovery(pts, threshold, higher, bounded)
      rows.append(dict(run=r.name, benchmark=bench, metric=metric, report=d, bounded=bounded))
      lines.append(
        f"| {r.name} | {bench} | {metric} | {d.base:.3f}{'' if d.has_base else '*'} | "
        f"{d.min_value:.3f} ({d.min_step}) | {d.depth:+.3f} | {'yes' if d.dip else 'no'} | "
        f"{d.recovery_step if d.recovery_step is not None else ('never' if d.dip else '-')} | "
        f"{d.final_gain:+.3f} | {'yes' if d.gain_significant else 'no'} | "
        f"{'**yes**' if d.under_optimised else 'no'} |"
      )
  return lines, rows


def response_length(all_runs: list[runs.Run], out_dir: str) -> tuple[str | None, list[str]]:
  series = []
  for r in all_runs:
    for bench, _ in r.benchmarks():
      gens = r.generations(bench)
      if gens:
        stats = {
          s: (
            statistics.mean(g["completion_tokens"] for g in rows),
            statistics.median(g["completion_tokens"] for g in rows),
            sum(g["finish_reason"] == "length" for g in rows) / len(rows),
          )
          for s, rows in gens.items()
          if rows
        }
        series.append((r.name, bench, stats))
  if not series:
    return None, ["No cached generations (run the sweep first)."]
  fig, axes = _grid(2, width=5.5)
  for name, bench, stats in series:
    steps = list(stats)
    axes[0].plot(steps, [stats[s][0] for s in steps], marker="o", label=f"{name} {bench} mean")
    axes[0].plot(steps, [stats[s][1] for s in steps], linestyle="--", label=f"{name} {bench} median")
    axes[1].plot(steps, [stats[s][2] for s in steps], marker="o", label=f"{name} {bench}")
  axes[0].set_title("response tokens")
  axes[1].set_title("truncation rate")
  for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=6)
  lines = [
    f"- {name} / {bench}: mean tokens " + ", ".join(f"{s}: {v[0]:.0f}" for s, v in stats.items())
    for name, bench, stats in series
  ]
  return _save(fig, out_dir, "length.png"), lines


def reasoning_markers(all_runs: list[runs.Run], out_dir: str, lexicon: dict) -> tuple[str | None, list[str]]:
  curves: dict[str, dict[str, dict[int, float]]] = {}
  examples: dict[str, str] = {}
  table = [
    "| run / benchmark | step | " + " | ".join(f"{k} per response / per 1k" for k in lexicon) + " |",
    "|" + "---|" * (2 + len(lexicon)),
  ]
  for r in all_runs:
    for bench, _ in r.benchmarks():
      for step, rows in r.generations(bench).items():
        texts = [g["completion"] for g in rows]
        rates = patterns.rates(texts, lexicon)
        for category, rate in rates.items():
          curves.setdefault(category, {}).setdefault(f"{r.name}/{bench}", {})[step] = rate["per_1k_tokens"]
        table.append(
          f"| {r.name} / {bench} | {step} | "
          + " | ".join(f"{v['per_response']:.2f} / {v['per_1k_tokens']:.1f}" for v in rates.values())
          + " |"
        )
        for text in texts:
          for category, n in patterns.count(text, lexicon).items():
            if n and category not in examples:
              examples[category] = text[:300]
  if not curves:
    return None, ["No cached generations (run the sweep first)."]
  fig, axes = _grid(len(curves))
  for ax, (category, by_series) in zip(axes, curves.items()):
    for label, values in by_series.items():
      ax.plot(list(values), list(values.values()), marker="o", label=label)
    ax.set_title(f"{category} per 1k tokens")
    ax.set_xlabel("step")
    ax.legend(fontsize=6)
  lines = [
    "Lexicon (ours; `analysis.markers` overrides): " + "; ".join(f"{k}: {', '.join(v)}" for k, v in lexicon.items())
  ]
  lines += [f"- example ({k}): `{markup.model_text(v, 200)}`" for k, v in examples.items()]
  lines += [""] + table
  return _save(fig, out_dir, "markers.png"), lines


def token_level(all_runs: list[runs.Run], out_dir: str) -> tuple[str | None, list[str]]:
  """From WORKDIR/analysis/tokens.json (analyze.py with analysis.tokens=True)."""
  found = []
  for r in all_runs:
    path = os.path.join(r.workdir, "analysis", "tokens.json")
    if os.path.exists(path):
      with open(path) as f:
        found.append((r.name, json.load(f)))
  if not found:
    return None, [
      "Not computed: rerun `analyze.py` with `--config.analysis.tokens=True` (scores a fixed set of "
      "responses under every checkpoint)."
    ]
  with_ratio = [(name, t) for name, t in found if "ratio_hist" in t]
  fig, axes = _grid(4 if with_ratio else 3)
  lines = []
  for name, t in found:
    x = list(range(len(t["labels"])))
    axes[0].plot(x, t["mean_logprob"], marker="o", label=name)
    axes[1].plot(x, t["mean_entropy"], marker="o", label=name)
    for word, m in t["markers"].items():
      axes[2].plot(x, m["logprob"], marker="o", label=f"{name} '{word}' ({m['count']})")
    for ax in axes[:3]:
      ax.set_xticks(x, t["labels"], fontsize=7)
    lines.append(
      f"- {name}: {t['responses']} responses of {t['source']} ({t['tokens']} tokens) under {', '.join(t['labels'])}"
    )
    fmt = lambda rows: ", ".join(
      f"`{markup.model_text(repr(r['token']))}` {r['delta']:+.2f} (x{r['count']})" for r in rows
    )  # a token that is part of a UTF-8 character shows as [?]
    lines.append(f"  - log-prob rose most ({t['labels'][0]} -> {t['labels'][-1]}): {fmt(t['most_up'])}")
    lines.append(f"  - log-prob fell most (or rose least): {fmt(t['most_down'])}")
    if "ratio_hist" in t:
      teacher = t["teacher"]
      lines.append(
        f"  - student/teacher ratio exp(logp_s - logp_t) over {teacher['tokens']} tokens of "
        f"{teacher['rows']} rows ({teacher['rows_unmatched']} not alignable); teacher mean log-prob "
        f"{teacher['mean_logprob']:.3f}; mean ratio "
        + ", ".join(f"{label}: {v:.3f}" for label, v in zip(t["labels"], t["ratio_mean"]))
      )
  for name, t in with_ratio:
    edges = t["ratio_hist"]["edges"]
    for label in (t["labels"][0], t["labels"][-1]):
      counts = t["ratio_hist"]["counts"][label]
      axes[3].stairs([c / max(sum(counts), 1) for c in counts], edges, label=f"{name} {label}")
  if with_ratio:
    axes[3].set_title("student/teacher ratio (last bin: >= 1.9)")
  axes[0].set_title("mean token log-prob")
  axes[1].set_title("mean token entropy")
  axes[2].set_title("marker-token log-prob")
  for ax in axes:
    ax.set_xlabel("ratio" if with_ratio and ax is axes[3] else "model")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=6)
  return _save(fig, out_dir, "tokens.png"), lines


def final_marker_rates(r: runs.Run, lexicon: dict) -> dict[str, float]:
  """Marker rates per 1k tokens over every benchmark's responses at the run's last evaluated step."""
  texts, last = [], None
  for bench, _ in r.benchmarks():
    gens = r.generations(bench)
    if gens:
      step = max(gens)
      if last is None or step > last:
        texts, last = [], step
      if step == last:
        texts += [g["completion"] for g in gens[step]]
  return {k: v["per_1k_tokens"] for k, v in patterns.rates(texts, lexicon).items()} if texts else {}


def size_comparison(
  rows: list[dict[str, Any]], all_runs: list[runs.Run], out_dir: str, in_domain: tuple[str, ...], lexicon: dict
) -> tuple[str | None, list[str]]:
  """Runs ordered by parameter count: gains per group, deepest dip, recovery, final length and marker rates
  (Sec. 5, Fig. 5). Length growing with no marker growth reads as imitated verbosity; markers per 1k tokens
  growing with size reads as the procedure being taken up."""
  table = []
  for r in all_runs:
    domain = dict(r.benchmarks())
    mine = [x for x in rows if x["run"] == r.name]
    if not mine:
      continue
    gains = {
      g: [
        x["report"].final_gain
        for x in mine  # unbounded scores (a reward) would swamp proportions
        if x["bounded"] and runs.group(domain[x["benchmark"]], in_domain) == g
      ]
      for g in GROUPS
    }
    dips = [x for x in mine if x["report"].dip]
    deepest = max(dips, key=lambda x: x["report"].depth, default=None)
    recoveries = [x["report"].recovery_step for x in dips if x["report"].recovery_step is not None]
    lengths = [x for x in r.results if x["metric"] == "response_tokens" and not runs.BUDGET.fullmatch(x["benchmark"])]
    last = max((x["step"] for x in lengths), default=None)
    final_len = statistics.mean(x["value"] for x in lengths if x["step"] == last) if lengths else float("nan")
    table.append(
      dict(
        run=r.name,
        params=runs.parameters(r.workdir),
        gains=gains,
        deepest=deepest,
        recovery=statistics.median(recoveries) if recoveries else None,
        length=final_len,
        markers=final_marker_rates(r, lexicon),
      )
    )
  if len(table) < 2:
    return None, ["Needs two or more runs (e.g. one per model size): `--workdir=run_a,run_b`."]
  table.sort(key=lambda t: (t["params"] is None, t["params"] or 0, t["run"]))
  mean = lambda v: f"{statistics.mean(v):+.3f}" if v else "-"
  lines = [
    "| run | parameters | in-domain gain | OOD gain | general gain | safety gain (ASR down) | deepest dip | "
    "median recovery step | final response tokens | final markers per 1k tokens |",
    "|" + "---|" * 10,
  ]
  for t in table:
    dip = f"{t['deepest']['benchmark']} {t['deepest']['report'].depth:.3f}" if t["deepest"] else "none"
    lines.append(f"| {t['run']} | {t['params'] / 1e9:.2f}B |" if t["params"] else f"| {t['run']} | ? |")
    lines[-1] += (
      f" {mean(t['gains']['in-domain'])} | {mean(t['gains']['out-of-domain'])} | "
      f"{mean(t['gains']['general'])} | {mean(t['gains']['safety'])} | {dip} | "
      f"{t['recovery'] if t['recovery'] is not None else '-'} | "
      f"{'-' if t['length'] != t['length'] else round(t['length'])} | "
      f"{', '.join(f'{k} {v:.1f}' for k, v in t['markers'].items()) or '-'} |"
    )
  plt = _plt()
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
  x = [t["params"] or i + 1 for i, t in enumerate(table)]
  for g in ("in-domain", "out-of-domain", "general"):
    axes[0].plot(
      x, [statistics.mean(t["gains"][g]) if t["gains"][g] else float("nan") for t in table], marker="o", label=g
    )
  axes[1].plot(x, [t["deepest"]["report"].depth if t["deepest"] else 0.0 for t in table], marker="o")
  for category in lexicon:
    axes[2].plot(x, [t["markers"].get(category, float("nan")) for t in table], marker="o", label=category)
  for ax, title in zip(axes, ("mean final gain", "deepest dip", "final markers per 1k tokens")):
    ax.set_title(title)
    ax.set_xlabel("parameters" if all(t["params"] for t in table) else "run (by size)")
    if all(t["params"] for t in table):
      ax.set_xscale("log")
  axes[0].legend(fontsize=7)
  axes[2].legend(fontsize=7)
  return _save(fig, out_dir, "sizes.png"), lines


def safety_vs_reasoning(
  rows: list[dict[str, Any]], all_runs: list[runs.Run], out_dir: str, in_domain: tuple[str, ...]
) -> tuple[str | None, list[str]]:
  """Per run: mean final gain on reasoning benchmarks vs the change in attack success rate (the study's Fig. 6)."""
  points = []
  for r in all_runs:
    domain = dict(r.benchmarks())
    gains = [x["report"].final_gain for x in rows if x["run"] == r.name and domain[x["benchmark"]] in in_domain]
    asr = [x["report"].final_change for x in rows if x["run"] == r.name and domain[x["benchmark"]] == "safety"]
    if gains and asr:
      points.append((r.name, statistics.mean(gains), statistics.mean(asr)))
  if not points:
    return None, ["Needs an in-domain benchmark and a safety benchmark (hexphi / harmbench) in the same runs."]
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 4))
  for name, gain, asr in points:
    ax.scatter([gain], [asr])
    ax.annotate(name, (gain, asr), fontsize=7)
  ax.axhline(0, color="gray", lw=0.5)
  ax.axvline(0, color="gray", lw=0.5)
  ax.set_xlabel("in-domain gain (final - base)")
  ax.set_ylabel("ASR change (final - base)")
  return _save(fig, out_dir, "safety.png"), [f"- {n}: reasoning {g:+.3f}, ASR {a:+.3f}" for n, g, a in points]


def think_budget_curves(all_runs: list[runs.Run], out_dir: str) -> tuple[str | None, list[str]]:
  """Accuracy vs thinking budget (eval.think_budgets), a line per checkpoint, the full generation last ("full")."""
  curves = [(r, bench, r.think_budgets(bench)) for r in all_runs for bench, _ in r.benchmarks()]
  curves = [c for c in curves if c[2]]
  if not curves:
    return None, ["No thinking budgets evaluated (set `eval.think_budgets`, e.g. `(4096, 8192, 16384)`)."]
  fig, axes = _grid(len(curves))
  lines = []
  for ax, (r, bench, by_budget) in zip(axes, curves):
    metric = r.headline(bench)
    full = {p.step: p for p in r.curve(bench, metric)}
    budgets = list(by_budget)
    for step in sorted({s for points in by_budget.values() for s in points}):
      values = [by_budget[b][step].value if step in by_budget[b] else float("nan") for b in budgets]
      values.append(full[step].value if step in full else float("nan"))
      ax.plot(range(len(values)), values, marker="o", label=f"step {step}")
      lines.append(
        f"- **{bench}** ({r.name}, {metric}) step {step}: "
        + ", ".join(f"{label} {v:.3f}" for label, v in zip([str(b) for b in budgets] + ["full"], values))
      )
    ax.set_xticks(range(len(budgets) + 1), [str(b) for b in budgets] + ["full"])
    ax.set_title(f"{bench} ({r.name})")
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
  return _save(fig, out_dir, "think_budgets.png"), lines


def probe_lead(
  probe: list[tuple[int, float]],
  pts: list[dynamics.Point],
  threshold: float,
  higher: bool = True,
  bounded: bool = True,
  alarm: float = PROBE_ALARM,
) -> dict[str, Any]:
  """How early the probe foretold a benchmark's dip. Probe onset: the first probe step whose log-prob per token
  fell more than `alarm` nats below its first value. Dip onset: the first checkpoint worse than the base by more
  than the threshold and the noise (dynamics' rule). lead = dip onset - probe onset (> 0: the probe saw it first).
  r: Pearson correlation of the score with the probe (interpolated at the checkpoints), with a 95% bootstrap
  interval over checkpoints."""
  steps, values = np.asarray([s for s, _ in probe], float), np.asarray([v for _, v in probe], float)
  fall = values[0] - values
  onset = int(steps[np.argmax(fall > alarm)]) if (fall > alarm).any() else None
  good = (lambda v: v) if higher else (lambda v: -v)
  base = pts[0]
  limit = threshold if bounded else 0.0
  dip = next(
    (
      p.step
      for p in pts[1:]
      if good(base.value) - good(p.value) > max(limit, math.hypot(base.half_width, p.half_width))
    ),
    None,
  )
  out = dict(
    probe_onset=onset,
    dip_onset=dip,
    lead=None if onset is None or dip is None else dip - onset,
    r=None,
    r_low=None,
    r_high=None,
    checkpoints=len(pts),
  )
  x = np.interp([p.step for p in pts], steps, values)
  y = np.asarray([p.value for p in pts])
  if len(pts) >= 3 and x.std() > 0 and y.std() > 0:
    out["r"] = float(np.corrcoef(x, y)[0, 1])
    rng, boot = np.random.default_rng(0), []
    for _ in range(1000):
      i = rng.integers(0, len(pts), len(pts))
      if x[i].std() > 0 and y[i].std() > 0:
        boot.append(np.corrcoef(x[i], y[i])[0, 1])
    out["r_low"], out["r_high"] = (
      (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) if boot else (None, None)
    )
  return out


def probe_vs_scores(
  all_runs: list[runs.Run], out_dir: str, in_domain: tuple[str, ...], threshold: float
) -> tuple[str | None, list[str]]:
  """The in-loop probe (train.probe_every) beside each out-of-domain benchmark's sampled score: its own set's curve
  when one has the benchmark's name, else the mean over sets; with the lead (probe_lead) stated per benchmark."""
  panels, lines = [], []
  for r in all_runs:
    keys = sorted(
      {
        k
        for m in r.metrics
        for k in m
        if k.startswith("probe/") and k.endswith("/logprob") and k != "probe/markers/logprob"
      }
    )
    if not keys:
      continue
    curve = {k: [(m["step"], m[k]) for m in r.metrics if k in m] for k in keys}
    steps = sorted({s for c in curve.values() for s, _ in c})
    mean = [(s, float(np.mean([v for c in curve.values() for t, v in c if t == s]))) for s in steps]
    for bench, domain in r.benchmarks():
      metric = r.headline(bench)
      pts = r.curve(bench, metric) if metric else []
      if runs.group(domain, in_domain) == "in-domain" or len(pts) < 2:
        continue
      key = f"probe/{bench}/logprob"
      probe, label = (curve[key], key) if key in curve else (mean, "probe mean log-prob")
      higher, bounded = r.direction(bench)
      lead = probe_lead(probe, pts, threshold, higher, bounded)
      panels.append((r.name, bench, metric, pts, probe, label))
      said = (
        f"probe onset (fell > {PROBE_ALARM} nats/token) at step {lead['probe_onset']}"
        if lead["probe_onset"] is not None
        else f"the probe never fell by {PROBE_ALARM} nats/token"
      )
      dipped = (
        f"the score's dip began at step {lead['dip_onset']}"
        if lead["dip_onset"] is not None
        else "no dip beyond the threshold and the noise"
      )
      text = f"- **{bench}** ({r.name}, {metric} vs {label}): {said}; {dipped}"
      if lead["lead"] is not None:
        text += f"; lead **{lead['lead']:+d} steps**"
      if lead["r"] is not None:
        text += (
          f"; r = {lead['r']:.2f}"
          + (f" [{lead['r_low']:.2f}, {lead['r_high']:.2f}]" if lead["r_low"] is not None else "")
          + f" over {lead['checkpoints']} checkpoints"
        )
      lines.append(text)
  if not panels:
    return None, ["No probe in these runs (train.probe_every = 0) or no out-of-domain scores to set it beside."]
  fig, axes = _grid(len(panels))
  for ax, (name, bench, metric, pts, probe, label) in zip(axes, panels):
    ax.plot([s for s, _ in probe], [v for _, v in probe], color="tab:blue", label=label)
    ax.set_ylabel("probe log-prob / token", color="tab:blue")
    ax.set_xlabel("step")
    twin = ax.twinx()
    twin.plot([p.step for p in pts], [p.value for p in pts], color="tab:red", marker="o", label=f"{bench} {metric}")
    twin.fill_between(
      [p.step for p in pts], [p.ci_low for p in pts], [p.ci_high for p in pts], color="tab:red", alpha=0.15
    )
    twin.set_ylabel(f"{bench} {metric}", color="tab:red")
    ax.set_title(f"{bench} ({name})")
  return _save(fig, out_dir, "probe.png"), [
    "Probe: the base model's own answers to out-of-domain items, scored "
    "teacher-forced every `train.probe_every` steps (no sampling)."
  ] + lines


def build(
  workdirs: list[str],
  out_dir: str,
  in_domain: tuple[str, ...] = ("math",),
  threshold: float = 0.02,
  markers: str | None = None,
) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  all_runs = [runs.load(w) for w in workdirs]
  lexicon = patterns.parse_lexicon(markers)
  sections: list[tuple[str, list[str], list[str]]] = []  # (title, images, markdown lines)
  image, lines = training_dynamics(all_runs, out_dir)
  sections.append((SECTIONS[0], [image] if image else [], lines))
  images, lines = scores_vs_step(all_runs, out_dir, in_domain)
  sections.append((SECTIONS[1], images, lines or ["No `eval/results.jsonl` (run `eval.py` first)."]))
  lines, rows = dip_table(all_runs, threshold)
  note = [
    f"Dip: the worst score after the base, worse than it by more than {threshold} and than the noise (95% "
    "half-intervals in quadrature); for a lower-is-better score (HEx-PHI's ASR) the worst is the highest, and "
    "an unbounded score (AlpacaEval's reward) is judged against its noise alone. Depth and final gain are in "
    "the metric's direction (> 0: worse / better). `*`: no step 0 evaluated, the first checkpoint stands in "
    "for the base."
  ]
  sections.append((SECTIONS[2], [], note + lines))
  image, lines = response_length(all_runs, out_dir)
  sections.append((SECTIONS[3], [image] if image else [], lines))
  image, lines = reasoning_markers(all_runs, out_dir, lexicon)
  sections.append((SECTIONS[4], [image] if image else [], lines))
  image, lines = token_level(all_runs, out_dir)
  sections.append((SECTIONS[5], [image] if image else [], lines))
  image, lines = size_comparison(rows, all_runs, out_dir, in_domain, lexicon)
  sections.append((SECTIONS[6], [image] if image else [], lines))
  image, lines = safety_vs_reasoning(rows, all_runs, out_dir, in_domain)
  sections.append((SECTIONS[7], [image] if image else [], lines))
  image, lines = think_budget_curves(all_runs, out_dir)
  sections.append((SECTIONS[8], [image] if image else [], lines))
  image, lines = probe_vs_scores(all_runs, out_dir, in_domain, threshold)
  sections.append((SECTIONS[9], [image] if image else [], lines))
  sections += [(title, [], lines) for title, lines in study_tables.sections(all_runs, in_domain, threshold)]

  sections.insert(0, (SUMMARY, [], summary(all_runs, rows)))

  md = [f"# rsft report: {', '.join(r.name for r in all_runs)}", ""]
  body = [f"<h1>rsft report: {html.escape(', '.join(r.name for r in all_runs))}</h1>"]
  for title, imgs, text in sections:
    md += [f"## {title}", ""] + [f"![{title}]({i})" for i in imgs] + [""] + text + [""]
    body.append(f"<section><h2>{html.escape(title)}</h2>")
    for i in imgs:
      with open(os.path.join(out_dir, i), "rb") as f:
        body.append(
          f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(f.read()).decode()}">'
        )
    body.append(markup.to_html(text) + "</section>")
  with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(md))
  page = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>rsft report</title><style>"
    + _CSS
    + "</style></head><body>"
    + "\n".join(body)
    + "</body></html>"
  )
  with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as f:
    f.write(page)
  logging.info("report: %s", os.path.join(out_dir, "index.html"))
  return {"html": os.path.join(out_dir, "index.html"), "markdown": os.path.join(out_dir, "report.md")}


_CSS = (
  "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;"
  "line-height:1.45}h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;"
  "margin-top:2em}img{max-width:100%}table{border-collapse:collapse;font-size:12px;margin:.6em 0}"
  "th{background:#f3f3f3;text-align:left}td,th{border:1px solid #ccc;padding:2px 6px}"
  "code{background:#f5f5f5;padding:0 .2em;font-size:90%;word-break:break-word}"
)


def summary(all_runs: list[runs.Run], rows: list[dict[str, Any]]) -> list[str]:
  """What happened, per run and benchmark: base -> best -> last of the headline score, and the dip (depth, the step
  it bottomed at, when it recovered), from the dip-and-recovery analysis below."""
  by_name = {r.name: r for r in all_runs}
  lines = []
  for row in rows:
    r, d = by_name[row["run"]], row["report"]
    pts = r.curve(row["benchmark"], row["metric"])
    higher, _ = r.direction(row["benchmark"])
    best = (max if higher else min)(pts, key=lambda p: p.value)
    base = f"base {d.base:.3f}" if d.has_base else f"first checkpoint {pts[0].value:.3f} (step {pts[0].step})"
    text = (
      f"- **{row['benchmark']}** ({row['run']}, {row['metric']}): {base} → best {best.value:.3f} (step "
      f"{best.step}) → last {pts[-1].value:.3f} (step {pts[-1].step}); "
    )
    if d.dip:
      recovered = f"recovered at step {d.recovery_step}" if d.recovery_step is not None else "not recovered"
      text += f"*dip* of {d.depth:.3f} at step {d.min_step}, {recovered}"
    else:
      text += "no dip beyond the threshold and the noise"
    lines.append(text)
  return lines or ["No scores yet (run `eval.py` first)."]
