"""Readers, chat rendering with weights, packing without cross-segment targets, iterator resume."""

import json
import os

import numpy as np
import pytest
import transformers

from rsft.data import chat, pipeline, readers, tiny_tokenizer
from rsft.tasks import countdown

QWEN3_TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tokenizers", "qwen3")


@pytest.fixture(scope="module")
def qwen3_tok():
  if not os.path.isdir(QWEN3_TOKENIZER):
    pytest.skip("../shared/tokenizers/qwen3 not present")
  return transformers.AutoTokenizer.from_pretrained(QWEN3_TOKENIZER)


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory):
  rows = countdown.rows(0, 200)
  return tiny_tokenizer.train(
    (r["message"][0]["content"] + r["response"] for r in rows), 400, str(tmp_path_factory.mktemp("tok"))
  )


def test_render_matches_chat_template_and_weights_response_and_eos(qwen3_tok):
  messages = [
    {"role": "user", "content": "What is 2+3?\nPlease reason step by step, and put your final answer within \\boxed{}."}
  ]
  response = "<think>\n2+3=5. Check: 5-3=2.\n</think>\n\nThe answer is \\boxed{5}."
  eos = chat.eos_id(qwen3_tok, "<|endoftext|>")  # Qwen3-Base's EOS, as in the study
  tokens, weights = chat.render(qwen3_tok, messages, response, eos)
  template = qwen3_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  n_prompt = int((weights == 0).sum())
  assert qwen3_tok.decode(tokens[:n_prompt]) == template
  assert template.endswith("<|im_start|>assistant\n")
  assert weights[:n_prompt].sum() == 0 and weights[n_prompt:].all()  # response and EOS supervised
  assert tokens[-1] == eos == 151643
  assert qwen3_tok.decode(tokens[n_prompt:-1]) == response  # <think> kept verbatim
  assert chat.eos_id(qwen3_tok, None) == 151645  # default: the tokenizer's own eos (<|im_end|> here)
  with pytest.raises(ValueError, match="not a token"):
    chat.eos_id(qwen3_tok, "<|nope|>")


def test_strip_default_system_prompt(tiny_tok):
  tiny_tok.chat_template = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Qwen, created by "
    "Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}" + tiny_tokenizer.CHATML
  )
  msgs = [{"role": "user", "content": "hi"}]
  assert chat.prompt_text(tiny_tok, msgs).startswith("<|im_start|>system\nYou are Qwen")
  assert (
    chat.prompt_text(tiny_tok, msgs, strip_default_system=True) == "<|im_start|>user\nhi<|im_end|>\n"
    "<|im_start|>assistant\n"
  )


def test_readers_accept_the_three_schemas(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  study = [{"message": [{"role": "user", "content": "q1"}], "response": "r1", "advantage": 1.0}]
  pq.write_table(pa.Table.from_pylist(study), tmp_path / "train.parquet")
  with open(tmp_path / "a.jsonl", "w") as f:
    f.write(
      json.dumps(
        {
          "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "r2"},
          ]
        }
      )
      + "\n"
    )
    f.write(json.dumps({"prompt": "q3", "response": "r3"}) + "\n")
  examples, stats = readers.read(f"{tmp_path}/train.parquet,{tmp_path}/*.jsonl")
  assert [(e.messages[-1]["content"], e.response) for e in examples] == [("q1", "r1"), ("q2", "r2"), ("q3", "r3")]
  assert examples[1].messages[0] == {"role": "system", "content": "s"} and stats.rows == 3


def test_malformed_rows_raise_with_file_and_row_or_are_counted(tmp_path):
  path = tmp_path / "bad.jsonl"
  rows = [{"prompt": "ok", "response": "fine"}, {"prompt": "q"}, "not json", {"messages": [{"role": "user"}]}]
  path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
  with pytest.raises(ValueError, match=rf"{path}: row 1: 'response' must be a non-empty string"):
    readers.read(str(path))
  examples, stats = readers.read(str(path), on_error="skip")
  assert len(examples) == 1 and stats.skipped == 3 and stats.rows == 4
  assert any("row 2: invalid JSON" in e for e in stats.errors)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    readers.read(str(tmp_path / "missing.jsonl"))


class DataCfg(dict):
  __getattr__ = dict.get


def data_cfg(train_files: str, **overrides) -> DataCfg:
  """The data section the pipeline tests share: JSONL read as-is, 512 tokens cut on the right."""
  defaults = dict(
    format="auto", on_error="raise", max_length=512, truncation="right", eos_token=None, strip_default_system=False
  )
  return DataCfg(dict(defaults, train_files=train_files, **overrides))


def make_data(tok, tmp_path, n=40, **kw):
  path = tmp_path / "cd.jsonl"
  with open(path, "w") as f:
    for r in countdown.rows(1, n):
      f.write(json.dumps(r) + "\n")
  cfg = data_cfg(str(path), **kw)
  return pipeline.prepare(cfg, tok, cache_dir=str(tmp_path / "cache"))


def test_truncation_and_drop_are_counted(tiny_tok, tmp_path):
  cut = make_data(tiny_tok, tmp_path, max_length=4096).stats["length_p50"]
  data = make_data(tiny_tok, tmp_path, max_length=cut, truncation="right")
  assert data.stats["truncated"] > 0 and data.stats["length_max"] == cut
  dropped = make_data(tiny_tok, tmp_path, max_length=cut, truncation="drop")
  assert dropped.stats["dropped_too_long"] == data.stats["truncated"]
  assert len(dropped) + dropped.stats["dropped_too_long"] == 40


def test_packing_keeps_targets_inside_their_example(tiny_tok, tmp_path):
  data = make_data(tiny_tok, tmp_path)
  ds = pipeline.make_dataset(data, seq_len=1024, per_host_batch=4, packing=True, shuffle=False, seed=0, num_epochs=1)
  originals = {tuple(data.example(i)[0]) for i in range(len(data))}
  segments = 0
  for batch in ds:
    for row in range(4):
      seg, pos = batch["segment_ids"][row], batch["positions"][row]
      for s in set(seg.tolist()) - {0}:
        idx = np.flatnonzero(seg == s)
        assert (pos[idx] == np.arange(len(idx))).all()  # positions restart per segment
        rebuilt = tuple(batch["inputs"][row][idx]) + (batch["targets"][row][idx[-1]],)
        assert rebuilt in originals  # every target is the next token of the same example
        segments += 1
      assert (batch["weights"][row][seg == 0] == 0).all()
  assert segments >= 30  # nearly all 40 examples packed into full rows (drop_remainder loses the tail)


def test_padding_layout_and_resume_yields_the_next_batch(tiny_tok, tmp_path):
  data = make_data(tiny_tok, tmp_path)
  kw = dict(seq_len=512, per_host_batch=4, packing=False, shuffle=True, seed=3, num_epochs=2)
  assert pipeline.steps_per_run(data, **kw) == 20
  it = iter(pipeline.make_dataset(data, **kw))
  first = next(it)
  n = int(first["segment_ids"][0].sum())
  assert (first["positions"][0][:n] == np.arange(n)).all() and (first["segment_ids"][0][n:] == 0).all()
  next(it)
  state = it.get_state()
  expected = [next(it)["inputs"] for _ in range(3)]
  fresh = iter(pipeline.make_dataset(data, **kw))
  fresh.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["inputs"], want)


def test_hf_datasets_name_reads_through_datasets(tmp_path):
  """`hf:` goes through datasets.load_dataset (a local dataset dir here; a hub name reads its offline cache)."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  (tmp_path / "ds").mkdir()
  rows = [{"message": [{"role": "user", "content": f"q{i}"}], "response": f"r{i}"} for i in range(3)]
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ds" / "train.parquet")
  examples, _ = readers.read(f"hf:{tmp_path}/ds")
  assert [e.response for e in examples] == ["r0", "r1", "r2"]


def test_an_unusable_share_fails_every_process_together(tiny_tok, tmp_path, monkeypatch):
  """With several processes, a share with no usable row must not raise on its own (the others would wait in the
  step-count collective): prepare returns it empty with the reason, and check_shares raises on every process."""
  from rsft import distributed

  path = tmp_path / "one.jsonl"
  path.write_text(json.dumps(countdown.rows(1, 1)[0]) + "\n")  # one row: process 1 of 2 gets none
  cfg = data_cfg(str(path))
  empty = pipeline.prepare(cfg, tiny_tok, process_index=1, process_count=2)
  full = pipeline.prepare(cfg, tiny_tok, process_index=0, process_count=2)
  assert len(empty) == 0 and "process 1's share" in empty.stats["problem"] and len(full) == 1
  votes = []
  monkeypatch.setattr(distributed, "min_over_processes", lambda v: votes.append(v) or min(votes))
  with pytest.raises(ValueError, match="process 1's share"):
    pipeline.check_shares(empty)
  with pytest.raises(ValueError, match="another process's share"):  # process 0 learns of it and raises too
    pipeline.check_shares(full)
  assert votes == [0, 1]


def _two_sources(tok, tmp_path, mix, **kw):
  """a.jsonl and b.jsonl (40 Countdown rows each, different puzzles) prepared as one training set."""
  for name, seed in (("a", 1), ("b", 2)):
    with open(tmp_path / f"{name}.jsonl", "w") as f:
      for r in countdown.rows(seed, 40):
        f.write(json.dumps(r) + "\n")
  cfg = data_cfg(f"{tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}")
  data = pipeline.prepare(cfg, tok, cache_dir=str(tmp_path / "cache"))
  kw = dict(dict(seq_len=512, per_host_batch=4, packing=False, shuffle=True, seed=3, num_epochs=None), **kw)
  return data, pipeline.make_dataset(data, mix=pipeline.parse_mix(mix), **kw)


def test_a_mixture_draws_its_sources_by_weight_beyond_their_size(tiny_tok, tmp_path):
  data, ds = _two_sources(tiny_tok, tmp_path, "a=3,b=1")
  assert data.stats["sources"] == ["a", "b"] and np.bincount(data.sources).tolist() == [40, 40]
  it = iter(ds)
  counts = sum(pipeline.mixture_counts(next(it), 2) for _ in range(40))  # 160 rows: b's 40 rows once, a's thrice
  assert counts.tolist() == [120, 40]


def test_a_packed_mixture_tags_every_token_with_its_source(tiny_tok, tmp_path):
  data, ds = _two_sources(tiny_tok, tmp_path, "a=1,b=1", seq_len=1024, packing=True)
  batch = next(iter(ds))
  for row in range(4):
    for s in set(batch["segment_ids"][row].tolist()) - {0}:
      tags = batch["sources"][row][batch["segment_ids"][row] == s]
      assert len(set(tags.tolist())) == 1  # one source per packed example
  segments = sum(len(set(batch["segment_ids"][row].tolist()) - {0}) for row in range(4))
  assert pipeline.mixture_counts(batch, 2).sum() == segments  # one count per packed example


def test_a_mixture_resumes_at_the_next_row(tiny_tok, tmp_path):
  _, ds = _two_sources(tiny_tok, tmp_path, "a=0.7,b=0.3")
  it = iter(ds)
  for _ in range(25):  # past b's 40 rows: the repeat is part of the state
    next(it)
  state = it.get_state()
  expected = [next(it)["inputs"] for _ in range(3)]
  _, again = _two_sources(tiny_tok, tmp_path, "a=0.7,b=0.3")
  fresh = iter(again)
  fresh.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(fresh)["inputs"], want)


@pytest.mark.parametrize(
  "mix, message",
  [
    ("a=1,c=1", r"data.mix names \['a', 'c'\] but the training files are the sources \['a', 'b'\].*unknown \['c'\]"),
    ("a=1", r"no weight for \['b'\]"),
  ],
)
def test_a_mixture_names_every_source(tiny_tok, tmp_path, mix, message):
  with pytest.raises(ValueError, match=message):
    _two_sources(tiny_tok, tmp_path, mix)


@pytest.mark.parametrize("mix", ["a:1", "a=-1", "a=1,a=2", "=1", "a=x", "a=0,b=0"])
def test_a_malformed_mixture_is_named(mix):
  with pytest.raises(ValueError, match=r"data.mix="):
    pipeline.parse_mix(mix)


def test_a_source_is_its_file_name_without_data_suffixes():
  assert readers.source_name("/d/qwen2.5-math.jsonl.gz") == "qwen2.5-math"
  assert readers.source_name("/d/code.parquet") == "code"
  assert readers.source_name("hf:owner/ds:train") == "ds:train"


def test_two_files_with_one_name_cannot_be_mixed(tiny_tok, tmp_path):
  for d in ("x", "y"):
    (tmp_path / d).mkdir()
    (tmp_path / d / "train.jsonl").write_text(json.dumps(countdown.rows(1, 1)[0]) + "\n")
  cfg = DataCfg(train_files=f"{tmp_path}/x/train.jsonl,{tmp_path}/y/train.jsonl", mix="train=1")
  with pytest.raises(ValueError, match=r"data.mix: .*x/train.jsonl and .*y/train.jsonl are both the source 'train'"):
    pipeline.training_stream(cfg, tiny_tok, global_batch=4, num_steps=2, num_epochs=1, cache_dir=str(tmp_path / "c"))
