"""KV-cache sampler: greedy parity with transformers, cache == full forward, sampling law, stops, no recompiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rsft
from rsft import sharding
from rsft.infer import engine, sampler, sampling
from rsft.tools import tiny_models

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  out = {}
  for kind in ("qwen2", "qwen3"):
    path = tmp_path_factory.mktemp(kind)
    out[kind] = (tiny_models.build(kind, path), rsft.load_model(path))
  return out


def prompts(seed=0, lengths=(5, 17, 11)):
  rng = np.random.default_rng(seed)
  return [rng.integers(1, tiny_models.VOCAB, n).tolist() for n in lengths]


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
def test_greedy_equals_transformers_and_logprobs_equal_the_scorer(models, kind):
  hf, m = models[kind]
  ps = prompts()
  res = rsft.generate(m, ps, 64, stop_token_ids=[])
  width = max(map(len, ps))
  ids, mask = torch.zeros((3, width), dtype=torch.long), torch.zeros((3, width), dtype=torch.long)
  for i, p in enumerate(ps):
    ids[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
  with torch.no_grad():
    want = hf.generate(
      input_ids=ids, attention_mask=mask, max_new_tokens=64, do_sample=False, eos_token_id=None, pad_token_id=0
    )[:, width:].tolist()
  assert res.tokens == want and res.finish_reason == ["length"] * 3
  for p, toks, lps in zip(ps, res.tokens, res.logprobs):  # KV-cache decode == full forward at every position
    full = np.asarray(rsft.token_logprobs(m, np.asarray([p + toks])))[0, len(p) - 1 :]
    np.testing.assert_allclose(lps, full, atol=2e-5)


def test_sampled_frequencies_follow_the_tempered_softmax():
  logits = jnp.asarray([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
  n = 20000
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(n))
  rows = lambda v, dt: jnp.full((n,), v, dt)
  toks, _ = jax.jit(sampling.select, static_argnums=5)(
    jnp.repeat(logits, n, 0), keys, rows(0.7, jnp.float32), rows(1.0, jnp.float32), rows(0, jnp.int32), 6
  )
  freq = np.bincount(np.asarray(toks), minlength=6)
  expected = np.asarray(jax.nn.softmax(logits[0] / 0.7)) * n
  chi2 = ((freq - expected) ** 2 / expected).sum()
  assert chi2 < 20.5  # 5 dof, p = 0.001


def test_top_k_and_top_p_cut_where_they_should():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  n = 2000
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(1), i))(jnp.arange(n))
  rows = lambda v, dt: jnp.full((n,), v, dt)
  sample = lambda top_p, top_k: set(
    np.asarray(
      sampling.select(
        jnp.repeat(logits, n, 0), keys, rows(1.0, jnp.float32), rows(top_p, jnp.float32), rows(top_k, jnp.int32), 4
      )[0]
    ).tolist()
  )
  assert sample(1.0, 2) == {0, 1}
  assert sample(0.8, 0) == {0, 1}  # 0.5 + 0.3 reaches 0.8: the 0.15 token is cut
  assert sample(0.81, 0) == {0, 1, 2}
  assert sample(0.1, 0) == {0}  # the best token always stays
  assert sample(1.0, 0) == {0, 1, 2, 3}


def test_top_p_is_exact_nucleus_sampling_over_the_whole_vocabulary():
  """A nucleus of 283 tokens (more than any static top-k cap) sampled at the exact truncated law (chi-square)."""
  vocab, n, top_p, temp = 400, 40000, 0.9, 0.8
  logits = jnp.asarray(np.random.default_rng(0).normal(0.0, 0.6, vocab), jnp.float32)[None]
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(2), i))(jnp.arange(n))
  rows = lambda v, dt: jnp.full((n,), v, dt)
  toks, _ = jax.jit(sampling.select, static_argnums=5)(
    jnp.repeat(logits, n, 0), keys, rows(temp, jnp.float32), rows(top_p, jnp.float32), rows(0, jnp.int32), 64
  )
  p = np.asarray(jax.nn.softmax(logits[0] / temp), np.float64)
  order = np.argsort(-p)
  above = np.cumsum(p[order]) - p[order]  # mass strictly above each token (no ties here)
  nucleus = order[above < top_p]
  assert len(nucleus) > 200
  want = np.zeros(vocab)
  want[nucleus] = p[nucleus] / p[nucleus].sum()
  freq = np.bincount(np.asarray(toks), minlength=vocab)
  assert set(np.flatnonzero(freq)) <= set(nucleus.tolist())  # nothing outside the nucleus is ever drawn
  # Chi-square over the nucleus, binned in groups of 8 tokens by probability (expected >= 5 per bin).
  bins = np.array_split(nucleus, len(nucleus) // 8)
  f = np.asarray([freq[b].sum() for b in bins], np.float64)
  e = np.asarray([want[b].sum() for b in bins]) * n
  chi2 = ((f - e) ** 2 / e).sum()
  assert chi2 < 75.0, chi2  # 34 dof (283 tokens in 35 bins): p ~ 1e-4 at 75; measured 31.9
  floor = sampling.nucleus_floor(jax.nn.softmax(logits / temp), jnp.asarray([top_p]))
  assert np.isclose(float(floor[0]), p[nucleus].min(), rtol=1e-5)


def test_a_nucleus_inside_the_candidates_is_sampled_from_them_at_the_exact_law():
  """A peaked row (its top-p nucleus well inside the k_cap best) takes the candidate path: k_cap draws, not V; the
  law is the truncated, renormalised softmax, the same as the whole-vocabulary path's (chi-square), and no token
  outside the nucleus is drawn. A row with top-k but a wider nucleus also stays within its top-k."""
  vocab, n, top_p, temp = 3000, 30000, 0.8, 0.7
  rng = np.random.default_rng(3)
  logits = jnp.asarray(np.concatenate([rng.normal(8.0, 0.5, 12), rng.normal(0.0, 1.0, vocab - 12)]), jnp.float32)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(4), i))(jnp.arange(n))
  rows = lambda v, dt: jnp.full((n,), v, dt)
  run = jax.jit(sampling.select, static_argnums=5)
  toks, lps = run(
    jnp.repeat(logits[None], n, 0), keys, rows(temp, jnp.float32), rows(top_p, jnp.float32), rows(0, jnp.int32), 64
  )
  p = np.asarray(jax.nn.softmax(logits / temp), np.float64)
  order = np.argsort(-p)
  nucleus = order[(np.cumsum(p[order]) - p[order]) < top_p]
  assert 3 < len(nucleus) < 64
  freq = np.bincount(np.asarray(toks), minlength=vocab)
  assert set(np.flatnonzero(freq)) <= set(nucleus.tolist())
  e = p[nucleus] / p[nucleus].sum() * n
  assert ((freq[nucleus] - e) ** 2 / e).sum() < 35.0  # < 12 dof here: p ~ 1e-4
  np.testing.assert_allclose(np.asarray(lps), np.asarray(jax.nn.log_softmax(logits))[np.asarray(toks)], atol=1e-5)
  top3, _ = run(
    jnp.repeat(logits[None], 2000, 0),
    keys[:2000],
    rows(1.5, jnp.float32)[:2000],
    rows(1.0, jnp.float32)[:2000],
    rows(3, jnp.int32)[:2000],
    64,
  )
  assert set(np.asarray(top3).tolist()) == set(order[:3].tolist())


def test_presence_and_frequency_penalties_follow_vllm():
  logits = jnp.asarray([[2.0, 1.5, 0.0, -1.0]])
  counts = jnp.asarray([[3, 0, 1, 0]], jnp.int32)
  out = sampling.penalize(logits, counts, jnp.asarray([0.1]), jnp.asarray([0.2]))
  np.testing.assert_allclose(np.asarray(out), [[2.0 - 0.6 - 0.1, 1.5, 0.0 - 0.2 - 0.1, -1.0]], atol=1e-6)
  # Greedy with a large frequency penalty never repeats a token until all have been used once.
  keys = jax.random.split(jax.random.key(0), 1)
  tok, lp = sampling.select(
    logits,
    keys,
    jnp.asarray([0.0]),
    jnp.asarray([1.0]),
    jnp.asarray([0]),
    4,
    None,
    (counts, jnp.asarray([0.0]), jnp.asarray([1.0])),
  )
  assert int(tok[0]) == 1  # token 0 (2.0 - 3) falls below token 1 (1.5)
  np.testing.assert_allclose(float(lp[0]), float(jax.nn.log_softmax(logits)[0, 1]), atol=1e-6)  # model's log-prob


def test_penalised_generation_avoids_repeats_and_caps_total_tokens(models):
  _, m = models["qwen3"]
  ps = prompts(lengths=(6, 9))
  free = rsft.generate(m, ps, 24, stop_token_ids=[])
  pen = rsft.generate(m, ps, 24, stop_token_ids=[], frequency_penalty=100.0)
  compiled = engine.decode._cache_size()
  other = rsft.generate(
    m, ps, 24, stop_token_ids=[], temperature=0.7, presence_penalty=[0.1, 2.0], frequency_penalty=[0.1, 0.0]
  )
  assert engine.decode._cache_size() == compiled and len(other.tokens) == 2  # new penalty values: no recompile
  for toks in pen.tokens:
    assert len(set(toks)) == len(toks)  # greedy under a huge frequency penalty: no token twice
  assert any(len(set(t)) < len(t) for t in free.tokens)  # ... while the free run does repeat
  capped = rsft.generate(m, ps, 24, stop_token_ids=[], max_total_tokens=20)
  assert [len(t) for t in capped.tokens] == [14, 11] and capped.finish_reason == ["length"] * 2
  assert capped.tokens[0] == free.tokens[0][:14] and capped.tokens[1] == free.tokens[1][:11]
  full = rsft.generate(m, ps, 24, stop_token_ids=[], max_total_tokens=9)  # prompt 1 fills the context
  assert full.tokens[1] == [] and full.finish_reason[1] == "length" and len(full.tokens[0]) == 3


def test_stops_finish_reasons_and_padding_after_stop(models):
  _, m = models["qwen3"]
  ps = prompts(lengths=(6, 9))
  free = rsft.generate(m, ps, 20, stop_token_ids=[])
  stop = free.tokens[0][7]
  res = rsft.generate(m, ps, 20, stop_token_ids=[stop])
  assert res.tokens[0] == free.tokens[0][: free.tokens[0].index(stop) + 1] and res.finish_reason[0] == "stop"
  if stop not in free.tokens[1]:
    assert res.tokens[1] == free.tokens[1] and res.finish_reason[1] == "length"


def test_sampling_params_change_without_recompiling_and_rows_are_independent(models):
  _, m = models["qwen3"]
  ps = prompts()
  opts = sampler.Options(n=2, chunk_steps=8)
  first = rsft.generate(m, ps, 16, temperature=1.0, top_p=0.9, seed=3, stop_token_ids=[], options=opts)
  compiled = engine.decode._cache_size()
  again = rsft.generate(
    m,
    ps,
    16,
    temperature=[0.0, 0.5, 1.3],
    top_p=[1.0, 0.7, 0.95],
    top_k=[0, 5, 40],
    seed=3,
    stop_token_ids=[],
    options=opts,
  )
  assert engine.decode._cache_size() == compiled
  assert len(first.tokens) == 6 and first.tokens[0] != first.tokens[1]  # n=2 samples per prompt differ
  assert again.tokens[0] == again.tokens[1] == rsft.generate(m, ps[:1], 16, stop_token_ids=[]).tokens[0]  # greedy
  alone = rsft.generate(m, ps[:1], 16, temperature=1.0, top_p=0.9, seed=3, stop_token_ids=[], options=opts)
  assert alone.tokens == first.tokens[:2]  # a row's sample does not depend on its batch-mates


def test_scorer_equals_transformers_and_the_sampler(models):
  from rsft.infer import scorer

  hf, m = models["qwen2"]
  ps = prompts(lengths=(4, 30, 9))
  gen = rsft.generate(m, ps, 24, temperature=1.0, seed=5, stop_token_ids=[])
  scores = scorer.score(m, ps, gen.tokens, batch_tokens=256, length_multiple=16)
  for p, toks, lps, s in zip(ps, gen.tokens, gen.logprobs, scores):
    ids = torch.tensor([p + toks])
    with torch.no_grad():
      logits = hf(input_ids=ids).logits.float()
    want = torch.log_softmax(logits[0, :-1], -1).gather(-1, ids[0, 1:, None])[:, 0].numpy()[len(p) - 1 :]
    np.testing.assert_allclose(s.logprobs, want, atol=1e-4)
    np.testing.assert_allclose(s.logprobs, lps, atol=2e-5)  # sampler-reported log-probs
    probs = torch.softmax(logits[0, len(p) - 1 : -1], -1)
    np.testing.assert_allclose(s.entropies, (-(probs * probs.clamp_min(1e-30).log()).sum(-1)).numpy(), atol=1e-4)
    assert s.sum == pytest.approx(sum(s.logprobs), abs=1e-4) and len(s.logprobs) == 24
  greedy = rsft.generate(m, ps[:1], 8, stop_token_ids=[])
  assert scorer.score(m, ps[:1], greedy.tokens)[0].is_greedy
  assert not scorer.score(m, ps[:1], [[(t + 1) % 500 for t in greedy.tokens[0]]])[0].is_greedy


@pytest.mark.parametrize("data,tensor", [(4, 2), (2, 4)])  # (2, 4): 2 KV heads do not divide tensor=4
def test_sharded_sampling_mesh_equals_unsharded(models, data, tensor):
  from rsft import sharding

  _, m = models["qwen3"]
  path = m.path
  ps = prompts(lengths=(5, 17, 11))
  opts = sampler.Options(n=2, chunk_steps=8)
  want = rsft.generate(m, ps, 20, temperature=1.0, top_k=30, seed=7, stop_token_ids=[], options=opts)
  trained = rsft.load_model(path, mesh=sharding.make_mesh(1, 4, 2))  # training layout: fsdp x tensor
  sm = rsft.reshard(trained, sharding.make_mesh(data, 1, tensor))
  assert sm.params["layers"]["self_attn"]["q_proj"]["kernel"][...].sharding.spec[2] == "tensor"
  before = dict(engine.COMPILES)
  got = rsft.generate(sm, ps, 20, temperature=1.0, top_k=30, seed=7, stop_token_ids=[], options=opts)
  # 3 prompts x 2 samples are padded to 8 rows for data=4; three decode chunks reuse one compile.
  assert engine.COMPILES["prefill"] - before.get("prefill", 0) == 1
  assert engine.COMPILES["decode"] - before.get("decode", 0) == 1
  assert got.tokens == want.tokens and got.finish_reason == want.finish_reason
  np.testing.assert_allclose(np.concatenate(got.logprobs), np.concatenate(want.logprobs), atol=1e-5)
  from rsft.infer import scorer

  sharded = scorer.score(sm, ps * 2, want.tokens[::2] + want.tokens[1::2], batch_tokens=128, length_multiple=16)
  plain = scorer.score(m, ps * 2, want.tokens[::2] + want.tokens[1::2], batch_tokens=128, length_multiple=16)
  for a, b in zip(sharded, plain):
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_prompt_ids_make_samples_independent_of_batching(models):
  _, m = models["qwen3"]
  ps = prompts(lengths=(5, 17, 11))
  opts = sampler.Options(n=2, chunk_steps=32)
  whole = rsft.generate(m, ps, 12, temperature=1.0, seed=2, stop_token_ids=[], options=opts, prompt_ids=[10, 11, 12])
  last = rsft.generate(m, ps[2:], 12, temperature=1.0, seed=2, stop_token_ids=[], options=opts, prompt_ids=[12])
  assert last.tokens == whole.tokens[4:]


@pytest.mark.parametrize("padding", ["left", "right"])
def test_batched_reward_scores_equal_transformers(tmp_path, padding):
  from rsft import sharding
  from rsft.infer import scorer

  hf = tiny_models.build("qwen3", tmp_path, head="score", seed=4)
  rng = np.random.default_rng(1)
  seqs = [rng.integers(1, tiny_models.VOCAB, n).tolist() for n in (7, 40, 23, 3, 31)]
  width = max(map(len, seqs))
  ids, mask = np.zeros((5, width), np.int64), np.zeros((5, width), np.int64)
  for i, s in enumerate(seqs):
    at = slice(width - len(s), width) if padding == "left" else slice(0, len(s))
    ids[i, at], mask[i, at] = s, 1
  with torch.no_grad():
    want = (
      hf(
        input_ids=torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        position_ids=torch.tensor(np.maximum(np.cumsum(mask, -1) - 1, 0)),
      )
      .logits[:, 0]
      .numpy()
    )
  m = rsft.load_model(tmp_path, mesh=sharding.make_mesh(4, 1, 2))
  np.testing.assert_allclose(np.asarray(rsft.reward_scores(m, ids, mask)), want, atol=1e-4, rtol=0)
  np.testing.assert_allclose(scorer.rewards(m, seqs, batch_tokens=64, length_multiple=8), want, atol=1e-4, rtol=0)


def test_kv_cache_logits_equal_full_forward_logits_at_every_position(models):
  """Prefill a left-padded prompt, then extend one token at a time: every step's full logit row equals the
  full forward pass's row at that position."""
  from flax import nnx

  from rsft.models.decoder import positions_from_mask

  _, m = models["qwen2"]
  model = nnx.merge(m.graphdef, m.params)
  cfg = m.config
  rng = np.random.default_rng(3)
  seq = rng.integers(1, tiny_models.VOCAB, 24).tolist()
  prompt, rest, pad = seq[:9], seq[9:], 4
  width = pad + len(prompt)
  cache_len = width + len(rest)
  shape = (cfg.num_layers, 1, cache_len, cfg.num_kv_heads, cfg.head_dim)
  cache = {"k": jnp.zeros(shape), "v": jnp.zeros(shape)}
  ids = jnp.asarray([[0] * pad + prompt])
  mask = jnp.asarray([[0] * pad + [1] * len(prompt)])
  valid = jnp.zeros((1, cache_len), bool).at[:, :width].set(mask > 0)
  hidden, cache = model.extend(ids, positions_from_mask(mask), cache, jnp.int32(0), valid)
  rows = [hidden[0, -1]]
  for i, tok in enumerate(rest[:-1]):
    valid = valid.at[:, width + i].set(True)
    hidden, cache = model.extend(
      jnp.asarray([[tok]]), jnp.asarray([[len(prompt) + i]]), cache, jnp.int32(width + i), valid
    )
    rows.append(hidden[0, 0])
  cached = np.asarray(jnp.stack(rows) @ model.head_kernel())
  full_hidden = model(jnp.asarray([seq]), jnp.arange(len(seq))[None], jnp.ones((1, len(seq)), jnp.int32))
  full = np.asarray(full_hidden[0, len(prompt) - 1 : -1] @ model.head_kernel())
  np.testing.assert_allclose(cached, full, atol=2e-4, rtol=0)


def test_chunked_prefill_equals_one_piece(models):
  _, m = models["qwen3"]
  ps = prompts(seed=4, lengths=(200, 37, 150))
  whole = rsft.generate(m, ps, 12, stop_token_ids=[], options=sampler.Options(prompt_buckets=(256,), prefill_chunk=0))
  pieces = rsft.generate(m, ps, 12, stop_token_ids=[], options=sampler.Options(prompt_buckets=(256,), prefill_chunk=64))
  assert pieces.tokens == whole.tokens
  np.testing.assert_allclose(np.concatenate(pieces.logprobs), np.concatenate(whole.logprobs), atol=2e-5)


@pytest.mark.parametrize("impl", ["chunked", "cudnn"])
def test_prefill_with_an_attention_kernel_equals_the_reference(models, tmp_path, impl):
  """The prompt attends to itself with the kernel (left padding as segment 0); decoding is unchanged."""
  _, m = models["qwen3"]
  kernel = rsft.load_model(m.path, attention=impl)
  ps = prompts(seed=5, lengths=(40, 9, 27))
  want = rsft.generate(m, ps, 10, stop_token_ids=[], options=sampler.Options(prompt_buckets=(64,)))
  got = rsft.generate(kernel, ps, 10, stop_token_ids=[], options=sampler.Options(prompt_buckets=(64,)))
  assert got.tokens == want.tokens
  np.testing.assert_allclose(np.concatenate(got.logprobs), np.concatenate(want.logprobs), atol=2e-5)


def test_kv_pages_follow_device_memory():
  """Pages sized from the memory left after the weights (vLLM's gpu_memory_utilization), never fewer than one
  whole sequence; slots from max_num_seqs."""
  from rsft.models import presets

  cfg = presets.get("qwen3_14b")
  mesh = sharding.make_mesh(1, 1, 8)
  gib = 2**30
  opts = sampler.Options()
  small, large = (sampler.plan(cfg, "bfloat16", mesh, 1000, 2048, 34816, 1, opts, m * gib) for m in (31.25, 95.74))
  assert small.slots == large.slots == 256 and small.pages_per_row == 272 and small.shards == 1
  # A page: 2 (K, V) x 40 layers x 128 columns x 1 KV head per chip x 128 x 2 bytes.
  page = 2 * 40 * 128 * 128 * 2
  assert 272 < small.pages_per_shard < large.pages_per_shard
  assert abs(large.pages_per_shard - small.pages_per_shard - int(0.9 * (95.74 - 31.25) * gib // page)) <= 1
  few = sampler.plan(cfg, "bfloat16", mesh, 10, 2048, 34816, 1, opts, 95.74 * gib)
  assert few.slots == 10 and few.pages_per_shard == 10 * 272 + 1  # never more than every slot's whole length
  with pytest.raises(ValueError, match="cannot hold one sequence"):
    sampler.plan(cfg, "bfloat16", sharding.make_mesh(8, 1, 1), 1000, 2048, 34816, 1, opts, 31.25 * gib)


def _variable_lengths(m, **options):
  """40 prompts sampled at T=1 with 24 stop ids: lengths from 1 to the cap, so slots free up at random."""
  rng = np.random.default_rng(11)
  ps = [rng.integers(1, tiny_models.VOCAB, int(k)).tolist() for k in rng.integers(3, 20, 40)]
  finished = []
  res = rsft.generate(
    m,
    ps,
    40,
    temperature=1.0,
    top_p=0.95,
    seed=9,
    stop_token_ids=list(range(100, 124)),
    options=sampler.Options(page_size=16, chunk_steps=16, **options),
    on_finished=lambda rows: finished.extend(rows),
  )
  assert sorted(r for r, *_ in finished) == list(range(len(res.tokens)))  # each row reported once, as it ends
  assert all(res.tokens[r] == t and res.finish_reason[r] == why for r, t, _, why in finished)
  return res


def test_same_tokens_whatever_the_number_of_slots(models):
  """Continuous batching: with 1, 7 or 32 sequences in flight (and the static schedule) every row samples the
  same tokens with the same log-probs; lengths vary, so rows are admitted in different orders and slots."""
  _, m = models["qwen3"]
  runs = {k: _variable_lengths(m, max_num_seqs=k) for k in (1, 7, 32)}
  runs["static"] = _variable_lengths(m, max_num_seqs=7, schedule="static")
  want = runs[32]
  lengths = [len(t) for t in want.tokens]
  assert min(lengths) < 5 and max(lengths) == 40 and "stop" in want.finish_reason  # a spread, some at the cap
  # The tail runs in a compacted batch: fewer row-steps than every slot for every step (static runs every slot).
  assert want.row_steps < want.slots * want.decode_steps
  assert runs["static"].row_steps == runs["static"].slots * runs["static"].decode_steps
  for name, got in runs.items():
    assert got.tokens == want.tokens and got.finish_reason == want.finish_reason, name
    # XLA may sum a matmul in another order for another batch size: log-probs agree to float32 rounding.
    np.testing.assert_allclose(np.concatenate(got.logprobs), np.concatenate(want.logprobs), atol=2e-6, rtol=0)


def test_preemption_swaps_sequences_out_and_back(models):
  """So few KV pages that sequences outgrow them: the youngest is swapped to host memory and resumes later, with
  the tokens an unconstrained run gives (n=3 samples share each prefill)."""
  _, m = models["qwen3"]
  want = _variable_lengths(m, n=3, max_num_seqs=12)
  tight = _variable_lengths(m, n=3, max_num_seqs=12, kv_pages=9)  # 9 pages of 16 columns: ~4 long rows
  assert want.preemptions == 0 and tight.preemptions > 0
  one = _variable_lengths(m, max_num_seqs=12)
  static = _variable_lengths(m, max_num_seqs=12, kv_pages=8, schedule="static")  # preempted rows resume first
  assert static.preemptions > 0
  for got, ref in ((tight, want), (static, one)):
    assert got.tokens == ref.tokens and got.finish_reason == ref.finish_reason
    np.testing.assert_allclose(np.concatenate(got.logprobs), np.concatenate(ref.logprobs), atol=2e-6, rtol=0)
  with pytest.raises(ValueError, match="cannot hold one sequence"):
    _variable_lengths(m, kv_pages=6)  # a row's 64-token prompt bucket + 40 new tokens need 7 pages of 16
  with pytest.raises(ValueError, match="or 8 samples"):
    _variable_lengths(m, n=8, kv_pages=9)  # 8 samples of a 19-token prompt need 2 pages each to start


def _shared_prefixes(m, **options):
  """24 prompts: three 37-token system prompts, each followed by a 1-30-token question (some prompts alone), at T=1
  with stop ids, so rows end at random and hit the prefix cache at different times."""
  rng = np.random.default_rng(5)
  systems = [rng.integers(1, tiny_models.VOCAB, 37).tolist() for _ in range(3)]
  ps = [
    systems[i % 3] + rng.integers(1, tiny_models.VOCAB, int(k)).tolist() for i, k in enumerate(rng.integers(1, 30, 21))
  ]
  ps += [rng.integers(1, tiny_models.VOCAB, k).tolist() for k in (3, 70, 16)]
  return rsft.generate(
    m,
    ps,
    30,
    temperature=1.0,
    top_p=0.95,
    seed=3,
    stop_token_ids=list(range(100, 124)),
    options=sampler.Options(page_size=16, chunk_steps=16, **options),
  )


def test_prefix_cache_and_chunked_prefill_give_the_same_tokens(models):
  """Prompts sharing system prompts: the prefix cache computes each shared page once (prompts admitted together
  share too), chunked prefill writes prompts in 8-token pieces between decode steps; with 1, 7 or 32 slots, n=3
  samples and preemption every row samples the tokens of the plain engine."""
  _, m = models["qwen3"]
  plain = _shared_prefixes(m, max_num_seqs=32)
  assert plain.prefix_hits == 0
  runs = {
    (k, c): _shared_prefixes(m, max_num_seqs=k, prefix_cache=True, chunked_prefill=c)
    for k, c in ((1, 0), (7, 8), (32, 0))
  }
  runs["chunked only"] = _shared_prefixes(m, max_num_seqs=7, chunked_prefill=8)
  runs["preempted"] = _shared_prefixes(m, max_num_seqs=12, prefix_cache=True, kv_pages=10)
  assert runs["preempted"].preemptions > 0 and runs["chunked only"].prefix_hits == 0
  # With room for every page, 18 of the 21 prompts take both 16-token pages of their system prompt from the cache;
  # one slot's pool (10 pages) reuses idle cached pages, so some prompts find theirs gone.
  assert runs[32, 0].prefix_hits == 18 * 32 and 0 < runs[1, 0].prefix_hits < 18 * 32 and runs[7, 8].prefix_hits > 0
  for name, got in runs.items():
    assert got.tokens == plain.tokens and got.finish_reason == plain.finish_reason, name
    np.testing.assert_allclose(np.concatenate(got.logprobs), np.concatenate(plain.logprobs), atol=2e-5, rtol=0)
  three, plain3 = (_shared_prefixes(m, n=3, max_num_seqs=12, **o) for o in (dict(prefix_cache=True), {}))
  assert three.tokens == plain3.tokens and three.prefix_hits > 18 * 32


def test_chunked_prefill_lets_decoding_rows_run_while_a_long_prompt_is_written(models):
  """Without chunking a 200-token prompt is prefilled before any row decodes: every row's first token comes back
  from the same decode call. With 16-token pieces between 2-step decode calls the short rows start at once."""
  _, m = models["qwen3"]
  rng = np.random.default_rng(2)
  ps = [rng.integers(1, tiny_models.VOCAB, k).tolist() for k in (200, 5, 9, 7)]
  run = lambda **o: rsft.generate(m, ps, 20, stop_token_ids=[], options=sampler.Options(page_size=16, **o))
  whole, chunked = run(), run(chunked_prefill=16, interleave_steps=2)
  assert whole.tokens == chunked.tokens
  assert len(set(whole.first_token_s)) == 1
  assert max(chunked.first_token_s[1:]) < chunked.first_token_s[0]
  assert len(chunked.tokens[0]) == 20 and chunked.decode_steps > whole.decode_steps


def test_compiled_decode_never_copies_the_kv_pool(models):
  """A decode step writes one column per row in place: the compiled chunk holds no copy of the pool, or of one
  layer's pages, anywhere (XLA's layout changes and loop-boundary copies would show up as `copy` ops)."""
  from rsft.tools import fit

  _, m = models["qwen3"]
  plan = sampler.plan(m.config, jnp.float32, m.mesh, 8, 20, 80, 1, sampler.Options(page_size=16), None)
  state = engine.empty_state(m.graphdef, m.params, plan=plan, penalties=True)
  layer_pages = int(np.prod(state.k.shape[3:])) * state.k.shape[1]  # [D, K, L, pages, page, H]
  assert fit.copied_sizes("%copy.3 = f32[2,41,16]{2,1,0} copy(%p)") == [2 * 41 * 16]  # it reads HLO
  for active in (plan.slots, 2):  # every slot, and the tail's compacted batch (active_rows)
    text = (
      engine.decode.lower(
        m.graphdef,
        m.params,
        state,
        jnp.zeros((plan.slots, plan.pages_per_row), jnp.int32),
        jnp.zeros((plan.slots,), jnp.int32),
        jnp.int32(1),
        jnp.int32(-1),
        jnp.asarray([1]),
        jnp.uint32(0),
        jnp.int32(100),
        k_cap=64,
        chunk=8,
        active=active,
      )
      .compile()
      .as_text()
    )
    copies = fit.copied_sizes(text)
    assert "while" in text and max(copies, default=0) < layer_pages, (active, max(copies, default=0), layer_pages)


class _ThinkTokens:
  """The tiny test models' tokenizer stand-in: ids for <think> / </think> (a random model has no tokenizer)."""

  def __init__(self, start, end):
    self.ids = {"<think>": start, "</think>": end}
    self.unk_token_id = None

  def convert_tokens_to_ids(self, token):
    return self.ids.get(token)

  def __len__(self):
    return tiny_models.VOCAB


def test_a_thinking_budget_forces_the_close_then_caps_the_answer(models):
  """A prompt ending inside <think> (id 7): the row thinks 6 tokens, gets </think> (id 9) as its 7th with the
  model's log-prob of it (the scorer's), then at most 4 answer tokens; the same tokens with 1 or 32 slots."""
  import copy

  _, base = models["qwen3"]
  m = copy.copy(base)
  m.tokenizer = _ThinkTokens(7, 9)
  ps = [p + [7] for p in prompts(lengths=(5, 17, 11, 8))]
  free = rsft.generate(m, ps, 30, temperature=1.0, seed=3, stop_token_ids=[])
  runs = [
    rsft.generate(
      m,
      ps,
      30,
      temperature=1.0,
      seed=3,
      stop_token_ids=[],
      think_budget=6,
      answer_budget=4,
      options=sampler.Options(max_num_seqs=k),
    )
    for k in (1, 32)
  ]
  assert runs[0].tokens == runs[1].tokens
  forced = 0
  for p, want, got, lps in zip(ps, free.tokens, runs[1].tokens, runs[1].logprobs):
    if 9 in want[:7]:  # closed by itself within the budget: nothing forced, nothing capped
      assert got == want
      continue
    forced += 1
    assert got[:6] == want[:6] and got[6] == 9 and len(got) == 11
    full = np.asarray(rsft.token_logprobs(m, np.asarray([p + got])))[0, len(p) - 1 :]
    np.testing.assert_allclose(lps, full, atol=2e-5)  # the forced </think> too: the model's log-prob of it
  assert forced >= 3


def test_a_budget_cut_from_one_generation_equals_a_run_with_that_budget(models):
  """eval.think_budgets' shortcut: cut a full-budget row where the budget would force </think>, append it and
  decode on from that step (start_steps): the tokens a run with think_budget samples, at T 1 with n = 2."""
  import copy

  _, base = models["qwen3"]
  m = copy.copy(base)
  m.tokenizer = _ThinkTokens(7, 9)
  ps = [p + [7] for p in prompts(lengths=(5, 17, 11, 8))]
  kw = dict(temperature=1.0, seed=4, stop_token_ids=[100, 101], options=sampler.Options(n=2))
  free = rsft.generate(m, ps, 40, **kw)
  for budget, answer in ((5, 0), (12, 6)):
    direct = rsft.generate(m, ps, 40, think_budget=budget, answer_budget=answer, **kw)
    rows, cuts = [], []
    for r, tokens in enumerate(free.tokens):
      cut = sampler.over_budget(ps[r // 2], tokens, budget, 7, 9)
      if cut is not None:
        rows.append(r)
        cuts.append(tokens[:cut] + [9])
    assert rows, budget
    steps = [len(c) for c in cuts]
    rooms = [min(40 - k, answer or 40) for k in steps]  # the direct run's cap after its forced </think>
    again = rsft.generate(
      m,
      [ps[r // 2] + c for r, c in zip(rows, cuts)],
      rooms,
      think_budget=budget,
      answer_budget=answer,
      prompt_ids=rows,
      start_steps=steps,
      **dict(kw, options=None),
    )
    for k, r in enumerate(rows):
      assert cuts[k] + again.tokens[k] == direct.tokens[r], (budget, r)
    for r in set(range(len(free.tokens))) - set(rows):
      assert free.tokens[r] == direct.tokens[r]


def test_a_thinking_budget_arms_when_the_row_opens_its_think_block(models):
  import copy

  _, base = models["qwen3"]
  m = copy.copy(base)
  ps = prompts(lengths=(6, 9))
  free = rsft.generate(m, ps, 20, stop_token_ids=[])  # greedy: the token each row emits at step 2 is its "<think>"
  armed = 0
  for row, p in zip(free.tokens, ps):
    if row[2] in p:
      continue  # the prompt would hold an open <think>: another test's case
    m.tokenizer = _ThinkTokens(row[2], 1 if row[2] != 1 else 2)
    got = rsft.generate(m, [p], 20, stop_token_ids=[], think_budget=3).tokens[0]
    close = m.tokenizer.ids["</think>"]
    first = row.index(row[2])
    if close in row[first + 1 : first + 4]:
      continue  # closed by itself within the budget
    assert got[: first + 4] == row[: first + 4] and got[first + 4] == close  # 3 thinking tokens after <think>
    armed += 1
  assert armed >= 1


def test_thinking_budgets_are_checked_up_front(models):
  import copy

  _, base = models["qwen3"]
  m = copy.copy(base)
  m.tokenizer = None
  with pytest.raises(ValueError, match="no single <think> / </think> token"):
    rsft.generate(m, [[3, 4]], 8, think_budget=4)
  m.tokenizer = _ThinkTokens(7, 9)
  with pytest.raises(ValueError, match="think_budget=8 must be below max_new_tokens=8"):
    rsft.generate(m, [[3, 4]], 8, think_budget=8)
  with pytest.raises(ValueError, match="answer_budget=3 needs sample.think_budget"):
    rsft.generate(m, [[3, 4]], 8, answer_budget=3)


def test_a_prompt_longer_than_the_context_is_refused_naming_it(models):
  """No silent run past RoPE's trained positions: the row and the setting are named; with max_total_tokens the
  row gets an empty output instead (the sweep's per-item behaviour)."""
  _, m = models["qwen3"]
  ctx = m.config.max_position_embeddings
  ps = [[1, 2, 3], [5] * (ctx + 1)]
  with pytest.raises(
    ValueError,
    match=rf"prompt 1 has {ctx + 1} tokens, more than the model's context \("
    rf"max_position_embeddings={ctx}",
  ):
    rsft.generate(m, ps, 4, stop_token_ids=[])
  res = rsft.generate(m, ps, [4, 2], stop_token_ids=[], max_total_tokens=ctx)
  assert len(res.tokens[0]) == 4 and res.tokens[1] == [] and res.finish_reason == ["length", "length"]
