"""Continuous-batching KV-cache sampler (rsft.generate): up to `Options.max_num_seqs` sequences decode at once and a
waiting prompt is admitted the moment slots free up (vLLM's scheduling), over a paged KV cache.

Three parts: the device programs (rsft.infer.engine: prefill, admit, decode, compaction, swaps, over a typed
DecodeState), the host bookkeeping (rsft.infer.scheduler: slots, page tables, admission, preemption, compaction)
and here the plan of a call (slots, pages) and the loop that feeds one to the other. Pages come from the device
memory left after the weights (`memory_utilization`, vLLM's gpu_memory_utilization); when they run out the
youngest sequence is swapped out and resumes later: never an OOM, never a different token.

Prompts are prefilled whole (a group per length bucket, then moved into pages) or, with prefix caching or chunked
prefill, written into their pages in pieces (engine.extend) between decode calls, sharing cached prefix pages.
A row's tokens depend on nothing but itself, so any admission order, max_num_seqs, page budget, compaction,
preemption, prefix cache or prefill chunking gives the same tokens (log-probs equal to float32 rounding: XLA may sum
a matmul in another order for another batch size; tested with 1, 7 and 32 slots and under preemption). Per-row
temperature / top-p / top-k / penalties / token limits are arrays (no recompiles when they change); presence /
frequency penalties (vLLM's, over the row's output tokens) keep a [rows, V] count table and thinking budgets a
per-row step, so they are static switches.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from rsft import distributed, hardware, sharding
from rsft.infer import engine as engine_lib
from rsft.infer import scheduler as sched_lib
from rsft.infer.engine import NEVER, Plan, ThinkBudget
from rsft.models.model import abstract_model


@dataclasses.dataclass(frozen=True)
class Options:
  n: int = 1  # samples per prompt (one prefill, its cache copied into n slots)
  top_k_cap: int = 64  # static bound on top-k (top-p is over the whole vocabulary); >= the largest top_k
  prompt_buckets: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
  chunk_steps: int = 256  # most decode steps per host round trip (admission, progress)
  pad_id: int = 0
  prefill_chunk: int = 512  # prompt tokens per prefill piece (bounds attention memory); 0 = whole prompt
  max_num_seqs: int = 256  # sequences decoding at once (slots); fewer when the call has fewer
  page_size: int = 128  # cache columns per KV page (and per attention block)
  kv_pages: int = 0  # usable pages per data shard; 0 = from device memory (every slot's whole length
  # where the device has no fixed budget: CPU)
  memory_utilization: float = 0.9  # share of device memory for weights + sampler state (vLLM's)
  prefill_tokens: int = 16384  # prompt tokens (bucketed) per prefill call: bounds its memory
  refill_rows: int = 0  # finished rows that end a decode chunk to admit waiting prompts; 0 = n
  schedule: str = "continuous"  # continuous | static: admit only into an empty engine, so a batch runs until
  # its longest row stops (the old path; bench/eval_throughput.py compares)
  prefix_cache: bool = False  # share full prompt pages across prompts by a hash of their prefix (vLLM's
  # automatic prefix caching); prompts then go through the paged prefill
  chunked_prefill: int = 0  # prompt tokens per paged-prefill piece, interleaved with decode steps so a long
  # prompt never stalls the decoding rows (vLLM's chunked prefill); 0 = off
  interleave_steps: int = 16  # decode steps between two rounds of prefill pieces (chunked_prefill)


@dataclasses.dataclass
class GenerateResult:
  tokens: list[list[int]]  # generated ids, stop token included when hit
  logprobs: list[list[float]]  # model log-prob of each generated id
  finish_reason: list[str]  # "stop" | "length"
  preemptions: int = 0  # sequences swapped out for lack of KV pages (and resumed)
  decode_steps: int = 0  # decode steps run
  row_steps: int = 0  # decode steps x the rows each ran over (occupancy = tokens / row_steps)
  slots: int = 0  # sequences that could decode at once
  first_token_s: list[float] = dataclasses.field(default_factory=list)  # per row: seconds from the call's start
  # until its first token reached the host (time to first token)
  prefix_hits: int = 0  # prompt tokens whose cache came from the prefix cache or a sibling's prefill


def _bucket(length: int, buckets: Sequence[int]) -> int:
  return next((b for b in sorted(buckets) if b >= length), length)


def _pow2_floor(x: int) -> int:
  return 1 << (max(1, x).bit_length() - 1)


def _pow2_ceil(x: int) -> int:
  return 1 << max(0, x - 1).bit_length()


def plan(
  cfg: Any,
  dtype: Any,
  mesh: Any,
  rows: int,
  longest_prompt: int,
  max_columns: int,
  n: int,
  opts: Options,
  memory_bytes: float | None,
  agree: Callable[[int], int] = int,
) -> Plan:
  """Slots = min(max_num_seqs, rows), at least n, a multiple of the data shards. Pages per shard: opts.kv_pages,
  else what `memory_utilization` of one device holds after the weights, the slots' logits / count tables and a
  prefill group's cache (twice, for its temporaries), at most every slot's whole length (`agree` makes every
  process take the same count before it is checked). At least one row's whole length, so that preemption can
  always finish the longest sequence alone, and a prompt's n samples (each its own copy of the prompt and a page
  of room) in an empty engine."""
  shards = sharding.batch_multiple(mesh)
  slots = max(n, min(opts.max_num_seqs, rows))  # a prompt's n samples start together
  slots += -slots % shards
  page = opts.page_size
  pages_per_row = -(-max_columns // page)
  bucket = _bucket(longest_prompt, opts.prompt_buckets)
  prefill_prompts = min(_pow2_floor(opts.prefill_tokens // bucket), _pow2_ceil(-(-slots // n)))
  full = slots // shards * pages_per_row + 1
  if opts.kv_pages:
    pages = opts.kv_pages + 1
  elif memory_bytes is None:
    pages = full
  else:
    item = jnp.dtype(dtype).itemsize
    tensor = mesh.shape.get("tensor", 1) if mesh is not None else 1
    kv_split = tensor if cfg.num_kv_heads % tensor == 0 else 1
    weights = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_model(cfg, dtype, dtype)[1])) * item / tensor
    column = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * item / kv_split  # K and V of one position
    rows_state = slots / shards * (3 * cfg.vocab_size * 4 + 4 * opts.chunk_steps * 8)
    prefill = 2 * column * prefill_prompts * bucket / shards
    budget = memory_bytes * opts.memory_utilization - weights - rows_state - prefill
    pages = agree(min(full, int(budget // (column * page)) + 1))
  # One prompt's samples in an empty engine: each its prompt + 1 column, and the room kept for each placed before
  # (scheduler._reserve: its next page of columns, if its row reaches that far).
  per_shard, start = -(-n // shards), -(-(longest_prompt + 1) // page)
  samples = per_shard * start + (per_shard - 1) * (-(-min(longest_prompt + 1 + page, max_columns) // page) - start)
  if pages - 1 < max(pages_per_row, samples):
    raise ValueError(
      f"sampling: the KV pages that fit ({max(pages - 1, 0)} of {page} columns per shard) cannot hold one "
      f"sequence of {max_columns} tokens (prompt + max_new_tokens) or {n} samples of a "
      f"{longest_prompt}-token prompt; raise sample.mesh.tensor, Options.kv_pages / memory_utilization, "
      "or lower max_new_tokens."
    )
  return Plan(slots, shards, page, pages_per_row, pages, prefill_prompts)


Finished = Callable[[list[tuple[int, list[int], list[float], str]]], None]


def generate(
  model: Any,
  prompts: Sequence[Sequence[int]],
  max_new_tokens: Any,
  temperature: Any = 0.0,
  top_p: Any = 1.0,
  top_k: Any = 0,
  seed: int = 0,
  stop_token_ids: Sequence[int] | None = None,
  options: Options | None = None,
  vocab_limit: int | None = None,
  prompt_ids: Sequence[int] | None = None,
  presence_penalty: Any = 0.0,
  frequency_penalty: Any = 0.0,
  max_total_tokens: int | None = None,
  on_finished: Finished | None = None,
  think_budget: int = 0,
  answer_budget: int = 0,
  start_steps: Any = None,
) -> GenerateResult:
  """Samples continuations of token-id prompts (any number) with continuous batching; rsft.generate.

  temperature / top_p / top_k / presence_penalty / frequency_penalty: scalars or one value per prompt (0
  temperature = greedy; top-p is exact over the whole vocabulary; changing them never recompiles).
  stop_token_ids default to the model's (generation_config.json, else EOS + Qwen's stops).
  options: Options (n samples per prompt, max_num_seqs, pages, top-k cap, prompt buckets, chunk steps).
  Returns .tokens, .logprobs (model log-prob of each token) and .finish_reason ("stop" | "length"), with
  n consecutive entries per prompt. Runs on the model's mesh (slots over data, KV heads over tensor); see
  rsft.reshard for a sampling mesh.

  presence_penalty / frequency_penalty: scalars or one per prompt (vLLM semantics, output tokens only).
  max_total_tokens: caps prompt + output per prompt (vLLM's max_model_len): a prompt of P tokens gets at most
  min(max_new_tokens, max_total_tokens - P) new tokens, then finishes with "length".
  prompt_ids: a stable id per prompt (default: its index). Sample j of prompt i draws its randomness from
  (seed, prompt_ids[i] * n + j, step), so a run over another subset of prompts (a resumed one) samples exactly
  the same tokens.
  on_finished: called with [(row, tokens, logprobs, finish_reason)] as sequences finish (row = prompt index * n +
  sample), so a caller can write each one at once.
  think_budget: tokens a row may think (inside `<think>`) before `</think>` is forced (ThinkBudget; 0 = off), then
  at most answer_budget more tokens (0 = up to max_new_tokens). Needs `<think>` / `</think>` in the tokenizer.
  start_steps: per prompt (or one), the step its random stream starts at (default 0): a prompt that is a row's
  prompt + its first s tokens, started at s, samples what that row sampled after them (no penalties: their counts
  start empty; a think_budget counts steps from 0). max_new_tokens may be one per prompt. Thinking budgets
  (rsft.evals' eval.think_budgets) re-decode answers this way.
  """
  if model.config.head != "lm":
    raise ValueError("generate needs a CausalLM checkpoint; this one is a reward (score) model.")
  if stop_token_ids is None:
    stop_token_ids = getattr(model, "stop_token_ids", None) or []
  opts = options or Options()
  if opts.schedule not in ("continuous", "static"):
    raise ValueError(f"Options.schedule={opts.schedule!r}; choose continuous or static")
  if not prompts or any(len(p) == 0 for p in prompts):
    raise ValueError("generate needs at least one prompt, and every prompt needs at least one token.")
  n, real = opts.n, len(prompts)
  new = np.broadcast_to(np.asarray(max_new_tokens, np.int64), (real,))  # one cap, or one per prompt
  if new.min() < 1:
    raise ValueError(f"max_new_tokens must be >= 1; prompt {int(new.argmin())} has {int(new.min())}.")
  uids = np.arange(real) if prompt_ids is None else np.asarray(prompt_ids, np.int64)
  if uids.shape != (real,):
    raise ValueError(f"prompt_ids has {uids.size} entries for {real} prompts.")
  cfg = model.config
  lengths = np.asarray([len(x) for x in prompts])
  max_pos = getattr(cfg, "max_position_embeddings", None)
  if max_pos and not max_total_tokens and lengths.max() > max_pos and not getattr(cfg, "rope_dynamic", None):
    i = int(lengths.argmax())
    raise ValueError(
      f"generate: prompt {i} has {int(lengths[i])} tokens, more than the model's context "
      f"(max_position_embeddings={max_pos}, {model.path}); shorten it, or set max_total_tokens (such "
      "prompts then get an empty output, finish_reason 'length')."
    )
  if max_pos and lengths.max() + new.max() > max_pos:
    logging.warning(
      "generate: prompt + max_new_tokens exceeds max_position_embeddings=%d; RoPE is used beyond the trained context.",
      max_pos,
    )
  per_prompt = lambda v, dtype: np.broadcast_to(np.asarray(v, dtype), (real,))
  params = {
    k: per_prompt(v, dt)
    for k, v, dt in (
      ("temperature", temperature, np.float32),
      ("top_p", top_p, np.float32),
      ("top_k", top_k, np.int32),
      ("presence", presence_penalty, np.float32),
      ("frequency", frequency_penalty, np.float32),
      ("start", 0 if start_steps is None else start_steps, np.int32),
    )
  }
  if params["top_k"].max() > opts.top_k_cap:
    raise ValueError(f"top_k={int(params['top_k'].max())} exceeds options.top_k_cap={opts.top_k_cap}; raise the cap.")
  room = new.copy() if not max_total_tokens else np.minimum(new, max_total_tokens - lengths)
  if (room < 1).any():
    logging.warning(
      "generate: %d prompt(s) fill max_total_tokens=%d (the longest has %d tokens): their output is "
      "empty, finish_reason 'length'.",
      int((room < 1).sum()),
      max_total_tokens,
      int(lengths.max()),
    )
  penalties = bool(np.any(params["presence"] != 0) or np.any(params["frequency"] != 0))
  budget = _think_budget(model, think_budget, answer_budget, int((params["start"] + new).max()))
  think_at = (
    None
    if budget is None
    else np.asarray([budget.think if _opens_thinking(p, budget) else NEVER for p in prompts], np.int64)
  )
  todo = [i for i in range(real) if room[i] >= 1]
  results: list[tuple[list[int], list[float], str] | None] = [None] * (real * n)
  for i in set(range(real)) - set(todo):
    results[i * n : (i + 1) * n] = [([], [], "length") for _ in range(n)]
  if on_finished is not None and len(todo) < real:
    on_finished([(r, *results[r]) for r in range(real * n) if results[r] is not None])
  if not todo:
    return GenerateResult(*map(list, zip(*results)), first_token_s=[0.0] * (real * n))

  memory = hardware.device_memory_bytes() if opts.kv_pages == 0 else None
  dtype = jax.tree.leaves(model.params)[0].dtype
  # Every process must run the same program: the smallest pool of all (memory is per process).
  # Row length from the prompt bucket, as the prefill's: calls whose prompts share a bucket share every compile.
  longest = int(lengths[todo].max())
  columns = _bucket(longest, opts.prompt_buckets) + int(new.max())
  the_plan = plan(
    cfg, dtype, model.mesh, len(todo) * n, longest, columns, n, opts, memory, distributed.min_over_processes
  )
  engine = _Engine(model, the_plan, opts, params, uids, penalties, seed, stop_token_ids, vocab_limit, budget, think_at)
  book = sched_lib.Scheduler(
    the_plan.slots,
    the_plan.shards,
    the_plan.pages_per_shard,
    the_plan.page_size,
    the_plan.pages_per_row,
    prefix_cache=opts.prefix_cache,
  )
  first_token = [0.0] * (real * n)
  _run(engine, book, collections.deque(todo), prompts, lengths, room, results, first_token, on_finished)
  logging.log_every_n_seconds(
    logging.INFO,
    "sampler: %d slots, %d pages x %d per shard, %d preemptions; compiles so far %s",
    60,
    the_plan.slots,
    the_plan.pages_per_shard,
    the_plan.page_size,
    book.preemptions,
    dict(engine_lib.COMPILES),
  )
  return GenerateResult(
    *map(list, zip(*results)),
    preemptions=book.preemptions,
    decode_steps=engine.steps,
    row_steps=engine.row_steps,
    slots=the_plan.slots,
    first_token_s=first_token,
    prefix_hits=engine.prefix_hits,
  )


def _run(
  engine: _Engine,
  book: sched_lib.Scheduler,
  queue: collections.deque,
  prompts,
  lengths: np.ndarray,
  room: np.ndarray,
  results: list,
  first_token: list[float],
  on_finished: Finished | None,
) -> None:
  """The host loop: admit what fits, give pages (preempting when they run out), prefill (paged: a round of
  pieces, or all of them), decode a chunk, report the sequences that finished; until every prompt's samples are
  done."""
  opts, the_plan, n = engine.opts, engine.plan, engine.opts.n
  progress = tqdm.tqdm(total=len(queue) * n, desc="generate", unit="seq", disable=len(queue) * n < 64, leave=False)
  start = time.perf_counter()
  while queue or book.running or book.swapped:
    if opts.schedule == "continuous" or not book.running:  # static: into an empty engine (swapped rows first)
      _admit_waiting(engine, book, queue, prompts, lengths, room)
    if not book.running:
      raise RuntimeError("generate: no sequence could be placed (the plan's pages cannot hold one prompt).")
    for seq in book.grow(opts.chunk_steps):
      engine.swap_out(seq)
      book.evict(seq)
    while engine.prefill_round(book, prompts) and not opts.chunked_prefill:
      pass  # whole prompts: rounds until every pending row (siblings after their lead) decodes
    prefilling = any(book.pending(q) for q in book.running.values())
    waiting = bool(queue or book.swapped or prefilling) and opts.schedule == "continuous"
    active, tail = the_plan.slots, opts.schedule == "continuous" and not waiting
    if tail:  # no prompt waits: the live rows run in the smallest batch that holds them
      engine.move(book.compact())
      active = the_plan.shards * min(_pow2_ceil(book.busiest()), the_plan.slots // the_plan.shards)
    finished = []
    steps = opts.interleave_steps if prefilling else opts.chunk_steps
    for seq in engine.decode(book, (opts.refill_rows or n) if waiting else the_plan.slots + 1, active, tail, steps):
      reason = "stop" if seq.tokens and seq.tokens[-1] in engine.stop_set else "length"
      results[seq.row] = (seq.tokens, seq.logprobs, reason)
      first_token[seq.row] = seq.first_token_at - start
      finished.append((seq.row, seq.tokens, seq.logprobs, reason))
      book.release(seq)
    if finished and on_finished is not None:
      on_finished(finished)
    progress.update(len(finished))
  progress.close()


def _admit_waiting(
  engine: _Engine, book: sched_lib.Scheduler, queue: collections.deque, prompts, lengths: np.ndarray, room: np.ndarray
) -> None:
  """Swapped-out sequences resume first (oldest first); then waiting prompts, in order, while their n samples fit,
  prefilled in groups that share a length bucket."""
  n, opts = engine.opts.n, engine.opts
  while book.swapped:
    seq = book.resume()
    if seq is None:
      break
    engine.swap_in(seq)
  groups = collections.defaultdict(list)  # prompt bucket -> [(prompt, its n sequences)]
  seated = []  # paged prefill: the prompts' rows are seated now and written by prefill rounds
  while queue and not book.swapped:
    i = queue[0]
    keys = _prefix_keys(prompts[i], opts.page_size) if opts.prefix_cache else ()
    seqs = [sched_lib.Sequence(i * n + j, int(lengths[i]), int(room[i]), 0, keys) for j in range(n)]
    if not book.admit(seqs, engine.paged):
      break
    (seated if engine.paged else groups[_bucket(int(lengths[i]), opts.prompt_buckets)]).append((queue.popleft(), seqs))
  if seated:
    engine.seat(seated)
  for bucket, admitted in groups.items():
    for start in range(0, len(admitted), engine.plan.prefill_prompts):
      engine.admit(prompts, admitted[start : start + engine.plan.prefill_prompts], bucket, book)


def _prefix_keys(prompt: Sequence[int], page_size: int) -> tuple[bytes, ...]:
  """The prefix-cache key of each full page a prompt can share ((len - 1) // page_size: its last token is always
  computed): a digest of the page's tokens chained to the previous page's key, so a key names the whole prefix."""
  keys, key = [], b""
  tokens = np.asarray(prompt, np.int64)
  for start in range(0, (len(tokens) - 1) // page_size * page_size, page_size):
    key = hashlib.blake2b(key + tokens[start : start + page_size].tobytes(), digest_size=16).digest()
    keys.append(key)
  return tuple(keys)


def _think_budget(model, think: int, answer: int, max_new_tokens: int) -> ThinkBudget | None:
  """The call's ThinkBudget, or None when off; a budget the call cannot honour is refused up front."""
  if think < 0 or answer < 0:
    raise ValueError(f"sample.think_budget={think} and sample.answer_budget={answer} must be >= 0.")
  if not think:
    if answer:
      raise ValueError(
        f"sample.answer_budget={answer} needs sample.think_budget > 0 (it counts after a forced </think>)."
      )
    return None
  if think >= max_new_tokens:
    raise ValueError(
      f"sample.think_budget={think} must be below max_new_tokens={max_new_tokens}: a budget the "
      "cap reaches first never forces </think>."
    )
  return ThinkBudget(think, answer, *think_token_ids(model, f"sample.think_budget={think}"))


def think_token_ids(model: Any, setting: str) -> tuple[int, int]:
  """The ids of `<think>` and `</think>`; a tokenizer without them single is refused, naming the setting."""
  tokenizer = model.tokenizer
  ids = [tokenizer.convert_tokens_to_ids(t) if tokenizer is not None else None for t in ("<think>", "</think>")]
  unknown = getattr(tokenizer, "unk_token_id", None)
  if any(i is None or i == unknown for i in ids):
    raise ValueError(
      f"{setting}: the model's tokenizer has no single <think> / </think> token ({model.path}); "
      "thinking budgets need a thinking model's tokenizer (Qwen3's)."
    )
  return ids[0], ids[1]


def _opens_thinking(prompt: Sequence[int], budget: ThinkBudget) -> bool:
  """Whether the prompt ends inside an open <think> block (a chat template that starts the thinking)."""
  opened = max((i for i, t in enumerate(prompt) if t == budget.start), default=-1)
  return opened > max((i for i, t in enumerate(prompt) if t == budget.end), default=-1)


def over_budget(prompt: Sequence[int], tokens: Sequence[int], budget: int, start: int, end: int) -> int | None:
  """Where a generated row would have had `</think>` forced under a thinking budget (ThinkBudget's rule: after
  `budget` thinking tokens, counted from the first token when the prompt opens the block, else from the token
  after the row's `<think>`), or None when it never thinks that long (its own close, or no thinking). A row cut
  there, `</think>` appended and decoded on from step cut + 1, is the row a run with that budget samples."""
  if _opens_thinking(prompt, ThinkBudget(budget, 0, start, end)):
    begin = 0
  else:
    begin = next((i + 1 for i, t in enumerate(tokens) if t == start), None)
    if begin is None:
      return None
  closed = next((i for i in range(begin, len(tokens)) if tokens[i] == end), len(tokens))
  cut = begin + budget
  return cut if cut <= closed and cut < len(tokens) else None  # a row that ended first is what the run gives


class _Engine:
  """The device state of one generate call and the host copies it needs: the jitted steps, fed by the book."""

  def __init__(
    self,
    model,
    the_plan: Plan,
    opts: Options,
    params: dict[str, np.ndarray],
    uids: np.ndarray,
    penalties: bool,
    seed: int,
    stop_token_ids: Sequence[int],
    vocab_limit: int | None,
    budget: ThinkBudget | None = None,
    think_at: np.ndarray | None = None,
  ):
    self.model, self.plan, self.opts, self.params, self.uids = model, the_plan, opts, params, uids
    self.think, self.think_at = (None if budget is None else budget.arrays()), think_at
    self.state = engine_lib.empty_state(
      model.graphdef, model.params, plan=the_plan, penalties=penalties, thinking=budget is not None
    )
    self.stops = jnp.asarray(list(stop_token_ids) if stop_token_ids else [-1], jnp.int32)
    self.stop_set = set(int(t) for t in stop_token_ids or [])
    limit = vocab_limit or (len(model.tokenizer) if model.tokenizer is not None else model.config.vocab_size)
    self.vocab_limit = jnp.int32(min(limit, model.config.vocab_size))
    self.seed = jnp.uint32(seed)
    self.k_cap = min(opts.top_k_cap, model.config.vocab_size)
    self.paged = opts.prefix_cache or opts.chunked_prefill > 0  # prompts written by extend, not prefill + admit
    self.steps = 0
    self.row_steps = 0  # decode steps x the rows each ran over (its batch)
    self.prefix_hits = 0  # prompt columns seated already written (prefix cache, a sibling's prefill)

  def admit(self, prompts, admitted: list[tuple[int, list[Any]]], bucket: int, book) -> None:
    """One prefill for these prompts (padded to a power-of-two count: few compiles), then their samples' slots."""
    opts = self.opts
    g = _pow2_ceil(len(admitted))
    ids = np.full((g, bucket), opts.pad_id, np.int32)
    mask = np.zeros((g, bucket), np.int32)
    for r, (i, _) in enumerate(admitted):
      ids[r, bucket - len(prompts[i]) :], mask[r, bucket - len(prompts[i]) :] = prompts[i], 1
    put = lambda x: sharding.put_batch(self.model.mesh, x)
    cache, logits = engine_lib.prefill(
      self.model.graphdef, self.model.params, put(ids), put(mask), chunk=opts.prefill_chunk
    )
    slots, rows_arrays, think_at = self._row_values(admitted, g)
    lens = np.asarray([len(prompts[i]) for i, _ in admitted] + [1] * (g - len(admitted)), np.int32)
    self.state = engine_lib.admit(
      self.state, cache, logits, jnp.asarray(lens), slots, self._table(book), rows_arrays, think_at, n=self.opts.n
    )

  def seat(self, admitted: list[tuple[int, list[Any]]]) -> None:
    """The paged prefill's admission: the rows' sampling state, padded to a power-of-two prompt count."""
    self.prefix_hits += sum(seq.computed for _, seqs in admitted for seq in seqs)
    self.state = engine_lib.seat(self.state, *self._row_values(admitted, _pow2_ceil(len(admitted))))

  def _row_values(self, admitted: list[tuple[int, list[Any]]], g: int):
    """(slots [g * n], the sampling parameters in SAMPLING_FIELDS order, think_at or None) of admitted prompts'
    samples; padding rows get slot = the slot count (dropped)."""
    n = self.opts.n
    slots = np.full(g * n, self.plan.slots, np.int32)
    columns = {
      k: np.zeros(g * n, np.int32 if k in ("top_k", "row_id", "limit", "step") else np.float32)
      for k in engine_lib.SAMPLING_FIELDS
    }
    for r, (i, seqs) in enumerate(admitted):
      for j, seq in enumerate(seqs):
        slots[r * n + j] = seq.slot
        for key in ("temperature", "top_p", "top_k", "presence", "frequency"):
          columns[key][r * n + j] = self.params[key][i]
        start = self.params["start"][i]  # the row's random stream (and its token count) resume there
        columns["row_id"][r * n + j], columns["step"][r * n + j] = self.uids[i] * n + j, start
        columns["limit"][r * n + j] = start + seq.limit
    think_at = None
    if self.think_at is not None:
      think_at = np.full(g * n, NEVER, np.int32)
      for r, (i, _) in enumerate(admitted):
        think_at[r * n : (r + 1) * n] = self.think_at[i]
      think_at = jnp.asarray(think_at)
    return jnp.asarray(slots), tuple(jnp.asarray(columns[k]) for k in engine_lib.SAMPLING_FIELDS), think_at

  def prefill_round(self, book, prompts) -> bool:
    """One piece (chunked_prefill tokens, else the rest of the prompt) of each pending row that can run (a sibling
    once its lead has written the pages they share), oldest first, at most prefill_tokens in all when chunked;
    pieces share an extend call per length bucket, laid out by shard. Returns whether any piece ran."""
    opts, plan = self.opts, self.plan
    ready = sorted((q for q in book.running.values() if book.pending(q) and book.ready(q)), key=lambda q: q.admitted)
    picks, used = collections.defaultdict(list), 0
    for q in ready:
      take = min(opts.chunked_prefill or q.prompt_len, q.prompt_len - q.computed)
      if opts.chunked_prefill and used and used + take > opts.prefill_tokens:
        break
      used += take
      picks[_bucket(take, opts.prompt_buckets)].append((q, take))
    for width, pieces in picks.items():
      per_call = max(1, _pow2_floor(opts.prefill_tokens // width) // plan.shards)  # pieces per shard and call
      by_shard = [[p for p in pieces if book.shard(p[0].slot) == d] for d in range(plan.shards)]
      for start in range(0, max(map(len, by_shard)), per_call):
        self._extend([group[start : start + per_call] for group in by_shard], width, book, prompts)
    return bool(picks)

  def _extend(self, by_shard: list[list[tuple[Any, int]]], width: int, book, prompts) -> None:
    """One extend call: shard d's pieces in rows [d * r, (d + 1) * r) (attention.Pages' layout), r a power of two."""
    n, opts = self.opts.n, self.opts
    r = _pow2_ceil(max(map(len, by_shard)))
    rows = r * len(by_shard)
    ids, valid = np.full((rows, width), opts.pad_id, np.int32), np.zeros((rows, width), bool)
    slots, ends = np.full(rows, self.plan.slots, np.int32), np.zeros(rows, np.int32)
    for d, group in enumerate(by_shard):
      for k, (q, take) in enumerate(group):
        row = d * r + k
        ids[row, width - take :] = prompts[q.row // n][q.computed : q.computed + take]
        valid[row, width - take :], slots[row], ends[row] = True, q.slot, q.computed + take
    put = lambda x: sharding.put_batch(self.model.mesh, x)
    last = np.asarray(
      [slots[i] < self.plan.slots and ends[i] == book.running[slots[i]].prompt_len for i in range(rows)]
    )
    self.state = engine_lib.extend(
      self.model.graphdef,
      self.model.params,
      self.state,
      put(ids),
      put(valid),
      put(slots),
      self._table(book),
      put(ends),
      put(last),
    )
    for group in by_shard:
      for q, take in group:
        q.computed += take
        if not book.pending(q):
          q.waits = []

  def _table(self, book) -> jax.Array:
    return jnp.asarray(np.asarray(book.table(), np.int32))

  def _pages(self, pages: list[int]) -> jax.Array:
    """A sequence's pages padded with scratch to a power-of-two count (few compiles of the swaps)."""
    width = _pow2_ceil(len(pages))
    return jnp.asarray(pages + [0] * (width - len(pages)), jnp.int32)

  def swap_out(self, seq) -> None:
    """Its written pages and row state to host memory (kept on the sequence until it resumes)."""
    used = -(-seq.length // self.plan.page_size)
    self.state, saved = engine_lib.swap_out(self.state, jnp.int32(seq.slot), self._pages(seq.pages[:used]))
    seq.saved = (used, jax.tree.map(sharding.to_host, saved))  # gathered: KV heads may span hosts

  def swap_in(self, seq) -> None:
    used, saved = seq.saved  # it holds at least `used` pages again (its length + 1 columns)
    self.state = engine_lib.swap_in(self.state, jnp.int32(seq.slot), self._pages(seq.pages[:used]), saved)
    seq.saved = None

  def move(self, moves: list[tuple[int, int]]) -> None:
    """Row state follows a compaction's moves (src slot, dst slot), padded to a power-of-two count."""
    if not moves:
      return
    width = _pow2_ceil(len(moves))
    src, dst = zip(*moves, *[(0, self.plan.slots)] * (width - len(moves)))
    self.state = engine_lib.move_rows(self.state, jnp.asarray(src, jnp.int32), jnp.asarray(dst, jnp.int32))

  def decode(self, book, refill_at: int, active: int, shrink: bool, steps: int) -> list[Any]:
    """One decode call of at most `steps` steps over the first `active` slots (active_rows); appends each running
    sequence's new tokens; returns the ones that finished. With `shrink`, a batch that can still halve returns as
    soon as no shard has more than half of its active rows live (the host then compacts them)."""
    shrink_at = active // self.plan.shards // 2 if shrink and active > self.plan.shards else -1
    self.state, out = engine_lib.decode(
      self.model.graphdef,
      self.model.params,
      self.state,
      self._table(book),
      jnp.asarray(book.capacity(), jnp.int32),
      jnp.int32(refill_at),
      jnp.int32(shrink_at),
      self.stops,
      self.seed,
      self.vocab_limit,
      self.think,
      jnp.int32(steps),
      k_cap=self.k_cap,
      chunk=self.opts.chunk_steps,
      pad_id=self.opts.pad_id,
      active=active,
    )
    produced, tokens, logprobs, done = (
      sharding.to_host(x) for x in (out["produced"], out["tokens"], out["logprobs"], self.state.done)
    )
    self.steps += int(out["steps"])
    self.row_steps += int(out["steps"]) * active
    position = {slot: i for i, slot in enumerate(engine_lib.active_rows(self.plan.slots, self.plan.shards, active))}
    finished, now = [], time.perf_counter()
    for slot, seq in list(book.running.items()):
      i = position[slot]
      k = int(produced[i])
      if k and not seq.tokens:
        seq.first_token_at = now
      seq.tokens += tokens[i, :k].tolist()
      seq.logprobs += logprobs[i, :k].tolist()
      seq.length += k
      if done[slot] and not book.pending(seq):
        finished.append(seq)
    return finished
