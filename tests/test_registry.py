"""Extension points, proven from a test file alone: a benchmark (with its own grader) registered here runs through
the real sweep (docs/contributing.md, "Add a benchmark")."""

import dataclasses
import json
import os

import pytest

from rsft import api
from rsft import config as rconfig
from rsft.evals import benchmarks, grading, run
from rsft.evals.items import Item
from rsft.models import ModelConfig
from rsft.train import checkpoint

WORDS = ("apple", "river", "stone", "cloud", "ember", "grain")


@pytest.fixture
def toy(monkeypatch):
  """A file-less benchmark graded by its own per-item grader, both registered for this test only."""
  calls = []

  def contains(bench, item, response):
    calls.append(item.id)
    return dict(score=float(item.gold in response), answer=None, status="ok")

  monkeypatch.setattr(grading, "GRADERS", dict(grading.GRADERS))
  monkeypatch.setattr(benchmarks, "REGISTRY", {k: dict(v) for k, v in benchmarks.REGISTRY.items()})
  grading.register_grader("toy_contains", grading.Grader(grading.per_item(contains)))
  benchmarks.register(
    benchmarks.Benchmark(
      name="toy_echo",
      domain="toy",
      file=None,
      fields=("word",),
      make_item=lambda row, i: Item(id=f"toy-{i}", prompt=f"Repeat the word {row['word']}.", gold=row["word"]),
      grader="toy_contains",
      decoding=benchmarks.Decoding(),
      generate_items=lambda n: [{"word": WORDS[i % len(WORDS)]} for i in range(n)],
    )
  )
  return calls


def test_registering_twice_is_refused(toy):
  with pytest.raises(ValueError, match="grader 'toy_contains' is already registered"):
    grading.register_grader("toy_contains", grading.GRADERS["toy_contains"])
  with pytest.raises(ValueError, match="benchmark 'toy_echo' is already registered"):
    benchmarks.register(benchmarks.get("toy_echo"))


def test_an_unknown_grader_is_named_with_the_registered_ones():
  bench = dataclasses.replace(benchmarks.get("math500"), grader="nope")
  with pytest.raises(ValueError, match=r"unknown grader 'nope' \(registered: math, choice"):
    grading.grade(bench, [], [])


def test_a_benchmark_registered_from_a_test_file_runs_through_the_sweep(toy, tmp_path):
  from rsft.data import tiny_tokenizer

  tok = str(tmp_path / "tokenizer")
  tiny_tokenizer.train([f"Repeat the word {w}. {w}" for w in WORDS * 20], 300, tok)
  cfg = ModelConfig(
    model_type="qwen3",
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    head_dim=16,
    rope_theta=1e4,
    qk_norm=True,
    tie_word_embeddings=True,
  )
  mngr = checkpoint.manager(str(tmp_path / "work" / "checkpoints"), async_save=False)
  meta = dict(model_config=dataclasses.asdict(cfg), hf_config=None, tokenizer=tok, config={})
  checkpoint.save(mngr, 5, api.init_model(cfg, seed=0).params, {}, None, meta)
  mngr.wait_until_finished()
  mngr.close()
  c = rconfig.base_config()
  c.model.update(tokenizer=tok, dtype="float32")
  c.eval.update(dict(benchmarks=("toy_echo",), limit=4, n=1, max_new_tokens=6, checkpoints="all"))
  c.sample.update(max_num_seqs=4, chunk_steps=4, prompt_buckets=(64,))
  run.run(c, str(tmp_path / "work"))
  rows = [json.loads(line) for line in open(os.path.join(tmp_path, "work", "eval", "results.jsonl"))]
  assert {(r["benchmark"], r["step"], r["metric"]) for r in rows} >= {("toy_echo", 5, "avg@1")}
  assert sorted(toy) == [f"toy-{i}" for i in range(4)]  # the registered grader graded every item once
