"""Tokenize once, then a grain pipeline: shuffle? -> epochs -> pad or pack -> batch -> global arrays.

On a multi-host job each process renders and tokenizes only its own share of the rows (row i belongs to process
i % process_count), then shuffles and packs that share; the global batch is the processes' batches side by side.
Packing makes the number of batches depend on the share, so the step count is agreed across processes (the
smallest) by the caller (rsft.train.loop via rsft.distributed.min_over_processes).

Targets are shifted *per example, before packing* (inputs = t[:-1], targets = t[1:], weights = w[1:]), so no
target ever crosses a segment boundary (the torchtune#1177 / MaxText packing leak). Packed rows carry segment ids
(0 = padding) and per-segment positions; padded rows are the study-faithful layout (one example per row).
The grain iterator's state is plain JSON and goes into every checkpoint, so a resume yields exactly the next batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import grain
import jax
import numpy as np
from absl import logging
from grain.experimental import FirstFitPackIterDataset

from rsft import distributed
from rsft.data import chat, readers


@dataclasses.dataclass
class TokenizedData:
  tokens: np.ndarray  # int32, all examples concatenated
  weights: np.ndarray  # uint8 loss weights, aligned with tokens
  offsets: np.ndarray  # int64 [n + 1]
  stats: dict[str, Any]  # counts; "sources": the source names (readers.source_name) in first-seen order
  sources: np.ndarray | None = None  # int32 [n]: each example's index into stats["sources"]

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = self.offsets[i], self.offsets[i + 1]
    return self.tokens[a:b], self.weights[a:b]


def _fingerprint(data_cfg: Any, tokenizer: Any, files: list[str]) -> str:
  h = hashlib.sha256()
  for f in files:
    h.update(f.encode())
    if os.path.exists(f):
      st = os.stat(f)
      h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
  keys = ("format", "max_length", "truncation", "eos_token", "strip_default_system", "on_error", "limit_rows", "seed")
  h.update(json.dumps({k: data_cfg.get(k) for k in keys}, default=str).encode())
  h.update(b"sources")  # the cache layout: caches written before per-example sources are not read
  h.update(f"{type(tokenizer).__name__}:{len(tokenizer)}:{tokenizer.name_or_path}".encode())
  return h.hexdigest()[:16]


def prepare(
  data_cfg: Any, tokenizer: Any, cache_dir: str | None = None, process_index: int = 0, process_count: int = 1
) -> TokenizedData:
  """Reads, renders and length-filters this process's share of the training set (rows i with
  i % process_count == process_index, after data.limit_rows); cached under cache_dir by content fingerprint."""
  files = readers.resolve_files(data_cfg.train_files)
  share = "" if process_count == 1 else f"-{process_index}of{process_count}"
  cache = os.path.join(cache_dir, f"train-{_fingerprint(data_cfg, tokenizer, files)}{share}.npz") if cache_dir else None
  if cache and os.path.exists(cache):
    with np.load(cache, allow_pickle=False) as z:
      return TokenizedData(z["tokens"], z["weights"], z["offsets"], json.loads(str(z["stats"])), z["sources"])
  examples, read_stats = readers.read(files, data_cfg.format, data_cfg.on_error)
  if data_cfg.get("limit_rows") and data_cfg.limit_rows < len(examples):
    keep = np.sort(np.random.default_rng(data_cfg.seed).choice(len(examples), data_cfg.limit_rows, replace=False))
    examples = [examples[i] for i in keep]
  examples = examples[process_index::process_count]
  eos = chat.eos_id(tokenizer, data_cfg.eos_token)
  tokens, weights, lengths, sources = [], [], [], []
  names = list(dict.fromkeys(readers.source_name(f) for f in files))  # every process: the same list, in file order
  truncated = dropped = 0
  for ex in examples:
    t, w = chat.render(tokenizer, ex.messages, ex.response, eos, data_cfg.strip_default_system)
    if len(t) > data_cfg.max_length:
      if data_cfg.truncation == "drop":
        dropped += 1
        continue
      t, w = t[: data_cfg.max_length], w[: data_cfg.max_length]  # "right", as the study (cuts the EOS too)
      truncated += 1
    tokens.append(t)
    weights.append(w)
    lengths.append(len(t))
    sources.append(names.index(readers.source_name(ex.source)))
  share_note = f" in process {process_index}'s share ({process_count} processes)" if process_count > 1 else ""
  problem = None
  if not tokens:
    problem = f"{files}: no usable training examples{share_note} ({read_stats.skipped} malformed, {dropped} too long)."
  elif not sum(int(w.sum()) for w in weights):
    problem = (
      f"{files}: no response token survives data.max_length={data_cfg.max_length}{share_note} (every "
      "prompt fills it, so the loss would see nothing); raise data.max_length or use data.truncation=drop."
    )
  if problem and process_count == 1:
    raise ValueError(problem)
  if problem:  # the caller raises on every process together (check_shares), so no process waits alone
    logging.error("%s", problem)
    return TokenizedData(np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros(1, np.int64), {"problem": problem})
  lengths = np.asarray(lengths)
  data = TokenizedData(
    np.concatenate(tokens),
    np.concatenate(weights),
    np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    dict(
      rows=read_stats.rows,
      skipped_malformed=read_stats.skipped,
      truncated=truncated,
      dropped_too_long=dropped,
      examples=len(tokens),
      tokens=int(lengths.sum()),
      supervised_fraction=float(np.mean(np.concatenate(weights))),
      length_p50=int(np.percentile(lengths, 50)),
      length_p99=int(np.percentile(lengths, 99)),
      length_max=int(lengths.max()),
      sources=names,
    ),
    np.asarray(sources, np.int32),
  )
  logging.info("training data: %s", data.stats)
  if cache:
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(
      cache + ".tmp.npz",
      tokens=data.tokens,
      weights=data.weights,
      offsets=data.offsets,
      stats=json.dumps(data.stats),
      sources=data.sources,
    )
    os.replace(cache + ".tmp.npz", cache)
  return data


class ShiftedSource:
  """Random-access grain source of shifted examples: all of them, or the `rows` of one source (data.mix), each
  token then tagged with its source's index ("sources") so the realised mixture can be counted."""

  def __init__(self, data: TokenizedData, rows: np.ndarray | None = None, tag: int | None = None):
    self.data, self.rows, self.tag = data, rows, tag

  def __len__(self) -> int:
    return len(self.data) if self.rows is None else len(self.rows)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    t, w = self.data.example(int(i if self.rows is None else self.rows[i]))
    out = {"inputs": t[:-1], "targets": t[1:], "weights": w[1:].astype(np.float32)}
    if self.tag is not None:
      out["sources"] = np.full(len(t) - 1, self.tag, np.int32)
    return out


def parse_mix(mix: str | None) -> dict[str, float] | None:
  """data.mix "math=0.7,code=0.3" -> {"math": 0.7, "code": 0.3}; None or "" -> None."""
  if not mix:
    return None
  out = {}
  for part in mix.split(","):
    name, eq, weight = part.strip().partition("=")
    try:
      value = float(weight)
    except ValueError:
      value = -1.0
    if not eq or not name.strip() or not value >= 0 or name.strip() in out:
      raise ValueError(
        f"data.mix={mix!r}: {part.strip()!r} is not name=weight with a weight >= 0 (each name once), e.g. "
        "'math=0.7,code=0.3'."
      )
    out[name.strip()] = value
  if not sum(out.values()) > 0:
    raise ValueError(f"data.mix={mix!r}: the weights sum to 0.")
  return out


def _mixture(data: TokenizedData, mix: dict[str, float], shuffle: bool, seed: int) -> grain.MapDataset:
  """The sources interleaved in proportion to their weights (grain's deterministic mix), each shuffled with its own
  seed and repeated without end; its position is part of the iterator state, so a resume continues at the row."""
  names = data.stats["sources"]
  unknown, unweighted = sorted(set(mix) - set(names)), sorted(set(names) - set(mix))
  if unknown or unweighted:
    raise ValueError(
      f"data.mix names {sorted(mix)} but the training files are the sources {names} (a file's name without "
      f"extensions): {'unknown ' + str(unknown) if unknown else 'no weight for ' + str(unweighted)}."
    )
  parts, weights = [], []
  for tag, name in enumerate(names):
    rows = np.flatnonzero(data.sources == tag)
    if mix[name] > 0 and not len(rows):
      logging.warning("data.mix: source %r has no rows in this process's share; it is left out here", name)
    if mix[name] == 0 or not len(rows):
      continue
    ds = grain.MapDataset.source(ShiftedSource(data, rows, tag))
    parts.append((ds.shuffle(seed=seed + tag) if shuffle else ds).repeat(None))
    weights.append(mix[name])
  return grain.MapDataset.mix(parts, weights)


def _pad(example: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
  n = len(example["inputs"])
  out = {k: np.zeros(length, v.dtype) for k, v in example.items()}
  for k, v in example.items():
    out[k][:n] = v
  out["segment_ids"] = (np.arange(length) < n).astype(np.int32)
  out["positions"] = np.where(np.arange(length) < n, np.arange(length), 0).astype(np.int32)
  return out


def _from_packed(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = {
    "inputs": example["inputs"],
    "targets": example["targets"],
    "weights": example["weights"],
    "segment_ids": example["inputs_segment_ids"],
    "positions": example["inputs_positions"],
  }
  if "sources" in example:
    out["sources"] = example["sources"]
  return out


def make_dataset(
  data: TokenizedData,
  *,
  seq_len: int,
  per_host_batch: int,
  packing: bool,
  shuffle: bool,
  seed: int,
  num_epochs: int | None,
  mix: dict[str, float] | None = None,
) -> grain.IterDataset:
  """This process's batches of {inputs, targets, weights, segment_ids, positions}, each [per_host_batch, seq_len],
  from its share of the data (prepare). With `mix` ({source: weight}, parse_mix) the sources are interleaved by
  weight without end (num_epochs is ignored) and each batch also has "sources", every token's source index."""
  if mix:
    ds = _mixture(data, mix, shuffle, seed).to_iter_dataset()
  else:
    ds = grain.MapDataset.source(ShiftedSource(data))
    if shuffle:
      ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs).to_iter_dataset()
  if packing:
    lengths = {"inputs": seq_len, "targets": seq_len, "weights": seq_len}
    if mix:
      lengths["sources"] = seq_len
    ds = FirstFitPackIterDataset(ds, length_struct=lengths, num_packing_bins=per_host_batch, shuffle_bins=False)
    ds = ds.map(_from_packed)
  else:
    ds = ds.map(lambda ex: _pad(ex, seq_len))
  return ds.batch(per_host_batch, drop_remainder=True)


def check_shares(data: TokenizedData) -> None:
  """Every process calls this after prepare: if any share is unusable, all of them raise, with this share's reason
  or a pointer to the other process's log (one process raising alone would leave the others in a collective)."""
  problem = data.stats.get("problem")
  if distributed.min_over_processes(0 if problem else 1) == 0:
    raise ValueError(problem or "another process's share of the training data is unusable; see its log.")


def steps_per_run(data: TokenizedData, *, num_epochs: int, per_host_batch: int, packing: bool, **kw) -> int:
  """Batches that `make_dataset` yields from this process's share over `num_epochs`: computed for padding, counted
  for packing. Processes can differ; the run takes the smallest (rsft.distributed.min_over_processes)."""
  if packing:
    return sum(1 for _ in make_dataset(data, num_epochs=num_epochs, per_host_batch=per_host_batch, packing=True, **kw))
  return len(data) * num_epochs // per_host_batch


@dataclasses.dataclass
class Stream:
  """A training run's batches on this process: the grain iterator (its state goes into every checkpoint), the step
  count every process agrees on, and with data.mix the source names a batch's "sources" indexes."""

  iterator: Any
  total_steps: int
  sources: list[str] | None = None


def training_stream(
  data_cfg: Any, tokenizer: Any, *, global_batch: int, num_steps: int | None, num_epochs: int, cache_dir: str
) -> Stream:
  """This process's batches for a training run, and the step count every process agrees on.

  Args:
    data_cfg: the config's `data` section (files, max_length, packing, shuffle, seed, mix, ...).
    tokenizer: renders and tokenizes this process's share of the rows.
    global_batch: rows per step over all processes; each process yields global_batch / process_count of them.
    num_steps: a fixed step count (the stream then repeats without end), or None for `num_epochs` epochs.
    num_epochs: epochs when num_steps is None.
    cache_dir: where the tokenized share is cached.

  Returns:
    The Stream.
  """
  procs = jax.process_count()
  if global_batch % procs:
    raise ValueError(f"train.global_batch_size={global_batch} must divide by the process count ({procs}).")
  mix = parse_mix(data_cfg.get("mix"))
  if mix and not num_steps:
    raise ValueError(f"data.mix={data_cfg.mix!r} samples its sources without end: set train.num_steps.")
  if mix:
    named: dict[str, str] = {}
    for file in readers.resolve_files(data_cfg.train_files):
      other = named.setdefault(readers.source_name(file), file)
      if other != file:
        raise ValueError(
          f"data.mix: {other} and {file} are both the source {readers.source_name(file)!r}; give the files "
          "distinct names (a file's name without its data suffixes)."
        )
  data = prepare(data_cfg, tokenizer, cache_dir=cache_dir, process_index=jax.process_index(), process_count=procs)
  check_shares(data)
  kw = dict(
    seq_len=data_cfg.max_length,
    per_host_batch=global_batch // procs,
    packing=data_cfg.packing,
    shuffle=data_cfg.shuffle,
    seed=data_cfg.seed,
  )
  total_steps = num_steps or distributed.min_over_processes(steps_per_run(data, num_epochs=num_epochs, **kw))
  if total_steps < 1:
    raise ValueError(
      f"{len(data)} examples make no full batch of {global_batch // procs} on process {jax.process_index()} of {procs}."
    )
  dataset = make_dataset(data, num_epochs=None if num_steps else num_epochs, mix=mix, **kw)
  return Stream(iter(dataset), total_steps, data.stats["sources"] if mix else None)


def mixture_counts(batch: dict[str, np.ndarray], num_sources: int) -> np.ndarray:
  """Examples per source in a host batch with "sources": one per segment start (position 0 of a real token)."""
  starts = (batch["positions"] == 0) & (batch["segment_ids"] > 0)
  return np.bincount(batch["sources"][starts], minlength=num_sources)


def to_global(batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Host-local batch -> global arrays on the mesh (each process contributes its rows)."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
