"""Extension points, proven from a test file alone (docs/contributing.md): a benchmark with its own grader registered
here runs through the real sweep ("Add a benchmark"); a model family registered here loads, matches transformers
and exports bit-exact ("Add a model family")."""

import dataclasses
import json
import os

import numpy as np
import pytest
import safetensors.numpy

import rsft
from rsft import api
from rsft import config as rconfig
from rsft.evals import benchmarks, grading, run
from rsft.evals.items import Item
from rsft.models import ModelConfig, families
from rsft.models.families.base import LLAMA_LAYOUT, O_BIAS, QKV_BIAS
from rsft.tools import tiny_models
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


def _toy_name(hf_key: str) -> str:
  """The toy family's tensor names: Llama's, renamed, so only the family's own table can map them."""
  return hf_key.replace("model.layers.", "blocks.").replace("self_attn.", "attn.").replace("model.", "")


@pytest.fixture
def toy_family():
  """`toy_llama`: Llama's layout under other tensor names, its bias flag in a `use_bias` key of its own."""
  family = families.register(
    families.Family(
      model_type="toy_llama",
      hf_name="ToyLlama",
      about="a test's toy",
      weights=tuple(dataclasses.replace(r, hf=_toy_name(r.hf)) for r in LLAMA_LAYOUT + QKV_BIAS + O_BIAS),
      read=lambda cfg, source: {"qkv_bias": cfg["use_bias"], "o_bias": cfg["use_bias"]},
      write=lambda cfg, out: {**out, "use_bias": cfg.qkv_bias},
      heads=("lm",),
    )
  )
  yield family
  del families.FAMILIES["toy_llama"]


@pytest.fixture
def toy_checkpoint(tmp_path, toy_family):
  """A random transformers Llama (biases on) and the same weights saved as a toy_llama checkpoint."""
  hf = tiny_models.build("llama", tmp_path / "llama", attention_bias=True)
  raw = json.loads((tmp_path / "llama" / "config.json").read_text())
  weights = safetensors.numpy.load_file(str(tmp_path / "llama" / "model.safetensors"))
  toy = tmp_path / "toy"
  toy.mkdir()
  safetensors.numpy.save_file({_toy_name(k): v for k, v in weights.items()}, str(toy / "model.safetensors"))
  del raw["attention_bias"]
  raw.update(model_type="toy_llama", architectures=["ToyLlamaForCausalLM"], use_bias=True)
  (toy / "config.json").write_text(json.dumps(raw))
  return hf, toy


def test_registering_a_family_twice_is_refused(toy_family):
  with pytest.raises(ValueError, match="model family 'toy_llama' is already registered"):
    families.register(toy_family)


def test_an_unknown_family_is_named_with_the_registered_ones(tmp_path):
  with pytest.raises(
    ValueError, match=r"config.json: model_type='toy_llama' is not supported; rsft supports \('qwen2'"
  ):
    ModelConfig.from_hf_dict({"model_type": "toy_llama"}, source="x/config.json")


def test_a_family_registered_from_a_test_file_reads_its_config(toy_checkpoint):
  cfg, _ = ModelConfig.from_dir(str(toy_checkpoint[1]))
  assert (cfg.model_type, cfg.qkv_bias, cfg.o_bias, cfg.qk_norm) == ("toy_llama", True, True, False)


def test_a_family_registered_from_a_test_file_matches_transformers(toy_checkpoint):
  hf, toy = toy_checkpoint
  ids, mask = tiny_models.left_padded_batch(length=40, pad=5)
  got = np.asarray(rsft.token_logprobs(rsft.load_model(toy), ids, mask))
  np.testing.assert_allclose(got, tiny_models.hf_logprobs(hf, ids, mask), atol=1e-4, rtol=0)


def test_a_family_registered_from_a_test_file_exports_bit_exact(toy_checkpoint, tmp_path):
  _, toy = toy_checkpoint
  out = tmp_path / "export"
  rsft.export_hf(rsft.load_model(toy), str(out))
  a = safetensors.numpy.load_file(str(toy / "model.safetensors"))
  b = {}
  for name in os.listdir(out):
    if name.endswith(".safetensors"):
      b.update(safetensors.numpy.load_file(str(out / name)))
  assert sorted(a) == sorted(b)
  assert all(a[k].tobytes() == b[k].tobytes() for k in a)
  assert json.loads((out / "config.json").read_text())["model_type"] == "toy_llama"


def test_a_family_writes_its_own_config_for_a_model_from_scratch(toy_family):
  cfg = ModelConfig("toy_llama", 64, 32, 64, 1, 2, 1, 16, 1e4, qkv_bias=True, o_bias=True)
  written = cfg.to_hf_dict()
  assert (written["architectures"], written["use_bias"]) == (["ToyLlamaForCausalLM"], True)
  assert ModelConfig.from_hf_dict(written) == cfg
