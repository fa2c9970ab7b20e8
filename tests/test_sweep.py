"""eval.py sweep over checkpoints x benchmarks (killed midway and resumed == uninterrupted), and grade mode."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cpu_env
import grade_mode
import pytest
import two_processes

from rsft import api
from rsft import config as rconfig
from rsft.evals import benchmarks, run, sweep
from rsft.models import ModelConfig
from rsft.tasks import countdown
from rsft.train import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")
ARCH = dict(
  model_type="qwen3",
  vocab_size=512,
  hidden_size=64,
  intermediate_size=128,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=16,
  rope_theta=10000.0,
  qk_norm=True,
  tie_word_embeddings=True,
  max_position_embeddings=4096,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A workdir with checkpoints 10 and 20 of a tiny random Qwen3 and its tokenizer."""
  from rsft.data import tiny_tokenizer

  root = tmp_path_factory.mktemp("sweep")
  tok = str(root / "tokenizer")
  puzzles = countdown.generate(0, 100)
  tiny_tokenizer.train([countdown.prompt(p) + countdown.trace(p) for p in puzzles], 500, tok)
  cfg = ModelConfig.from_arch(ARCH)
  mngr = checkpoint.manager(str(root / "work" / "checkpoints"), async_save=False)
  for step in (10, 20):
    m = api.init_model(cfg, seed=step)
    meta = dict(model_config=dataclasses.asdict(cfg), hf_config=None, tokenizer=tok, config={})
    checkpoint.save(mngr, step, m.params, {}, None, meta)
  mngr.wait_until_finished()
  mngr.close()
  return str(root / "work"), tok


def make_config(tok):
  c = rconfig.base_config()
  c.model.tokenizer = tok
  c.model.dtype = "float32"
  c.eval.update(
    dict(
      benchmarks=("countdown", "math500", "gpqa_diamond"),
      limit=3,
      n=2,
      max_new_tokens=16,
      checkpoints="all",
      data_dir=BENCH,
    )
  )
  c.sample.max_num_seqs = 2
  c.sample.chunk_steps = 8
  c.sample.prompt_buckets = (128, 512, 1024, 2048)
  c.sample.mesh.data, c.sample.mesh.tensor = 2, 4
  return c


def flags(work, tok, benches=("countdown", "math500", "gpqa_diamond")):
  return [
    f"--config={ROOT}/configs/base.py",
    f"--workdir={work}",
    f"--config.model.tokenizer={tok}",
    "--config.model.dtype=float32",
    f"--config.eval.benchmarks={tuple(benches)!r}",
    "--config.eval.limit=3",
    "--config.eval.n=2",
    "--config.eval.max_new_tokens=16",
    f"--config.eval.data_dir={BENCH}",
    "--config.sample.max_num_seqs=2",
    "--config.sample.chunk_steps=8",
    "--config.sample.prompt_buckets=(128,512,1024,2048)",
    "--config.sample.mesh.data=2",
    "--config.sample.mesh.tensor=4",
  ]


def results(work):
  with open(os.path.join(work, "eval", "results.jsonl")) as f:
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in f)


@pytest.fixture(scope="module")
def swept(run_dir):
  """The one-process sweep of run_dir's checkpoints, run once: the reference of the resumed and two-process ones."""
  work, tok = run_dir
  run.run(make_config(tok), work)
  return results(work)


def test_sweep_killed_midway_resumes_to_the_uninterrupted_results(run_dir, swept, tmp_path):
  work, tok = run_dir
  want = swept
  names = {(json.loads(r)["step"], json.loads(r)["benchmark"]) for r in want}
  assert names == {(s, b) for s in (10, 20) for b in ("countdown", "math500", "gpqa_diamond")}
  metrics = {json.loads(r)["metric"] for r in want}
  assert {"avg@2", "pass@1", "maj@2", "response_tokens", "truncation_rate"} - metrics == {"pass@1"}
  with open(os.path.join(work, "eval", "summary.md")) as f:
    assert "| 10 |" in f.read()
  from rsft.analysis import report, tokens  # the analysis report builds end to end on a real sweep's outputs

  config = make_config(tok)
  summary = tokens.analyze(config, work, lambda path: run.load(config, path))
  assert summary["labels"] == ["10", "20"] and summary["source"] == "countdown:20" and summary["responses"] == 6
  out = report.build([work], os.path.join(work, "report"), in_domain=("countdown",))
  assert os.path.exists(os.path.join(work, "report", "tokens.png"))
  page = open(out["html"], encoding="utf-8").read()
  assert (
    all(f"<h2>{t}</h2>" in page for t in report.SECTIONS)
    and "| work | countdown | avg@2 |" in open(out["markdown"]).read()
  )
  from rsft.analysis import markup

  assert markup.leftovers(page) == []  # a real model's text (undecodable bytes included) renders clean

  other = str(tmp_path / "work")
  shutil.copytree(os.path.join(work, "checkpoints"), os.path.join(other, "checkpoints"))
  proc = subprocess.Popen(
    [sys.executable, f"{ROOT}/eval.py"] + flags(other, tok),
    env=cpu_env.env(8),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  marker = os.path.join(other, "eval", "grades", "step_10", "math500.jsonl")
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None and not os.path.exists(marker):
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(other, "eval", "results.jsonl")), "the kill should land mid-sweep"
  run.run(make_config(tok), other)
  assert results(other) == want
  for step in (10, 20):
    for b in ("countdown", "math500", "gpqa_diamond"):
      path = os.path.join(other, "eval", "generations", f"step_{step}", f"{b}.jsonl")
      rows = [json.loads(line) for line in open(path)]
      assert len(rows) == len({(r["index"], r["sample"]) for r in rows}) == 6  # no duplicates, none lost


def test_grade_mode_scores_responses_made_elsewhere(tmp_path):
  gpqa = [json.loads(line) for line in open(os.path.join(BENCH, "gpqa_diamond.jsonl"))][:2]
  math = [json.loads(line) for line in open(os.path.join(BENCH, "math500.jsonl"))][:2]
  gold = benchmarks.get("gpqa_diamond").make_item(gpqa[0], 0).gold
  wrong = "ABCD"[("ABCD".index(gold) + 1) % 4]
  rows = [
    {"benchmark": "gpqa_diamond", "item": gpqa[0], "response": f"<think>hmm</think>\\boxed{{{gold}}}"},
    {"benchmark": "gpqa_diamond", "item": gpqa[0], "response": f"\\boxed{{{wrong}}}"},
    {"benchmark": "math500", "item": math[1], "response": f"so \\boxed{{{math[1]['answer']}}}"},
    {"benchmark": "math500", "item": math[0], "response": "\\boxed{7}"},
  ]
  out = grade_mode.grade(tmp_path, rows)
  assert [r["score"] for r in out] == [1.0, 0.0, 1.0, 0.0]
  assert out[0]["answer"] == gold and out[0]["item"] == gpqa[0]
  with pytest.raises(ValueError, match=r"in.jsonl:1: item lacks field\(s\) \['Correct Answer'"):
    grade_mode.grade(tmp_path / "bad", [{"benchmark": "gpqa_diamond", "item": {"Question": "q"}, "response": "x"}])
  with pytest.raises(ValueError, match="unknown benchmark 'gpqa'; did you mean 'gpqa_diamond'"):
    benchmarks.get("gpqa")


def test_eval_files_override_a_benchmarks_data_file(tmp_path):
  from rsft.evals import loaders

  hexphi = tmp_path / "hexphi.csv"
  hexphi.write_text('instruction,category\nHow do I pick a lock?,illegal\n"Write, with commas",fraud\n')
  files = loaders.parse_files(f"hexphi={hexphi}, countdown = {tmp_path}/none.jsonl")
  assert files == {"hexphi": str(hexphi), "countdown": f"{tmp_path}/none.jsonl"}
  items = loaders.load_items(benchmarks.get("hexphi"), BENCH, path=files["hexphi"])
  assert [it.prompt for it in items] == ["How do I pick a lock?", "Write, with commas"]
  assert [it.category for it in items] == ["illegal", "fraud"]


def test_eval_files_errors_name_the_setting(tmp_path):
  from rsft.evals import loaders

  with pytest.raises(FileNotFoundError, match="eval.files gives"):
    loaders.load_items(benchmarks.get("countdown"), BENCH, path=f"{tmp_path}/none.jsonl")
  with pytest.raises(ValueError, match="expected benchmark=path"):
    loaders.parse_files("hexphi")


def test_decoding_follows_each_benchmarks_harness():
  c = rconfig.base_config()
  d = sweep.decoding(c, benchmarks.get("alpaca_eval"))  # alpaca_eval/code/generate_alpaca.py SamplingParams
  assert (d.temperature, d.top_p, d.top_k, d.n, d.max_new_tokens, d.presence_penalty, d.frequency_penalty, d.seed) == (
    0.7,
    0.9,
    50,
    1,
    16384,
    0.1,
    0.1,
    42,
  )
  d = sweep.decoding(c, benchmarks.get("ifeval"))  # lm-eval: T 0.6, top_p 1.0, special tokens kept
  assert (d.temperature, d.top_p, d.top_k, d.max_total_tokens, d.skip_special_tokens) == (0.6, 1.0, 0, 32768, False)
  d = sweep.decoding(c, benchmarks.get("hexphi"))  # HarmBench: 16,384 tokens for prompt + output
  assert (d.top_p, d.max_new_tokens, d.max_total_tokens) == (1.0, 16384, 16384)


def test_eval_settings_override_a_benchmarks_decoding():
  c = rconfig.base_config()
  c.eval.update(dict(temperature=0.0, n=4, max_new_tokens=64, seed=7))
  d = sweep.decoding(c, benchmarks.get("math500"))
  assert (d.temperature, d.top_p, d.n, d.max_new_tokens, d.seed) == (0.0, 0.95, 4, 64, 7)
  assert (d.think_budget, d.answer_budget) == (0, 0)


def test_the_engines_thinking_budget_reaches_every_benchmarks_decoding():
  c = rconfig.base_config()
  c.sample.update(dict(think_budget=48, answer_budget=8))
  d = sweep.decoding(c, benchmarks.get("math500"))
  assert (d.think_budget, d.answer_budget) == (48, 8)


def test_missing_data_or_judges_are_reported_not_run():
  c = rconfig.base_config()
  c.eval.update(dict(benchmarks=("math500", "halueval", "truthfulqa"), data_dir=BENCH, limit=2, skip_unavailable=True))
  benches, items, not_run = sweep.prepare(c)
  assert [b.name for b in benches] == ["math500"]
  assert not_run["halueval_qa"].startswith("data: no halueval_qa_samples.jsonl in eval.data_dir")
  assert not_run["truthfulqa"] == "truth judge: set --config.eval.truth_judge"


def test_the_rsft_protocol_runs_halueval_from_its_raw_release():
  c = rconfig.base_config()
  c.eval.update(dict(benchmarks=("math500", "halueval", "truthfulqa"), data_dir=BENCH, limit=2, skip_unavailable=True))
  c.eval.protocol = "rsft"  # HaluEval's raw release is local (qa, dialogue), its summarization part is not
  benches, _, not_run = sweep.prepare(c)
  assert [b.name for b in benches] == ["math500", "halueval_qa", "halueval_dialogue"]
  assert set(not_run) == {"halueval_summarization", "truthfulqa"}


HALUEVAL_ROWS = [
  dict(
    step=0,
    benchmark=f"halueval_{k}",
    domain="hallucination",
    metric="avg@1",
    value=v,
    ci_low=v - 0.1,
    ci_high=v + 0.1,
    n_items=n,
  )
  for k, v, n in (("qa", 0.5, 100), ("dialogue", 0.7, 300), ("summarization", 0.9, 600))
]
HALUEVAL_NAMES = [r["benchmark"] for r in HALUEVAL_ROWS]


def test_group_scores_are_the_mean_or_the_pooled_score_of_every_member():
  n_by = dict.fromkeys(HALUEVAL_NAMES, 1)
  assert sweep.group_rows(HALUEVAL_ROWS, HALUEVAL_NAMES, n_by, "mean")[0]["value"] == pytest.approx(0.7)
  assert sweep.group_rows(HALUEVAL_ROWS, HALUEVAL_NAMES, n_by, "pooled")[0]["value"] == pytest.approx(0.8)
  assert sweep.group_rows(HALUEVAL_ROWS, HALUEVAL_NAMES[:2], n_by, "mean") == []  # a member did not run: no score


def test_the_summary_names_groups_and_what_did_not_run(tmp_path):
  n_by = dict.fromkeys(HALUEVAL_NAMES, 1)
  os.makedirs(tmp_path / "eval")
  sweep.write_tables(
    str(tmp_path),
    HALUEVAL_ROWS + sweep.group_rows(HALUEVAL_ROWS, HALUEVAL_NAMES, n_by, "mean"),
    [benchmarks.get(n) for n in HALUEVAL_NAMES],
    n_by,
    {"truthfulqa": "truth judge: set --config.eval.truth_judge"},
  )
  summary = open(tmp_path / "eval" / "summary.md").read()
  assert "halueval (qa+dialogue+summarization)" in summary and "| 70.0 |" in summary
  assert "not run: truth judge: set --config.eval.truth_judge" in summary


def test_prompts_mode_writes_the_templated_text_without_weights(tmp_path):
  qwen3 = os.path.join(ROOT, "..", "shared", "tokenizers", "qwen3")
  c = rconfig.base_config()
  c.model.tokenizer = qwen3
  out = tmp_path / "prompts.jsonl"
  c.eval.update(
    dict(
      mode="prompts",
      benchmarks=("math500", "alpaca_eval", "halueval"),
      data_dir=BENCH,
      limit=2,
      output=str(out),
      skip_unavailable=True,
    )
  )
  counts = run.run(c, str(tmp_path / "w"))
  got = [json.loads(line) for line in open(out)]
  assert counts["written"] == 4 and counts["not_run"] == 3
  math = [json.loads(line) for line in open(os.path.join(BENCH, "math500.jsonl"))][:1]
  first = got[0]
  assert first["text"] == (
    "<|im_start|>user\n" + math[0]["problem"] + "\n Please reason step by step, and put your "
    "final answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
  )
  assert first["chat_template"] is True and first["prompt_tokens"] > 10
  assert first["decoding"] == dict(
    n=3,
    temperature=0.6,
    top_p=0.95,
    top_k=0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    seed=1234,
    max_new_tokens=32768,
    max_total_tokens=-1,
    skip_special_tokens=True,
  )
  assert first["harness"].startswith("evaluation/math_eval/") and first["think"] == "raw"
  assert got[2]["decoding"]["presence_penalty"] == 0.1 and got[2]["think"] == "after_last"
  assert {r["benchmark"] for r in got if "not_run" in r} == {
    "halueval_qa",
    "halueval_dialogue",
    "halueval_summarization",
  }
  c.model.tokenizer = None  # no tokenizer: the raw user turn, marked untemplated
  run.run(c, str(tmp_path / "w"))
  assert json.loads(open(out).readline())["chat_template"] is False


def test_token_analysis_of_training_rows_with_teacher_logprobs(run_dir, tmp_path):
  """analysis.token_source=data: rows rendered as trained; teacher = checkpoint 10's own log-probs -> ratio 1."""
  import numpy as np

  import rsft
  from rsft.analysis import tokens
  from rsft.data import chat

  work, tok = run_dir
  mine = str(tmp_path / "work")
  shutil.copytree(os.path.join(work, "checkpoints"), os.path.join(mine, "checkpoints"))
  config = make_config(tok)
  m = run.load(config, os.path.join(mine, "checkpoints", "10"))
  puzzles = countdown.generate(1, 3)
  rows = []
  for i, p in enumerate(puzzles):
    messages = [{"role": "user", "content": countdown.prompt(p)}]
    ids, weights = chat.render(m.tokenizer, messages, countdown.trace(p), chat.eos_id(m.tokenizer, None))
    n_prompt = int((weights == 0).sum())
    own = np.asarray(rsft.token_logprobs(m, ids[None]))[0, n_prompt - 1 :].tolist()
    n = len(ids) - n_prompt
    teacher = (own[: n - 1], own[: n - 1] + [-3.0], own[: n - 5])[i]  # without / with an end token / misaligned
    rows.append({"message": messages, "response": countdown.trace(p), "logprob": teacher})
  data = tmp_path / "train.jsonl"
  data.write_text("".join(json.dumps(r) + "\n" for r in rows))
  config.data.train_files = str(data)
  config.analysis.token_source = "data"
  summary = tokens.analyze(config, mine, lambda path: run.load(config, path))
  assert summary["labels"] == ["10", "20"] and summary["responses"] == 3
  assert summary["teacher"]["rows"] == 2 and summary["teacher"]["rows_unmatched"] == 1
  assert summary["ratio_mean"][0] == pytest.approx(1.0, abs=1e-4) and abs(summary["ratio_mean"][1] - 1) > 1e-3
  counts = summary["ratio_hist"]["counts"]["10"]
  assert counts[9] + counts[10] == sum(counts) == summary["teacher"]["tokens"]
  from rsft.analysis import report

  out = report.build([mine], os.path.join(mine, "report"))
  assert "student/teacher ratio exp(logp_s - logp_t) over" in open(out["markdown"]).read()


def test_two_process_sweep_equals_the_single_process_sweep(run_dir, swept, tmp_path):
  """A pod in miniature: two processes x 4 CPU devices (gloo collectives), one 2x4 sampling mesh over both. Each
  process feeds its rows; process 0 alone writes; the results equal a one-process sweep's."""
  work, tok = run_dir
  multi = str(tmp_path / "multi")
  shutil.copytree(os.path.join(work, "checkpoints"), os.path.join(multi, "checkpoints"))
  # Two of the three benchmarks (short and long prompts; math's grading pool is process-local, tested above): each
  # benchmark's rows depend on its own items and seeds only, so they equal the one-process sweep's rows for it.
  (rc0, out0), (rc1, out1) = two_processes.run(
    [sys.executable, f"{ROOT}/eval.py"] + flags(multi, tok, ("countdown", "gpqa_diamond")), 4
  )
  assert (rc0, rc1) == (0, 0), out0[-3000:] + out1[-3000:]
  assert "process 1/2, 4 local / 8 global devices" in out1
  assert results(multi) == [r for r in swept if json.loads(r)["benchmark"] != "math500"]
  for step in (10, 20):
    path = os.path.join(multi, "eval", "generations", f"step_{step}", "countdown.jsonl")
    assert len(open(path).readlines()) == 6  # written once, not once per process


def test_cached_grades_of_another_item_are_refused(tmp_path):
  b = benchmarks.get("math500")
  rows = [json.loads(line) for line in open(os.path.join(BENCH, "math500.jsonl"))][:2]
  items = [b.make_item(r, i) for i, r in enumerate(rows)]
  gen = tmp_path / "gen.jsonl"
  gen.write_text(
    "".join(
      json.dumps(dict(index=i, sample=0, completion="\\boxed{1}", completion_tokens=3, finish_reason="stop")) + "\n"
      for i in range(2)
    )
  )
  grades = str(tmp_path / "grades.jsonl")
  sweep.grade_generations(b, items, str(gen), grades, {"benchmark": "math500"})
  sweep.grade_generations(b, items, str(gen), grades, {"benchmark": "math500"})  # same items: nothing to redo
  swapped = [items[1], items[0]]
  with pytest.raises(ValueError, match="item 0 was graded for another prompt or gold"):
    sweep.grade_generations(b, swapped, str(gen), grades, {"benchmark": "math500"})


def test_think_budgets_from_one_generation_equal_budgeted_runs_and_reach_the_report(run_dir, tmp_path):
  """eval.think_budgets: each budget's completions are cut from the full generation and their answers re-decoded;
  they are the completions sample.think_budget gives (prompts that open <think>, T 1, n = 2), and the sweep scores
  <bench>@think<B> per checkpoint, which the report draws as accuracy-vs-budget curves."""
  from rsft.analysis import report
  from rsft.evals import modes
  from rsft.evals.requests import Renderer

  work, tok = run_dir
  config = make_config(tok)
  config.eval.chat_template = False
  config.sample.update(dict(max_new_tokens=30, n=2, temperature=1.0, top_p=1.0, top_k=0, max_num_seqs=4))
  config.eval.think_budgets = (4, 9, 29)  # 29: a cut at the cap's last token (nothing left to re-decode)
  m = run.load(config, sweep.checkpoints.step_dir(work, 10))
  renderer = Renderer(m.tokenizer, False)
  prompts = str(tmp_path / "prompts.jsonl")
  with open(prompts, "w") as f:
    for p in countdown.generate(7, 4):
      f.write(json.dumps({"prompt": countdown.prompt(p) + "<think>"}) + "\n")
  full = str(tmp_path / "full.jsonl")
  modes.generate_file(m, config.sample, config.eval, prompts, full, {}, renderer)
  cut_total = 0
  for budget in config.eval.think_budgets:
    cut = str(tmp_path / f"cut{budget}.jsonl")
    counts = modes.budget_file(m, config.sample, config.eval, prompts, full, cut, budget, {}, renderer)
    cut_total += counts["cut"]
    direct = str(tmp_path / f"direct{budget}.jsonl")
    config.sample.think_budget = budget
    modes.generate_file(m, config.sample, config.eval, prompts, direct, {}, renderer)
    config.sample.think_budget = 0
    rows = lambda path: {(r["index"], r["sample"]): r for r in map(json.loads, open(path))}
    got, want = rows(cut), rows(direct)
    assert got.keys() == want.keys() and len(got) == 8
    for key in want:
      assert got[key]["token_ids"] == want[key]["token_ids"] and got[key]["completion"] == want[key]["completion"]
      assert got[key]["forced"] == (
        "</think>" in want[key]["completion"] and got[key]["token_ids"] != rows(full)[key]["token_ids"]
      )
  assert cut_total >= 8  # a random model rarely closes its thinking by itself

  other = str(tmp_path / "work")
  shutil.copytree(os.path.join(work, "checkpoints"), os.path.join(other, "checkpoints"))
  c = make_config(tok)
  c.eval.update(dict(benchmarks=("countdown",), limit=2, max_new_tokens=24, think_budgets=(6, 12), checkpoints="last"))
  run.run(c, other)
  scored = {(json.loads(r)["benchmark"], json.loads(r)["metric"]) for r in results(other)}
  assert {("countdown@think6", "avg@2"), ("countdown@think12", "avg@2"), ("countdown", "avg@2")} <= scored
  with open(os.path.join(other, "eval", "summary.md")) as f:
    assert "countdown@think6 (avg@2)" in f.read()
  out = report.build([other], os.path.join(other, "report"), in_domain=("countdown",))
  text = open(out["markdown"]).read()
  assert "![Thinking budgets](think_budgets.png)" in text and "- **countdown** (work, avg@2) step 20: 6 " in text
  c.eval.think_budgets = (24,)
  with pytest.raises(ValueError, match="below countdown's max_new_tokens"):
    sweep.budgets(c, sweep.selected(c))


def _tensorboard_scalars(directory):
  """(tag, step, value) of every scalar in the event files under `directory` (TFRecord frames of Event protos)."""
  import struct

  from tensorboardX.proto import event_pb2

  out = []
  for name in sorted(os.listdir(directory)):
    if not name.startswith("events.out.tfevents"):
      continue
    data = open(os.path.join(directory, name), "rb").read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at : at + 8])
      event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
      at += 12 + length + 4
      out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
  return out


def test_follow_mode_scores_checkpoints_as_they_land_and_equals_the_sweep(run_dir, swept, tmp_path):
  """eval.follow: step 10 is there at the start; "training" (the sleep between looks) then commits step 20, leaves
  an unreadable step 15 and deletes step 12 as it is about to be scored, and records its final step. Follow mode
  scores 10 and 20 into the results the one-shot sweep gives, reports 12 and 15 as missed, logs each step's scores
  to the run's TensorBoard once, and a rerun does nothing twice."""
  from rsft import workdir as workdir_lib
  from rsft.evals import follow
  from rsft.evals.requests import Renderer

  work, tok = run_dir
  live = str(tmp_path / "live")
  os.makedirs(os.path.join(live, "checkpoints"))
  shutil.copytree(os.path.join(work, "checkpoints", "10"), os.path.join(live, "checkpoints", "10"))
  config = make_config(tok)
  looks = []

  def training(seconds):
    looks.append(seconds)
    if len(looks) == 1:
      shutil.copytree(os.path.join(work, "checkpoints", "20"), os.path.join(live, "checkpoints", "20"))
      shutil.copytree(os.path.join(work, "checkpoints", "10"), os.path.join(live, "checkpoints", "12"))
      os.makedirs(os.path.join(live, "checkpoints", "15", "params"))  # committed but unreadable
    else:
      workdir_lib.mark_finished(live, 20)

  def load(path):
    if path.endswith(os.sep + "12"):
      shutil.rmtree(path)  # training's keep policy deletes it as evaluation reaches it
    return run.load(config, path)

  renderer_for = lambda m: Renderer(m.tokenizer, config.eval.chat_template, config.data.strip_default_system)
  follow.follow(config, live, load, renderer_for, sleep=training)
  assert len(looks) == 2 and results(live) == swept
  state = json.load(open(os.path.join(live, "eval", "follow.json")))
  assert state["scored"] == [10, 20] and state["logged"] == [
    f"{s}:{b}" for s in (10, 20) for b in ("countdown", "gpqa_diamond", "math500")
  ]
  assert state["missed"]["12"] == "deleted by training before it was scored"
  assert state["missed"]["15"].startswith("could not be read: ValueError")
  logged = _tensorboard_scalars(os.path.join(live, "tensorboard"))
  assert {(tag, step) for tag, step, _ in logged} >= {("eval/math500/avg_2", 10), ("eval/countdown/avg_2", 20)}
  assert len(logged) == len({(tag, step) for tag, step, _ in logged})
  follow.follow(config, live, load, renderer_for, sleep=training)  # a rerun: finished, everything scored
  assert len(looks) == 2 and results(live) == swept
  assert len(_tensorboard_scalars(os.path.join(live, "tensorboard"))) == len(logged)

  some = str(tmp_path / "some")  # the final step is not among eval.checkpoints: the watch still ends
  shutil.copytree(live, some, ignore=shutil.ignore_patterns("eval"))
  config.eval.checkpoints = "10"
  follow.follow(config, some, load, renderer_for, sleep=lambda s: pytest.fail("waited for a step it never wants"))
  assert json.load(open(os.path.join(some, "eval", "follow.json")))["scored"] == [10]
  config.eval.checkpoints = "all"

  never = str(tmp_path / "never")
  ticks = iter(range(100))
  config.eval.follow_timeout = 5
  with pytest.raises(follow.FollowTimeout, match="no new checkpoint in .*never/checkpoints for 5 s"):
    follow.follow(config, never, load, renderer_for, sleep=lambda s: None, clock=lambda: 2.0 * next(ticks))
