"""IFEval: how often rsft's checkers (rsft.evals.graders.ifeval) give lm-evaluation-harness 0.4.9.1's verdict, strict
and loose, instruction by instruction, side by side in one run.

  NLTK_DATA=../shared/nltk_data python bench/ifeval_agreement.py [--lm_eval_dir=/tmp/lmeval_pkg] [--per_row=20]
  python bench/ifeval_agreement.py --smoke [--lm_eval_dir=...]   # 20 rows x 2 responses, output in a temp dir;
                                                                  # says "skipped: ..." when lm_eval is missing

lm_eval is not an rsft dependency and nothing is installed here. Either `pip install --no-deps lm_eval==0.4.9.1
immutabledict` (the IFEval files need only nltk, langdetect and immutabledict; the rest of the harness is never
imported), or unpack the wheel and pass `--lm_eval_dir` (the folder holding `lm_eval/`). NLTK_DATA defaults to
../shared/nltk_data when that exists; without punkt_tab there, lm_eval's `instructions_util` downloads it at import.

Responses: each of the 541 IFEval rows is checked against --per_row responses drawn with a per-row seed: GPT-4-turbo
answers from AlpacaEval (real prose with lists, markdown and code), most of them rewritten by a variant aimed at one
of the row's instructions (sentence/word/capital counts near the threshold, `***` paragraphs, P.S., <<title>>, JSON,
bullets, placeholders, SECTION X, ...) and some by generic variants (case, quotes, commas removed, a chatty first
line, sentences with abbreviations, decimals, ellipses and quotes). Both sides grade the same (row, response) with
their public entry points: lm_eval's `utils.process_results` and rsft's `ifeval.grade`. langdetect is seeded for
both (lm_eval does not seed it) and memoised by text, which changes no verdict. Where lm_eval draws an argument at
random (a falsy kwarg, or a `letter` outside a-z: keys 1122 "#" and 1129 "!"), its verdict is a coin flip that
nobody can reproduce; those checks are counted apart (`random_in_lm_eval`) and left out of the headline agreement.

Writes bench/out/ifeval_agreement.json (--out).
"""

from __future__ import annotations

import argparse
import ast
import collections
import importlib
import importlib.util
import inspect
import json
import logging
import os
import random
import re
import string
import sys
import tempfile
import time
import types
from typing import Any

from ifeval_responses import responses_for  # a sibling in bench/: Python puts the script's own folder first on the path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
INSTALL_HINT = (
  "lm_eval's IFEval files were not found. Run `pip install --no-deps lm_eval==0.4.9.1 immutabledict`, "
  "or unpack the wheel (`pip download --no-deps lm_eval==0.4.9.1` and unzip it, e.g. into "
  "/tmp/lmeval_pkg) and pass --lm_eval_dir=/tmp/lmeval_pkg"
)


# ---- lm_eval, imported from its IFEval files alone ----------------------------------------------------------------


def _ifeval_dir(lm_eval_dir: str) -> str:
  for candidate in ("lm_eval/tasks/ifeval", "tasks/ifeval", "."):
    path = os.path.join(lm_eval_dir, candidate)
    if os.path.exists(os.path.join(path, "instructions_registry.py")):
      return os.path.abspath(path)
  raise SystemExit(f"no lm_eval/tasks/ifeval/instructions_registry.py under {lm_eval_dir!r}. {INSTALL_HINT}")


def load_lm_eval(lm_eval_dir: str | None) -> tuple[types.ModuleType, str]:
  """lm_eval's ifeval `utils` module and the lm_eval version. `lm_eval.tasks/__init__` imports the whole harness
  (sacrebleu, datasets, ...), so the three packages above the IFEval files are stand-ins that only give the path."""
  if lm_eval_dir is None:
    try:
      import lm_eval
      from lm_eval.tasks.ifeval import utils  # a full lm_eval install

      return utils, lm_eval.__version__
    except ImportError:
      spec = importlib.util.find_spec("lm_eval")
      if spec is None or not spec.submodule_search_locations:
        raise SystemExit(INSTALL_HINT) from None
      lm_eval_dir = os.path.dirname(list(spec.submodule_search_locations)[0])  # installed with --no-deps
  ifeval_dir = _ifeval_dir(lm_eval_dir)
  package_dir = os.path.dirname(os.path.dirname(ifeval_dir))
  for name, path in (
    ("lm_eval", package_dir),
    ("lm_eval.tasks", os.path.dirname(ifeval_dir)),
    ("lm_eval.tasks.ifeval", ifeval_dir),
  ):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
  try:
    utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
  except ModuleNotFoundError as e:
    raise SystemExit(f"lm_eval's IFEval files need {e.name!r}: pip install {e.name}") from None
  init = os.path.join(package_dir, "__init__.py")
  found = re.search(r'__version__ = "([^"]+)"', open(init).read()) if os.path.exists(init) else None
  return utils, found.group(1) if found else "unknown"


def memoise_langdetect() -> None:
  """Seeded langdetect is a function of the text; both sides ask about the same loose variants again and again."""
  import langdetect

  detect, cache = langdetect.detect, {}

  def cached(text: str) -> str:
    if text not in cache:
      langdetect.DetectorFactory.seed = 0
      try:
        cache[text] = detect(text)
      except langdetect.LangDetectException as e:
        cache[text] = e
    if isinstance(cache[text], Exception):
      raise cache[text]
    return cache[text]

  langdetect.detect = cached


def random_in_lm_eval(registry: dict[str, type], instruction_id: str, kwargs: dict[str, Any]) -> bool:
  """lm_eval's utils drops falsy kwargs and build_description then draws the arguments it lacks; it also draws
  negative counts, an nth_paragraph outside 1..num_paragraphs, and a `letter` that is not one a-z character."""
  params = inspect.signature(registry[instruction_id]("").build_description).parameters
  if any(not kwargs.get(p) or (isinstance(kwargs[p], int) and kwargs[p] < 0) for p in params):
    return True
  if instruction_id == "length_constraints:nth_paragraph_first_word":
    return not 0 < kwargs.get("nth_paragraph", 1) <= kwargs.get("num_paragraphs", 1)
  letter = kwargs.get("letter")
  return instruction_id == "keywords:letter_frequency" and not (
    isinstance(letter, str) and len(letter.strip()) == 1 and letter.strip().lower() in string.ascii_lowercase
  )


# ---- comparison -------------------------------------------------------------------------------------------------


def literal(value: Any) -> Any:
  return ast.literal_eval(value) if isinstance(value, str) else value  # CSV/parquet exports stringify lists


def detail(instruction_id: str, text: str, rsft_ifeval: types.ModuleType, lm_util: types.ModuleType) -> str:
  if instruction_id == "length_constraints:number_sentences":
    return f"sentences rsft {rsft_ifeval.count_sentences(text)} / lm_eval {lm_util.count_sentences(text)}"
  if instruction_id == "change_case:capital_word_frequency":
    ours = sum(1 for w in rsft_ifeval.word_tokens(text) if w.isupper())
    theirs = sum(1 for w in lm_util.nltk.word_tokenize(text) if w.isupper())
    return f"capital words rsft {ours} / lm_eval {theirs}"
  return ""


def nltk_drift(path: str, verdicts: list[list[Any]], nltk_version: str) -> dict[str, Any]:
  """How many of lm_eval's own deterministic verdicts move between the nltk that wrote `path` and this one."""
  with open(path) as f:
    head = json.loads(f.readline())
    before = [json.loads(line) for line in f]
  if [v[:3] for v in before] != [v[:3] for v in verdicts]:
    raise SystemExit(f"{path}: written for other rows or responses (use the same --rows and --per_row)")
  by_instruction = collections.defaultdict(collections.Counter)
  prompts_before, prompts_now = (
    collections.defaultdict(lambda: [True, True]),
    collections.defaultdict(lambda: [True, True]),
  )
  for old, new in zip(before, verdicts):
    if new[5]:
      continue  # lm_eval draws this check's argument at random: no verdict to compare
    c = by_instruction[new[2]]
    c["checks"] += 1
    c["differ_strict"] += old[3] != new[3]
    c["differ_loose"] += old[4] != new[4]
    for k, verdict in ((0, 3), (1, 4)):
      prompts_before[(new[0], new[1])][k] &= old[verdict]
      prompts_now[(new[0], new[1])][k] &= new[verdict]
  total = sum(by_instruction.values(), collections.Counter())
  prompts = len(prompts_now)
  moved = [sum(prompts_before[p][k] != prompts_now[p][k] for p in prompts_now) for k in (0, 1)]
  out = dict(
    nltk_before=head["nltk"],
    nltk_now=nltk_version,
    checks=total["checks"],
    differ_strict=total["differ_strict"],
    differ_loose=total["differ_loose"],
    responses=prompts,
    prompt_level_differ_strict=moved[0],
    prompt_level_differ_loose=moved[1],
    by_instruction={k: dict(v) for k, v in sorted(by_instruction.items()) if v["differ_strict"] or v["differ_loose"]},
  )
  print(
    f"\nlm_eval's own verdicts, nltk {head['nltk']} -> {nltk_version}: {total['differ_strict']} strict / "
    f"{total['differ_loose']} loose of {total['checks']} instruction-level checks differ; prompt level "
    f"{moved[0]} / {moved[1]} of {prompts} responses"
  )
  for iid, c in out["by_instruction"].items():
    print(f"  {iid:46} {c['differ_strict']:4} / {c['differ_loose']:<4} of {c['checks']}")
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--lm_eval_dir", default=None, help="folder holding lm_eval/ (an unpacked wheel)")
  parser.add_argument("--per_row", type=int, default=20, help="responses checked against each IFEval row")
  parser.add_argument("--examples", type=int, default=3, help="example disagreements shown per instruction")
  parser.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "ifeval_agreement.json"))
  parser.add_argument("--rows", type=int, default=0, help="first N IFEval rows only (0 = all 541)")
  parser.add_argument("--smoke", action="store_true", help="20 rows x 2 responses, --out in a temp dir")
  parser.add_argument("--save_verdicts", default="", help="write lm_eval's verdict on every check here (JSONL)")
  parser.add_argument(
    "--against_verdicts",
    default="",
    help="count how many of lm_eval's verdicts differ from a --save_verdicts file written under "
    "another nltk (run each under its own nltk: PYTHONPATH=<nltk install> ...)",
  )
  args = parser.parse_args()
  tmp = None
  if args.smoke:
    tmp = tempfile.TemporaryDirectory()
    args.rows, args.per_row, args.out = 20, 2, os.path.join(tmp.name, "ifeval_agreement.json")
  nltk_data = os.path.join(SHARED, "nltk_data")
  if "NLTK_DATA" not in os.environ and os.path.isdir(nltk_data):
    os.environ["NLTK_DATA"] = os.path.abspath(nltk_data)  # before nltk is imported: it reads NLTK_DATA once
  logging.getLogger().setLevel(logging.CRITICAL)  # lm_eval logs every text langdetect cannot place

  try:
    lm_utils, lm_version = load_lm_eval(args.lm_eval_dir)
  except SystemExit as e:
    if not args.smoke:
      raise
    print(f"skipped: bench/ifeval_agreement.py needs lm_eval's IFEval files: {e}")
    return
  lm_util = sys.modules["lm_eval.tasks.ifeval.instructions_util"]
  registry = sys.modules["lm_eval.tasks.ifeval.instructions_registry"].INSTRUCTION_DICT
  from rsft.evals.graders import ifeval

  memoise_langdetect()

  rows = [json.loads(line) for line in open(os.path.join(SHARED, "benchmarks", "ifeval.jsonl"))]
  rows = rows[: args.rows] if args.rows else rows
  for row in rows:
    row["instruction_id_list"], row["kwargs"] = literal(row["instruction_id_list"]), literal(row["kwargs"])
  outputs = [json.loads(line)["output"] for line in open(os.path.join(SHARED, "benchmarks", "alpaca_eval.jsonl"))]

  start = time.perf_counter()
  stats = collections.defaultdict(collections.Counter)
  examples = collections.defaultdict(list)
  verdicts = []  # (key, response, instruction, strict, loose) of lm_eval: --save_verdicts / --against_verdicts
  for row in rows:
    for j, response in enumerate(responses_for(row, outputs, args.per_row)):
      random.seed(f"{row['key']}/{j}")  # lm_eval's random draws (see random_in_lm_eval): the same on every run
      theirs = lm_utils.process_results(row, [response])
      ours = ifeval.grade(row["instruction_id_list"], row["kwargs"], response)
      for i, (iid, kw) in enumerate(zip(row["instruction_id_list"], row["kwargs"])):
        verdicts.append(
          [
            row["key"],
            j,
            iid,
            bool(theirs["inst_level_strict_acc"][i]),
            bool(theirs["inst_level_loose_acc"][i]),
            random_in_lm_eval(registry, iid, kw),
          ]
        )
        s = stats[iid]
        s["checks"] += 1
        s["followed_strict"] += bool(theirs["inst_level_strict_acc"][i])
        s["followed_loose"] += bool(theirs["inst_level_loose_acc"][i])
        drawn = random_in_lm_eval(registry, iid, kw)
        s["random_in_lm_eval"] += drawn
        for mode in ("strict", "loose"):
          theirs_ok, ours_ok = bool(theirs[f"inst_level_{mode}_acc"][i]), bool(ours[f"inst_{mode}"][i])
          if theirs_ok == ours_ok:
            continue
          s[f"differ_{mode}" + ("_random" if drawn else "")] += 1
          if not drawn and len(examples[iid]) < args.examples:
            examples[iid].append(
              dict(
                key=row["key"],
                mode=mode,
                kwargs=kw,
                lm_eval=theirs_ok,
                rsft=ours_ok,
                detail=detail(iid, response, ifeval, lm_util),
                response=response[:300],
              )
            )
  seconds = time.perf_counter() - start

  total = sum((s for s in stats.values()), collections.Counter())
  checks, drawn = total["checks"], total["random_in_lm_eval"]
  determined = checks - drawn
  pct = lambda differ, n: 100.0 * (1 - differ / n) if n else 100.0
  figures = dict(
    lm_eval_version=lm_version,
    rows=len(rows),
    responses=len(rows) * args.per_row,
    checks=checks,
    checks_random_in_lm_eval=drawn,
    seconds=round(seconds, 1),
    agreement_strict=pct(total["differ_strict"], determined),
    agreement_loose=pct(total["differ_loose"], determined),
    agreement_strict_all=pct(total["differ_strict"] + total["differ_strict_random"], checks),
    agreement_loose_all=pct(total["differ_loose"] + total["differ_loose_random"], checks),
    by_instruction={iid: dict(s) for iid, s in sorted(stats.items())},
    examples=dict(examples),
  )

  print(
    f"lm_eval {lm_version} vs rsft: {checks} instruction-level checks ({len(rows)} IFEval rows x {args.per_row} "
    f"responses), strict and loose, in {seconds:.0f} s"
  )
  print(
    f"agreement: strict {figures['agreement_strict']:.3f}%, loose {figures['agreement_loose']:.3f}% "
    f"over the {determined} checks lm_eval decides deterministically"
  )
  print(
    f"           strict {figures['agreement_strict_all']:.3f}%, loose {figures['agreement_loose_all']:.3f}% over "
    f"all {checks}, counting the {drawn} where lm_eval grades a randomly drawn letter"
  )
  print(
    f"\n{'instruction (lm_eval followed: its verdicts)':46} {'checks':>6} {'followed s/l':>13} "
    f"{'differ s/l':>10} {'random: n, differ s/l':>22}"
  )
  for iid, s in sorted(stats.items()):
    print(
      f"{iid:46} {s['checks']:6} {s['followed_strict']:6}/{s['followed_loose']:<6} "
      f"{s['differ_strict']:4}/{s['differ_loose']:<5} {s['random_in_lm_eval']:11}, "
      f"{s['differ_strict_random']:3}/{s['differ_loose_random']:<3}"
    )
  if not examples:
    print("\nno disagreement on the checks lm_eval decides deterministically")
  for iid, shown in sorted(examples.items()):
    print(f"\n{iid}:")
    for e in shown:
      print(
        f"  key {e['key']} {e['mode']}: lm_eval {e['lm_eval']}, rsft {e['rsft']} {e['kwargs']} {e['detail']}\n"
        f"    {e['response'][:200]!r}"
      )
  if args.save_verdicts:
    with open(args.save_verdicts, "w") as f:
      f.write(json.dumps(dict(nltk=lm_util.nltk.__version__, lm_eval=lm_version, per_row=args.per_row)) + "\n")
      f.writelines(json.dumps(v) + "\n" for v in verdicts)
  if args.against_verdicts:
    figures["nltk_drift"] = nltk_drift(args.against_verdicts, verdicts, lm_util.nltk.__version__)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(figures, f, indent=1)
  print(f"\nwrote {args.out}")
  if tmp:
    tmp.cleanup()


if __name__ == "__main__":
  main()
