"""The README's main command, shrunk: configs/countdown_tiny.py through train.py and, beside it, eval.py in follow
mode, then analyze.py.

The same three entry points and config as the demo, with a smaller model, fewer rows and short decoding: the
base model is made first (step 0), SFT checkpoints follow, each is evaluated in-domain and on the base's own tasks
as it lands, the forgetting probe logs every few steps, and the report renders as clean HTML (no markdown source,
no undecodable text).
"""

import json
import os
import subprocess
import sys

import cpu_env

from rsft.analysis import markup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = [
  "--config.model.arch.num_layers=1",
  "--config.model.arch.hidden_size=32",
  "--config.model.arch.intermediate_size=64",
  "--config.model.arch.head_dim=16",
  "--config.pretrain.rows=96",
  "--config.pretrain.num_epochs=1",
  "--config.data.generate_rows=40",
  "--config.train.num_epochs=1",
  "--config.checkpoint.save_steps=(1,)",
  "--config.checkpoint.async_save=False",
  "--config.eval.limit=6",
  "--config.eval.max_new_tokens=24",
  "--config.sample.max_num_seqs=8",
  "--config.analysis.token_samples=4",
  "--config.train.probe_every=1",
  "--config.train.probe_items=4",
  "--config.train.probe_tokens=8",
  "--config.eval.follow_poll=0.5",
  "--config.eval.follow_timeout=300",
]


def start(script, workdir, *extra):
  cmd = [
    sys.executable,
    os.path.join(ROOT, script),
    f"--config={ROOT}/configs/countdown_tiny.py",
    f"--workdir={workdir}",
    *SMALL,
    *extra,
  ]
  return subprocess.Popen(
    cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cpu_env.env(0)
  )


def finish(proc):
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-4000:]


def test_the_demo_runs_end_to_end_and_its_report_renders(tmp_path):
  work = str(tmp_path / "demo")
  train, follow = start("train.py", work), start("eval.py", work, "--config.eval.follow=True")
  finish(train)
  finish(follow)
  finish(start("analyze.py", work))
  assert os.path.isdir(os.path.join(work, "base", "checkpoints"))
  state = json.load(open(os.path.join(work, "eval", "follow.json")))
  assert {int(x.split(":")[0]) for x in state["logged"]} == set(state["scored"]) and not state["missed"]
  probe = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
  assert [r["step"] for r in probe if "probe/sorting/drift" in r][:3] == [0, 1, 2]
  rows = [json.loads(line) for line in open(os.path.join(work, "eval", "results.jsonl"))]
  headline = {(r["step"], r["benchmark"]) for r in rows if r["metric"] == "avg@1"}
  steps = sorted({s for s, _ in headline})
  assert steps[0] == 0 and len(steps) == 3  # the base, step 1, the last step
  assert headline == {(s, b) for s in steps for b in ("countdown3", "arithmetic", "sorting")}
  page = open(os.path.join(work, "report", "index.html"), encoding="utf-8").read()
  assert markup.leftovers(page) == []
  assert "<h2>What happened</h2>" in page and "countdown3" in page and "sorting" in page
  assert "<h2>Forgetting probe vs sampled scores</h2>" in page and "probe.png" not in page  # inlined
  assert os.path.exists(os.path.join(work, "analysis", "tokens.json"))
