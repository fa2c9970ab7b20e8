"""The checkpoint sweep (eval.mode=sweep) and grading of outside responses (eval.mode=grade).

Benchmarks come from eval.benchmarks (groups such as "halueval" expand to their members) under eval.protocol.
Every benchmark is checked before anything is generated (rsft/evals/preflight.py): one whose data, grader
environment or judge is missing stops the run with the fix, or with eval.skip_unavailable is left out and listed as
"not run: <what is missing>" in the summary. For each selected checkpoint (step 0 = model.path, the base model) and benchmark:
the items' prompts go to
WORKDIR/eval/prompts/<benchmark>.jsonl, completions to eval/generations/step_<s>/<benchmark>.jsonl (the
resumable generate mode), grades to eval/grades/step_<s>/<benchmark>.jsonl (resumable too). A killed sweep
rerun with the same command redoes nothing already written, and a model is only loaded when some of its
generations are missing. Results are recomputed from the grade files at the end: eval/results.jsonl (one row
per step x benchmark x metric, with a bootstrap interval over items) and eval/summary.{md,csv}.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import gc
import hashlib
import io
import json
import os
from typing import Any

import ml_collections
from absl import logging

from rsft import distributed
from rsft.evals import benchmarks, checkpoints, grading, jsonl, loaders, metrics, modes, preflight
from rsft.evals.benchmarks import Benchmark, Item
from rsft.evals.judges import Judges


def _steps(config: Any, workdir: str) -> list[tuple[int, str]]:
  """(step, model dir) to evaluate: step 0 is model.path (when set), then the selected checkpoints."""
  candidates = sorted(set(([0] if config.model.path else []) + checkpoints.list_steps(workdir)))  # a made base: 0
  if not candidates:
    raise ValueError(f"nothing to evaluate: {workdir}/checkpoints has no steps and model.path is not set.")
  wanted = checkpoints.select(config.eval.checkpoints, candidates)
  return [(s, config.model.path if s == 0 and config.model.path else checkpoints.step_dir(workdir, s)) for s in wanted]


def decoding(config: Any, bench: Benchmark) -> ml_collections.ConfigDict:
  """The benchmark's decoding (its protocol entry) with the sweep-wide overrides eval.n / max_new_tokens /
  temperature / top_p / top_k / seed; the sampler's engine settings come from config.sample."""
  s, e, d = config.sample, config.eval, bench.decoding
  pick = lambda override, default: default if override < 0 else override
  return ml_collections.ConfigDict(
    dict(
      n=e.n or d.n,
      max_new_tokens=e.max_new_tokens or d.max_new_tokens,
      max_total_tokens=d.max_total_tokens,
      temperature=pick(e.temperature, d.temperature),
      top_p=pick(e.top_p, d.top_p),
      top_k=pick(e.top_k, d.top_k),
      presence_penalty=d.presence_penalty,
      frequency_penalty=d.frequency_penalty,
      seed=pick(e.seed, d.seed),
      skip_special_tokens=d.skip_special_tokens,
      top_k_cap=max(s.top_k_cap, d.top_k),
      chunk_steps=s.chunk_steps,
      prompt_buckets=tuple(s.prompt_buckets),
      max_num_seqs=s.max_num_seqs,
      page_size=s.page_size,
      kv_pages=s.kv_pages,
      memory_utilization=s.memory_utilization,
      think_budget=s.think_budget,
      answer_budget=s.answer_budget,
      prefix_cache=s.prefix_cache,
      chunked_prefill=s.chunked_prefill,
    )
  )


def selected(config: Any) -> list[Benchmark]:
  """eval.benchmarks under eval.protocol, groups expanded, eval.gold_columns applied."""
  gold = loaders.parse_files(config.eval.gold_columns)
  benches = [benchmarks.get(name, config.eval.protocol) for name in benchmarks.expand(config.eval.benchmarks)]
  for name in gold:
    if name not in {b.name for b in benches}:
      raise ValueError(
        f"eval.gold_columns names {name!r}, which is not among the benchmarks run "
        f"({', '.join(b.name for b in benches)})."
      )
  return [benchmarks.with_gold(b, gold[b.name]) if b.name in gold else b for b in benches]


def _write_prompts(path: str, items: list[Item]) -> None:
  rows = "".join(json.dumps({"id": it.id, "prompt": it.prompt}, ensure_ascii=False) + "\n" for it in items)
  if distributed.is_primary() and (not os.path.exists(path) or open(path, encoding="utf-8").read() != rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(rows)
    os.replace(path + ".tmp", path)


def _read(path: str) -> list[dict[str, Any]]:
  return [row for _, row in jsonl.read(path)] if os.path.exists(path) else []


def item_sha(item: Item) -> str:
  """A hash of an item's prompt and gold, kept in each grade row: a grade cached for another item under the same
  index (another data file, protocol, or PYTHONHASHSEED for GPQA's option order) is refused, never reused."""
  blob = json.dumps([item.id, item.prompt, item.gold], default=str, ensure_ascii=False)
  return hashlib.sha1(blob.encode()).hexdigest()[:12]


def grade_generations(
  bench: Benchmark, items: list[Item], gen_path: str, grade_path: str, settings: dict[str, Any], judges: Any = None
) -> None:
  generations = _read(gen_path)
  with jsonl.ResumableWriter(grade_path, lambda r: (r["index"], r["sample"]), settings) as writer:
    for (index, _sample), sha in writer.done.items():
      if sha is not None and index < len(items) and sha != item_sha(items[index]):
        raise ValueError(
          f"{grade_path}: item {index} was graded for another prompt or gold than it has now (data "
          "file, protocol or PYTHONHASHSEED changed); move the old grades away to regrade."
        )
    todo = [g for g in generations if (g["index"], g["sample"]) not in writer.done]
    if not todo:
      return
    grades = grading.grade(bench, [items[g["index"]] for g in todo], [g["completion"] for g in todo], judges=judges)
    writer.write(
      [
        dict(
          index=g["index"],
          sample=g["sample"],
          id=items[g["index"]].id,
          **gr,
          tokens=g["completion_tokens"],
          truncated=g["finish_reason"] == "length",
          prompt_sha=item_sha(items[g["index"]]),
        )
        for g, gr in zip(todo, grades)
      ]
    )


def summarize(
  workdir: str, steps: list[int], benches: list[Benchmark], items: dict[str, list[Item]], n_by_bench: dict[str, int]
) -> list[dict[str, Any]]:
  """results.jsonl rows from the grade files; per-category rows for benchmarks with categories."""
  rows = []
  for step in steps:
    for bench in benches:
      grades = _read(os.path.join(workdir, "eval", "grades", f"step_{step}", f"{bench.name}.jsonl"))
      per_item: dict[int, list[dict]] = collections.defaultdict(list)
      for g in grades:
        per_item[g["index"]].append(g)
      complete = {i: v for i, v in per_item.items() if len(v) == n_by_bench[bench.name]}
      if len(complete) < len(items[bench.name]):
        logging.warning(
          "step %d %s: %d of %d items graded; results cover those only.",
          step,
          bench.name,
          len(complete),
          len(items[bench.name]),
        )
      # Direction and scale of the score (avg@k, pass@k, maj@k): the analysis reads a dip the right way round.
      how = dict(higher_is_better=bench.higher_is_better, scale=grading.grader_for(bench).scale)
      for name, m in metrics.summarize(complete, ks=(1, 4, 8, 16)).items():
        rows.append(dict(step=step, benchmark=bench.name, domain=bench.domain, metric=name, **m, **how))
      by_category = collections.defaultdict(dict)
      for i, v in complete.items():
        if items[bench.name][i].category:
          by_category[items[bench.name][i].category][i] = v
      for category, subset in sorted(by_category.items()):
        k = n_by_bench[bench.name]
        m = metrics.summarize(subset)[f"avg@{k}"]
        rows.append(
          dict(step=step, benchmark=bench.name, domain=bench.domain, metric=f"avg@{k}/{category}", **m, **how)
        )
  return rows


def group_rows(
  rows: list[dict[str, Any]], names: list[str], n_by_bench: dict[str, int], aggregate: str
) -> list[dict[str, Any]]:
  """A headline row per step for each group whose members all ran: the mean of the members' scores
  (eval.group_aggregate=mean) or the item-weighted mean (pooled, lm-eval's weight_by_size)."""
  if aggregate not in ("mean", "pooled"):
    raise ValueError(f"eval.group_aggregate={aggregate!r}; choose mean or pooled")
  out = []
  for group, members in benchmarks.GROUPS.items():
    if not all(m in names for m in members):
      continue
    by_step = collections.defaultdict(dict)
    for r in rows:
      if r["benchmark"] in members and r["metric"] == f"avg@{n_by_bench[r['benchmark']]}":
        by_step[r["step"]][r["benchmark"]] = r
    for step, got in sorted(by_step.items()):
      if len(got) < len(members):
        continue
      weights = [got[m]["n_items"] if aggregate == "pooled" else 1.0 for m in members]
      combine = lambda key: sum(w * got[m][key] for w, m in zip(weights, members)) / sum(weights)
      out.append(
        dict(
          step=step,
          benchmark=group,
          domain=got[members[0]]["domain"],
          metric="avg@1",
          value=combine("value"),
          ci_low=combine("ci_low"),
          ci_high=combine("ci_high"),
          n_items=sum(got[m]["n_items"] for m in members),
          members=list(members),
          aggregate=aggregate,
          higher_is_better=True,
          scale="proportion",
        )
      )
  return out


def write_tables(
  workdir: str,
  rows: list[dict[str, Any]],
  benches: list[Benchmark],
  n_by_bench: dict[str, int],
  not_run: dict[str, str] | None = None,
) -> None:
  """results.jsonl, and summary.{md,csv}: rows = steps, columns = benchmarks (groups after their members, then
  the benchmarks that did not run, each saying what is missing)."""
  if not distributed.is_primary():
    return
  not_run = not_run or {}
  out = os.path.join(workdir, "eval")
  _replace(os.path.join(out, "results.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
  _replace(os.path.join(out, "not_run.json"), json.dumps(not_run, indent=1))
  headline = {(r["step"], r["benchmark"]): r for r in rows if r["metric"] == f"avg@{n_by_bench.get(r['benchmark'], 1)}"}
  steps = sorted({r["step"] for r in rows})
  columns = [(b.name, f"{b.name} (avg@{n_by_bench[b.name]})") for b in benches]
  columns += [
    (g, f"{g} ({'+'.join(m.removeprefix(g + '_') for m in ms)})")
    for g, ms in benchmarks.GROUPS.items()
    if any((s, g) in headline for s in steps)
  ]
  names = [name for name, _ in columns]
  header = ["step"] + [label for _, label in columns] + list(not_run)
  table = [
    [str(s)]
    + [f"{100 * headline[(s, n)]['value']:.1f}" if (s, n) in headline else "" for n in names]
    + [f"not run: {why}" for why in not_run.values()]
    for s in steps or ["-"]
  ]
  text = io.StringIO()
  csv.writer(text).writerows([header] + table)
  _replace(os.path.join(out, "summary.csv"), text.getvalue())
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in table]
  ci = ["", "Scores x100; 95% bootstrap intervals over items are in results.jsonl (ci_low, ci_high)."]
  _replace(os.path.join(out, "summary.md"), "\n".join(lines + ci) + "\n")


def _replace(path: str, text: str) -> None:
  """Whole or not at all: follow mode rewrites these while analyze.py may read them."""
  with open(path + ".tmp", "w", newline="") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def prepare(config: Any, graders: bool = True) -> tuple[list[Benchmark], dict[str, list[Item]], dict[str, str]]:
  """(benchmarks that can run, their items, {benchmark: why not run}), decided before anything is generated: a
  benchmark that cannot run here stops the run (preflight.stop) unless eval.skip_unavailable; a typo in eval.files
  names the closest benchmark. graders=False: only the data is needed (prompts mode)."""
  files = loaders.parse_files(config.eval.files)
  for name in files:
    benchmarks.get(name, config.eval.protocol)
  benches, items, not_run = [], {}, {}
  for b in selected(config):
    why = preflight.problem(b, config.eval, files, graders=graders)
    if why is None:
      try:
        items[b.name] = loaders.load_items(b, loaders.data_dir(config.eval), config.eval.limit, files.get(b.name))
      except (OSError, ImportError) as e:  # an hf: dataset not in the offline cache, a file that vanished
        why = f"data: {files.get(b.name) or b.file} could not be read ({type(e).__name__}: {str(e)[:200]})"
      except ValueError as e:
        if not files.get(b.name, "").startswith("hf:"):
          raise  # a malformed row of a local file: its own error names the file and row
        why = f"data: {files[b.name]} could not be read ({type(e).__name__}: {str(e)[:200]})"
    if why is not None:
      not_run[b.name] = why
      continue
    benches.append(b)
  if not config.eval.skip_unavailable:
    preflight.stop(not_run)
  for name, why in not_run.items():
    logging.warning("benchmark %s not run (eval.skip_unavailable): %s", name, why)
  return benches, items, not_run


def budgets(config: Any, benches: list[Benchmark]) -> dict[str, list[tuple[int, Benchmark]]]:
  """eval.think_budgets per benchmark: (budget, the benchmark scored under it, named <name>@think<budget>), checked
  against each benchmark's max_new_tokens and sample.think_budget before anything runs."""
  out = {}
  for b in benches:
    cap, outer = decoding(config, b).max_new_tokens, config.sample.think_budget
    for budget in config.eval.think_budgets:
      if not 0 < budget < cap or (outer and budget >= outer):
        raise ValueError(
          f"eval.think_budgets: {budget} must be > 0 and below {b.name}'s max_new_tokens ({cap})"
          + (f" and sample.think_budget ({outer})" if outer else "")
          + "."
        )
    out[b.name] = [
      (budget, dataclasses.replace(b, name=f"{b.name}@think{budget}"))
      for budget in sorted(set(config.eval.think_budgets))
    ]
  return out


@dataclasses.dataclass
class Sweep:
  """What a sweep (or follow mode) scores each checkpoint on, decided once before any checkpoint is loaded."""

  config: Any
  workdir: str
  benches: list[Benchmark]  # generated
  scored: list[Benchmark]  # graded: the benches and each one under every thinking budget
  items: dict[str, list[Item]]
  decodings: dict[str, ml_collections.ConfigDict]
  under_budget: dict[str, list[tuple[int, Benchmark]]]
  prompt_files: dict[str, str]
  not_run: dict[str, str]

  def path(self, kind: str, step: int, bench: Benchmark) -> str:
    return os.path.join(self.workdir, "eval", kind, f"step_{step}", f"{bench.name}.jsonl")


def prepare_sweep(config: Any, workdir: str) -> Sweep:
  """Benchmarks checked (preflight), items loaded, prompt files written, budgets checked: nothing loads a model."""
  benches, items, not_run = prepare(config)
  decodings = {b.name: decoding(config, b) for b in benches}
  under_budget = budgets(config, benches)
  for b in benches:  # a budget's scores are the benchmark's items and decoding under another name
    for _, under in under_budget[b.name]:
      items[under.name], decodings[under.name] = items[b.name], decodings[b.name]
  prompt_files = {b.name: os.path.join(workdir, "eval", "prompts", f"{b.name}.jsonl") for b in benches}
  for b in benches:
    _write_prompts(prompt_files[b.name], items[b.name])
  distributed.sync("prompts written")
  scored = benches + [under for b in benches for _, under in under_budget[b.name]]
  return Sweep(config, workdir, benches, scored, items, decodings, under_budget, prompt_files, not_run)


def score_step(sw: Sweep, step: int, path: str, load_policy, load_judge, renderer_for) -> None:
  """Generates everything checkpoint `step` (at `path`) still owes, releases it, then grades: resumable at
  sequence and grade granularity. The policy loads only when something is missing."""
  config, model, renderer = sw.config, None, None

  def owes(b: Benchmark, n: int) -> bool:
    distributed.sync(f"check step {step} {b.name}")  # all processes decide on the same file contents
    rows = _read(sw.path("generations", step, b))
    return len({(r["index"], r["sample"]) for r in rows}) < len(sw.items[b.name]) * n

  for b in sw.benches:
    n = sw.decodings[b.name].n
    settings = dict(model=os.path.abspath(path), step=step, benchmark=b.name)
    for budget, under in [(None, b)] + sw.under_budget[b.name]:
      if owes(under, n):
        if model is None:
          model = load_policy(path)
          renderer = renderer_for(model)
        if budget is None:
          modes.generate_file(
            model,
            sw.decodings[b.name],
            config.eval,
            sw.prompt_files[b.name],
            sw.path("generations", step, b),
            settings,
            renderer,
          )
        else:
          modes.budget_file(
            model,
            sw.decodings[b.name],
            config.eval,
            sw.prompt_files[b.name],
            sw.path("generations", step, b),
            sw.path("generations", step, under),
            budget,
            settings,
            renderer,
          )
  del model
  gc.collect()
  judges = Judges(config.eval, load_judge)  # judge models load on first use, after the policy is gone
  for b in sw.scored:
    grade_generations(
      b,
      sw.items[b.name],
      sw.path("generations", step, b),
      sw.path("grades", step, b),
      dict(benchmark=b.name, grader=b.grader, protocol=config.eval.protocol, extractor=b.extractor, think=b.think),
      judges,
    )
  judges.close()
  gc.collect()


def finish(sw: Sweep, steps: list[int]) -> list[dict[str, Any]]:
  """results.jsonl and the summary tables recomputed from the grade files of `steps`."""
  n_by_bench = {b.name: sw.decodings[b.name].n for b in sw.scored}
  distributed.sync("graded")
  rows = summarize(sw.workdir, steps, sw.scored, sw.items, n_by_bench)
  rows += group_rows(rows, [b.name for b in sw.benches], n_by_bench, sw.config.eval.group_aggregate)
  write_tables(sw.workdir, rows, sw.scored, n_by_bench, sw.not_run)
  return rows


def run_sweep(config: Any, workdir: str, load_model, renderer_for) -> list[dict[str, Any]]:
  steps = _steps(config, workdir)
  sw = prepare_sweep(config, workdir)
  logging.info("sweep: steps %s x benchmarks %s", [s for s, _ in steps], [b.name for b in sw.benches])
  for step, path in steps:
    score_step(sw, step, path, load_model, load_model, renderer_for)
  return finish(sw, [s for s, _ in steps])


def grade_file(
  input_path: str, output_path: str, judges: Any = None, protocol: str = "study", eval_cfg: Any = None
) -> dict[str, int]:
  """eval.mode=grade: rows {benchmark, item (a row of its data file), response} -> + score, answer, status,
  graded under `protocol` (a row's own "protocol" field wins). With `eval_cfg`, the graders' environment (punkt,
  sandbox, judges) is checked for every benchmark in the file before anything is written."""
  requests = []
  for number, row in jsonl.read(input_path):
    where = f"{input_path}:{number}"
    if not isinstance(row, dict):
      raise ValueError(f"{where}: a row must be an object {{benchmark, item, response}}")
    missing = [k for k in ("benchmark", "item", "response") if k not in row]
    if missing:
      raise ValueError(f"{where}: missing field(s) {missing}")
    if not isinstance(row["response"], str):
      raise ValueError(f"{where}: response must be a string, not {type(row['response']).__name__}")
    if not isinstance(row["item"], dict):
      raise ValueError(f"{where}: item must be an object (a row of the benchmark's data file)")
    name, row_protocol = row["benchmark"], row.get("protocol", protocol)
    bench = (
      benchmarks.member_for(name, row["item"], row_protocol)
      if name in benchmarks.GROUPS
      else benchmarks.get(name, row_protocol)
    )
    absent = benchmarks.missing_fields(bench, row["item"])
    if absent:
      raise ValueError(f"{where}: item lacks field(s) {absent} of benchmark {bench.name}")
    requests.append((len(requests), row, bench, bench.make_item(row["item"], len(requests))))
  if eval_cfg is not None:  # what grading needs here, before a single row is scored or the output is opened
    benches = {r[2].name: r[2] for r in requests}
    preflight.stop(
      {name: why for name, b in benches.items() if (why := preflight.problem(b, eval_cfg, {}, data=False))},
      skip_hint=False,
    )
  with jsonl.ResumableWriter(
    output_path, lambda r: (r["index"],), dict(mode="grade", input=input_path, protocol=protocol)
  ) as writer:
    todo = [r for r in requests if (r[0],) not in writer.done]
    by_bench = collections.defaultdict(list)
    for r in todo:
      by_bench[(r[2].name, id(r[2]))].append(r)
    written = 0
    for rows in by_bench.values():
      grades = grading.grade(rows[0][2], [r[3] for r in rows], [r[1]["response"] for r in rows], judges=judges)
      writer.write([dict(r[1], index=r[0], **g) for r, g in zip(rows, grades)])
      written += len(rows)
  return {"written": written, "done_before": len(writer.done), "rows": len(requests)}
