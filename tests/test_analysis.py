"""Analysis: dip-and-recovery classification, marker counting, and the report over a synthetic run."""

import json
import os

import pytest

from rsft.analysis import dynamics, markup, patterns, report
from rsft.analysis.dynamics import Point


def curve(values, half=0.02, steps=(0, 10, 20, 40, 80, 160)):
  return [Point(s, v, v - half, v + half) for s, v in zip(steps, values)]


def test_dip_and_recovery_classification():
  dip = dynamics.dip_and_recovery(curve([0.60, 0.50, 0.42, 0.55, 0.63, 0.70]), threshold=0.02)
  assert dip.dip and dip.min_step == 20 and dip.depth == pytest.approx(0.18) and dip.recovery_step == 80
  assert dip.final_gain == pytest.approx(0.10) and dip.gain_significant and not dip.under_optimised

  rising = dynamics.dip_and_recovery(curve([0.60, 0.61, 0.64, 0.66, 0.70, 0.71]), threshold=0.02)
  assert not rising.dip and rising.recovery_step is None and rising.gain_significant

  stuck = dynamics.dip_and_recovery(curve([0.60, 0.45, 0.40, 0.42, 0.44, 0.47]), threshold=0.02)
  assert stuck.dip and stuck.recovery_step is None and stuck.under_optimised

  noisy = dynamics.dip_and_recovery(curve([0.60, 0.56, 0.55, 0.58, 0.61, 0.62], half=0.08), threshold=0.02)
  assert not noisy.dip and not noisy.gain_significant  # inside the bootstrap noise: neither a dip nor a gain

  no_base = dynamics.dip_and_recovery(curve([0.3, 0.2, 0.5], steps=(10, 20, 40)))
  assert not no_base.has_base and no_base.base == 0.3


def test_marker_counting():
  text = (
    "First, compute 3+4. Hmm, wait: that's wrong. Let me check again. Alternatively, maybe 7? "
    "Step 2: verify. WAIT, actually it is 7. Awaiting nothing."
  )
  got = patterns.count(text)
  # wait, that's wrong, Alternatively, WAIT, actually (and not "Awaiting")
  assert got == {"backtracking": 5, "verification": 2, "decomposition": 2, "hesitation": 2}
  custom = patterns.parse_lexicon("doubt=hmm+|not sure;pivot=but")
  assert patterns.count("Hmmm, but not sure. But ok", custom) == {"doubt": 2, "pivot": 2}
  rates = patterns.rates(["wait wait", "no markers here at all"], custom | {"bt": ("wait",)})
  assert rates["bt"]["per_response"] == 1.0 and rates["bt"]["per_1k_tokens"] == pytest.approx(1000 * 2 / 7)


@pytest.fixture
def synthetic_run(tmp_path):
  work = tmp_path / "run14b"
  (work / "eval").mkdir(parents=True)
  with open(work / "metrics.jsonl", "w") as f:
    for step in range(1, 161, 10):
      f.write(json.dumps({"step": step, "loss": 2.0 / step**0.3, "lr": 1e-5, "grad_norm": 1.0, "entropy": 0.8}) + "\n")
  values = {"math500": [0.6, 0.62, 0.66, 0.7], "ifeval": [0.64, 0.5, 0.58, 0.66], "hexphi": [0.1, 0.2, 0.3, 0.35]}
  domains = {"math500": "math", "ifeval": "instruction", "hexphi": "safety"}
  with open(work / "eval" / "results.jsonl", "w") as f:
    for bench, vs in values.items():
      for step, v in zip((0, 40, 80, 160), vs):
        f.write(
          json.dumps(
            dict(
              step=step,
              benchmark=bench,
              domain=domains[bench],
              metric="avg@1",
              value=v,
              ci_low=v - 0.02,
              ci_high=v + 0.02,
              n_items=100,
            )
          )
          + "\n"
        )
  for step, length in ((0, 900), (40, 3000), (160, 1500)):
    gen = work / "eval" / "generations" / f"step_{step}"
    gen.mkdir(parents=True)
    rows = [
      dict(
        index=i,
        sample=0,
        completion="Let me check. Wait, " * (step // 40 + 1) + "so 4.",
        completion_tokens=length + i,
        finish_reason="length" if i == 0 else "stop",
      )
      for i in range(4)
    ]
    (gen / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(work)


def test_report_has_every_section_and_flags_the_dip(synthetic_run, tmp_path):
  out = report.build([synthetic_run], str(tmp_path / "report"), in_domain=("math",), threshold=0.02)
  page = open(out["html"]).read()
  md = open(out["markdown"]).read()
  for title in (report.SUMMARY,) + report.SECTIONS:
    assert f"<h2>{title}</h2>" in page and f"## {title}" in md
  assert markup.leftovers(page) == []  # rendered HTML: no markdown source, no undecodable text
  assert (
    "<li><strong>ifeval</strong> (run14b, avg@1): base 0.640 → best 0.660 (step 160) → last 0.660 (step 160); "
    "<em>dip</em> of 0.140 at step 40, recovered at step 160"
  ) in page  # the summary at the top
  for image in [line[line.index("(") + 1 : -1] for line in md.splitlines() if line.startswith("![")]:
    assert os.path.getsize(tmp_path / "report" / image) > 1000
  assert page.count("data:image/png;base64,") >= 6  # self-contained: dynamics, 3 score groups, length, markers
  ifeval = next(line for line in md.splitlines() if line.startswith("| run14b | ifeval"))
  assert "| 0.500 (40) |" in ifeval and "| yes | 160 |" in ifeval  # dipped at 40, recovered at 160
  assert "- run14b: reasoning +0.100, ASR +0.250" in md
  assert "| run14b / math500 | 160 | 5.00 / 227.3 | 5.00 / 227.3 | 0.00 / 0.0 |" in md  # per response / per 1k


def test_the_probe_is_set_beside_the_ood_scores_with_its_lead(synthetic_run, tmp_path):
  """A probe that falls from step 10 on, before ifeval's sampled dip (first seen at checkpoint 40): lead 30 steps
  (onset: a fall of more than 0.1 nats per token); the correlation over the four checkpoints is positive."""
  probe = {0: -0.5, 10: -0.9, 20: -1.4, 30: -1.6, 40: -1.7, 80: -1.2, 120: -0.9, 160: -0.6}
  with open(os.path.join(synthetic_run, "metrics.jsonl"), "a") as f:
    for step, lp in probe.items():
      f.write(json.dumps({"step": step, "probe/ifeval/logprob": lp, "probe/ifeval/drift": -0.5 - lp}) + "\n")
  out = report.build([synthetic_run], str(tmp_path / "report"), in_domain=("math",), threshold=0.02)
  md = open(out["markdown"]).read()
  line = next(x for x in md.splitlines() if x.startswith("- **ifeval** (run14b, avg@1 vs probe/ifeval/logprob)"))
  assert "probe onset (fell > 0.1 nats/token) at step 10; the score's dip began at step 40; lead **+30 steps**" in line
  assert "; r = 0." in line
  assert "![Forgetting probe vs sampled scores](probe.png)" in md
  lead = report.probe_lead(
    list(probe.items()), [dynamics.Point(0, 0.6, 0.58, 0.62), dynamics.Point(40, 0.6, 0.58, 0.62)], 0.02
  )
  assert lead["dip_onset"] is None and lead["lead"] is None and lead["r"] is None


def test_token_level_table_equals_token_logprobs(tmp_path):
  import numpy as np

  import rsft
  from rsft.analysis import tokens
  from rsft.tools import tiny_models

  pytest.importorskip("torch")
  for seed, name in ((0, "base"), (1, "ckpt")):
    tiny_models.build("qwen3", tmp_path / name, seed=seed)
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, 500, n).tolist() for n in (5, 9)]
  completions = [rng.integers(1, 500, n).tolist() for n in (7, 4)]
  models = [(name, (lambda name=name: rsft.load_model(tmp_path / name))) for name in ("base", "ckpt")]
  table = tokens.score_checkpoints(models, prompts, completions, batch_tokens=64)
  for name in ("base", "ckpt"):
    m = rsft.load_model(tmp_path / name)
    for p, c, got in zip(prompts, completions, table[name]):
      want = np.asarray(rsft.token_logprobs(m, np.asarray([p + c])))[0, len(p) - 1 :]
      np.testing.assert_allclose(got, want, atol=2e-5)
  strings = [["Wait", " so", " x", " wait", ",", " so", " x"], [" so", " x", " so", "Wait"]]
  teacher = [[-1.0] * 7, [-2.0] * 4]
  s = tokens.summarize(["base", "ckpt"], table, strings, teacher=teacher, min_count=2)
  wait = (
    [table[n][0][0] for n in ("base", "ckpt")],
    [table[n][0][3] for n in ("base", "ckpt")],
    [table[n][1][3] for n in ("base", "ckpt")],
  )
  assert s["markers"]["wait"]["count"] == 3
  np.testing.assert_allclose(s["markers"]["wait"]["logprob"], np.mean(wait, axis=0), atol=1e-9)
  moved = {r["token"]: r["delta"] for r in s["most_up"]}
  so = [(table["ckpt"][i][j] - table["base"][i][j]) for i, j in ((0, 1), (0, 5), (1, 0), (1, 2))]
  assert moved[" so"] == pytest.approx(np.mean(so))
  assert sum(s["ratio_hist"]["counts"]["base"]) == 11
  ratio = np.exp(np.asarray(table["ckpt"][1]) + 2.0).mean()
  s = tokens.summarize(["base", "ckpt"], table, strings, teacher=[None, [-2.0] * 4])
  assert s["teacher"]["rows_unmatched"] == 1 and s["ratio_mean"][1] == pytest.approx(ratio)
  assert tokens.align_teacher([-1.0, -2.0], 3)[:2] == [-1.0, -2.0] and np.isnan(tokens.align_teacher([0, 0], 3)[2])
  assert np.isnan(tokens.align_teacher([-1.0, -2.0, -9.0], 3)[2]) and tokens.align_teacher([0.0] * 5, 3) is None


def test_size_comparison_orders_runs_by_parameters(synthetic_run, tmp_path):
  import shutil

  arch = dict(
    model_type="qwen3",
    vocab_size=151936,
    hidden_size=2048,
    intermediate_size=6144,
    num_layers=28,
    num_heads=16,
    num_kv_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
    rope_theta=1e6,
  )
  small = str(tmp_path / "small")
  shutil.copytree(synthetic_run, small)
  with open(os.path.join(synthetic_run, "config.json"), "w") as f:
    json.dump(
      {"model": {"arch": dict(arch, hidden_size=5120, intermediate_size=17408, num_layers=40, num_heads=40)}}, f
    )
  with open(os.path.join(small, "config.json"), "w") as f:
    json.dump({"model": {"arch": arch}}, f)
  results = os.path.join(small, "eval", "results.jsonl")
  rows = [json.loads(line) for line in open(results)]
  for r in rows:  # the small model gains less on math and never recovers IFEval
    if r["benchmark"] == "math500" and r["step"] == 160:
      r.update(value=0.62, ci_low=0.60, ci_high=0.64)
    if r["benchmark"] == "ifeval" and r["step"] == 160:
      r.update(value=0.52, ci_low=0.50, ci_high=0.54)
  with open(results, "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  last = os.path.join(small, "eval", "generations", "step_160", "math500.jsonl")
  gens = [dict(json.loads(line), completion="So the answer is 4, done here.") for line in open(last)]
  with open(last, "w") as f:  # long answers without markers: verbosity without the procedure
    f.write("".join(json.dumps(g) + "\n" for g in gens))
  out = report.build([synthetic_run, small], str(tmp_path / "report"), in_domain=("math",))
  md = open(out["markdown"]).read()
  section = md[md.index("## Model size comparison") : md.index("## Safety vs reasoning")]
  body = [line for line in section.splitlines() if line.startswith("| small") or line.startswith("| run14b")]
  assert [line.split(" | ")[0] for line in body] == ["| small", "| run14b"]  # ascending size
  assert "+0.020 |" in body[0] and "+0.100 |" in body[1]  # in-domain gain grows with size
  # The deepest dip is HEx-PHI's ASR rising 0.10 -> 0.35 (lower is better), deeper than IFEval's 0.14.
  assert "hexphi 0.250" in body[0] and "| -0.250 |" in body[0] and os.path.exists(tmp_path / "report" / "sizes.png")
  assert "backtracking 0.0, verification 0.0" in body[0]
  assert f"backtracking {1000 * 5 / 22:.1f}, verification {1000 * 5 / 22:.1f}" in body[1]  # 5 of each in 22 words


def test_direction_and_scale_of_a_metric():
  asr = dynamics.dip_and_recovery(curve([0.10, 0.20, 0.30, 0.35], steps=(0, 40, 80, 160)), 0.02, higher_is_better=False)
  assert asr.dip and asr.min_value == 0.35 and asr.depth == pytest.approx(0.25)  # the worst ASR is the highest
  assert asr.final_gain == pytest.approx(-0.25) and asr.final_change == pytest.approx(0.25) and asr.under_optimised
  reward = curve([0.50, 0.49, 0.60], half=0.003, steps=(0, 40, 80))  # AlpacaEval's unbounded reward
  assert not dynamics.dip_and_recovery(reward, 0.02).dip  # 0.01 < an absolute 0.02
  unbounded = dynamics.dip_and_recovery(reward, 0.02, bounded=False)  # ... but > its own noise (0.004)
  assert unbounded.dip and unbounded.recovery_step == 80


def _run(root, name, data, model, series, lengths=None):
  work = root / name
  (work / "eval").mkdir(parents=True)
  (work / "config.json").write_text(json.dumps({"model": {"path": model}, "data": {"train_files": data}}))
  domains = {"math500": "math", "hexphi": "safety", "alpaca_eval": "chat"}
  with open(work / "eval" / "results.jsonl", "w") as f:
    for bench, values in series.items():
      how = dict(higher_is_better=bench != "hexphi", scale="unbounded" if bench == "alpaca_eval" else "proportion")
      for step, v in values:
        f.write(
          json.dumps(
            dict(
              step=step,
              benchmark=bench,
              domain=domains[bench],
              metric="avg@1",
              value=v,
              ci_low=v - 0.01,
              ci_high=v + 0.01,
              n_items=100,
              **how,
            )
          )
          + "\n"
        )
      for step, n in (lengths or {}).items():
        if bench == "math500":
          f.write(
            json.dumps(
              dict(
                step=step,
                benchmark=bench,
                domain="math",
                metric="response_tokens",
                value=n,
                ci_low=n,
                ci_high=n,
                n_items=100,
              )
            )
            + "\n"
          )
  return str(work)


def test_study_tables_last_checkpoint_overfitting_and_cot_vs_nocot(tmp_path):
  steps = (0, 80, 160, 320, 640, 1280)
  cot = _run(
    tmp_path,
    "cot",
    "d/Math-CoT-20k.parquet",
    "/m/Qwen3-8B-Base",
    {
      "math500": list(zip(steps, (0.60, 0.70, 0.85, 0.90, 0.84, 0.80))),
      "hexphi": [(0, 0.10), (1280, 0.40)],
      "alpaca_eval": [(0, -0.13), (1280, 0.92)],
    },
    lengths=dict(zip(steps, (900, 6000, 4000, 3000, 3300, 3900))),
  )
  nocot = _run(
    tmp_path,
    "nocot",
    "d/Math-NoCoT-20k.parquet",
    "/m/Qwen3-8B-Base",
    {"math500": [(0, 0.60), (1280, 0.70)], "hexphi": [(0, 0.10), (1280, 0.15)]},
  )
  out = report.build([cot, nocot], str(tmp_path / "report"), in_domain=("math",), threshold=0.02)
  md = open(out["markdown"]).read()
  assert "## Last checkpoint across runs (the study's Tables 1-2)" in md
  assert "| cot (base) | 0 | 60.0 | 10.0 | -0.13 |" in md and "| cot | 1280 | 80.0 | 40.0 | 0.92 |" in md
  assert "hexphi (lower is better)" in md
  over = next(line for line in md.splitlines() if line.startswith("| cot | 90.0 (320)"))
  assert "| 80.0 (1280) | -10.0 |" in over.replace("+10.0", "-10.0") and over.endswith("| **yes** |")
  assert next(line for line in md.splitlines() if line.startswith("| Qwen3-8B-Base | hexphi |")) == (
    "| Qwen3-8B-Base | hexphi | 10.0 | 40.0 (+30.0) | 15.0 (+5.0) |"
  )
  safety = next(line for line in md.splitlines() if line.startswith("| cot | hexphi |"))
  assert "| 0.350 (1280) |" not in safety and "| 0.400 (1280) | +0.300 | yes |" in safety  # ASR rising is the dip


def test_token_level_markers_are_the_pattern_lexicon():
  """One lexicon: a token is a marker when its word alone matches a pattern of analysis.patterns (or the
  configured override), so pattern counts and token-level markers cannot disagree."""
  from rsft.analysis import patterns, tokens

  strings = [[" Hmm", " but", " maybe", " so", "Wait"]]
  table = {"a": [[-1.0, -2.0, -3.0, -4.0, -5.0]], "a/entropy": [[0.0] * 5]}
  found = tokens.summarize(["a"], table, strings)["markers"]
  assert sorted(found) == ["hmm", "maybe", "wait"]
  assert all(patterns.count(w)[patterns.word_category(w)] == 1 for w in found)
  custom = tokens.summarize(["a"], table, strings, lexicon=patterns.parse_lexicon("contrast=but"))["markers"]
  assert list(custom) == ["but"] and custom["but"]["logprob"] == [-2.0]


def test_markup_renders_the_reports_markdown_and_the_checker_catches_what_it_misses():
  lines = [
    "## Scores",
    "Lexicon (`analysis.markers`): **bold**, *emphasis*, [docs](https://x.org/a?b=1&c=2)",
    "- example: `wait **not bold** <script>x</script> | # no heading`",
    "- two < three",
    "",
    "| run | score |",
    "|---|---|",
    "| a **b** | `c|d` |",
    "plain \ufffd text",
  ]
  page = markup.to_html(lines)
  assert "<h2>Scores</h2>" in page and "<strong>bold</strong>" in page and "<em>emphasis</em>" in page
  assert '<a href="https://x.org/a?b=1&amp;c=2">docs</a>' in page
  assert "<code>wait **not bold** &lt;script&gt;x&lt;/script&gt; | # no heading</code>" in page  # shown as written
  assert "<ul><li>" in page and "<li>two &lt; three</li>" in page and "<th>run</th>" in page and "<script>" not in page
  assert "[?]" in page and markup.leftovers(page) == []
  # What the old renderer left in the page (the report issue 16 saw) is caught.
  assert markup.leftovers("<p><strong>x</strong> **in-domain** and ``'a'``</p>")
  assert markup.leftovers("<p>- a bullet</p><p>| a | b |</p>") and markup.leftovers("<code>\ufffd</code>")
  assert markup.model_text("a\n\n`b`\ufffd " + "x" * 300, 20) == "a 'b'[?] xxxxxxxxxxx…"


def test_screenshot_tool_crops_the_page_and_refuses_an_unrendered_report(tmp_path, monkeypatch):
  """The Chromium step through a stand-in `chromium` on PATH (none is installed here) that draws a page-high block
  into a tall window: the tool crops the blank rows and checks the report before photographing it."""
  import stat
  import sys

  from PIL import Image

  from rsft.tools import screenshot

  fake = tmp_path / "bin" / "chromium"
  fake.parent.mkdir()
  fake.write_text(
    f"#!{sys.executable}\n"
    "import sys\nfrom PIL import Image, ImageDraw\n"
    "out = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--screenshot='))\n"
    "w, h = (int(x) for x in next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--window-size=')).split(','))\n"
    "img = Image.new('RGB', (w, h), 'white')\nImageDraw.Draw(img).rectangle((10, 10, 200, 700), fill='black')\n"
    "img.save(out)\n"
  )
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", str(fake.parent))
  page = tmp_path / "index.html"
  page.write_text("<html><body><h1>rsft report</h1><p><strong>fine</strong></p></body></html>", encoding="utf-8")
  out = screenshot.screenshot(str(page), str(tmp_path / "shot.png"), width=400, height=3000)
  assert Image.open(out).size == (400, 701 + 24)  # the block's last row + the margin, not the 3000-row window
  page.write_text("<p>**in-domain** scores</p>", encoding="utf-8")
  with pytest.raises(ValueError, match="does not render clean"):
    screenshot.screenshot(str(page), str(tmp_path / "shot.png"))
  monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
  with pytest.raises(FileNotFoundError, match="apt-get install chromium"):
    screenshot.browser()
