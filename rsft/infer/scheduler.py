"""The sampler's host-side bookkeeping: which sequence sits in which slot, which KV pages it owns, who waits.

Pure Python over integers, so every process of a pod takes the same decisions from the same inputs (the sampler
runs one SPMD program). vLLM's policy, simplified:
  - a waiting prompt is admitted when n slots are free (its n samples share one prefill) and their shards have
    the pages for its prompt and first new token, keeping in reserve the pages the shard's running sequences
    want for their next page of columns; samples in one shard share the prompt's full pages (refcounted; no row
    writes them again), each with its own last page;
  - before each decode chunk every running sequence gets the pages for its next `lookahead` columns, at least for
    its next one; when a shard has none left, its youngest running sequence is preempted (swapped to host memory
    by the sampler) and resumes, oldest first, before any new prompt is admitted. A sequence whose prompt is still
    being prefilled (`pending`) already holds its pages and is never preempted;
  - with `prefix_cache` (vLLM's automatic prefix caching), a full page of prompt tokens is keyed by a hash of its
    tokens and everything before them (`Sequence.keys`) as soon as its writer is admitted; a later prompt with the
    same leading pages shares them, and its paged prefill starts past them once their writer has written them
    (`Sequence.waits`), so prompts admitted together share too. A cached page no sequence holds is idle: it counts
    as free and is reused, least recently released first, only when no free page is left. Shared pages are full
    prompt pages, which no row writes again: copy-on-write never has to copy.
Slots are grouped in `shards` equal runs (slot s in shard s // (slots / shards)), each with its own page pool in
which page 0 is scratch (written by rows that hold no page, never read as data).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any


@dataclasses.dataclass
class Sequence:
  row: int  # output row: prompt index * n + sample
  prompt_len: int
  limit: int  # new tokens it may take
  admitted: int  # admission order (the youngest is preempted first)
  keys: tuple = ()  # prefix-cache keys of its prompt's shareable full pages (prefix_cache only)
  length: int = 0  # cache columns it holds: prompt + new tokens
  computed: int = 0  # prompt columns written on device (paged prefill: < prompt_len while pending)
  waits: list = dataclasses.field(default_factory=list)  # (writer, columns): its prefill starts once each writer
  # has computed that many columns (the shared pages it reads hold their cache)
  first_token_at: float = 0.0  # when its first token reached the host (time.perf_counter)
  slot: int = -1
  pages: list[int] = dataclasses.field(default_factory=list)
  tokens: list[int] = dataclasses.field(default_factory=list)
  logprobs: list[float] = dataclasses.field(default_factory=list)
  saved: Any = None  # its device state while swapped out


class Scheduler:
  def __init__(
    self, slots: int, shards: int, pages_per_shard: int, page_size: int, pages_per_row: int, prefix_cache: bool = False
  ):
    if slots % shards:
      raise ValueError(f"{slots} slots do not split over {shards} shards")
    self.slots, self.shards, self.page_size, self.pages_per_row = slots, shards, page_size, pages_per_row
    self.per_shard = slots // shards
    self.free_pages = [list(range(pages_per_shard - 1, 0, -1)) for _ in range(shards)]  # page 0: scratch
    self.refs = [collections.Counter() for _ in range(shards)]  # page -> sequences holding it (shared prompt pages)
    self.prefix_cache = prefix_cache
    self.cached = [{} for _ in range(shards)]  # prefix key -> page, per shard
    self.key_of = [{} for _ in range(shards)]  # page -> its prefix key
    self.idle = [collections.OrderedDict() for _ in range(shards)]  # cached pages nobody holds, oldest first
    self.writer = [{} for _ in range(shards)]  # cached page -> the sequence whose prefill writes it
    self.free_slots = [list(range((s + 1) * self.per_shard - 1, s * self.per_shard - 1, -1)) for s in range(shards)]
    self.running: dict[int, Sequence] = {}  # slot -> sequence
    self.swapped: collections.deque[Sequence] = collections.deque()
    self._admissions = 0
    self.preemptions = 0

  def shard(self, slot: int) -> int:
    return slot // self.per_shard

  def pages_for(self, columns: int) -> int:
    return -(-columns // self.page_size)

  def available(self, shard: int) -> int:
    """Pages a sequence could take: free ones and idle cached ones."""
    return len(self.free_pages[shard]) + len(self.idle[shard])

  @staticmethod
  def pending(seq: Sequence) -> bool:
    """Whether its prompt is still being prefilled (paged prefill): it cannot decode yet."""
    return seq.computed < seq.prompt_len

  def _reserve(self, shard: int) -> int:
    """Pages the shard's running sequences will want within their next page of columns (never past their end)."""
    return sum(
      max(0, self.pages_for(min(q.length + 1 + self.page_size, q.prompt_len + q.limit)) - len(q.pages))
      for slot, q in self.running.items()
      if self.shard(slot) == shard
    )

  def _place(self, need) -> int | None:
    """A shard with a free slot and need(shard) pages beyond its reserve (the most pages left), or None."""
    best = None
    for s in range(self.shards):
      spare = self.available(s) - self._reserve(s) - need(s)
      if self.free_slots[s] and spare >= 0 and (best is None or spare > best[1]):
        best = (s, spare)
    return None if best is None else best[0]

  def _take(self, shard: int) -> int:
    """A free page, else the least recently released idle cached page (its key forgotten)."""
    if self.free_pages[shard]:
      page = self.free_pages[shard].pop()
    else:
      page, _ = self.idle[shard].popitem(last=False)
      del self.cached[shard][self.key_of[shard].pop(page)]
      del self.writer[shard][page]
    self.refs[shard][page] = 1
    return page

  def _drop(self, shard: int, pages: list[int]) -> None:
    """Gives back a sequence's hold on its pages: a page is free (idle, if cached) once no sequence holds it."""
    for page in reversed(pages):
      self.refs[shard][page] -= 1
      if not self.refs[shard][page]:
        del self.refs[shard][page]
        if page in self.key_of[shard]:
          self.idle[shard][page] = None
        else:
          self.free_pages[shard].append(page)

  def _hits(self, seq: Sequence, shard: int) -> list[int]:
    """The cached pages of the shard that hold seq's leading prompt pages (its longest cached prefix)."""
    hits = []
    for key in seq.keys if self.prefix_cache else ():
      if key not in self.cached[shard]:
        break
      hits.append(self.cached[shard][key])
    return hits

  def _register(self, seq: Sequence, shard: int) -> None:
    """Caches the shareable prompt pages seq's prefill will write (the first writer of a key keeps it)."""
    for key, page in list(zip(seq.keys, seq.pages))[seq.computed // self.page_size :]:
      if key not in self.cached[shard]:
        self.cached[shard][key], self.key_of[shard][page], self.writer[shard][page] = page, key, seq

  def ready(self, seq: Sequence) -> bool:
    """Whether a pending sequence's prefill can run: the shared pages it reads have been written."""
    return all(writer.computed >= columns for writer, columns in seq.waits)

  def _start(self, seq: Sequence, shard: int, columns: int, shared: list[int] = ()) -> None:
    """Seats seq in a free slot of the shard with pages for `columns`: the `shared` ones (a sibling's or the prefix
    cache's full prompt pages, which no row writes again) held jointly, the rest its own."""
    seq.slot = self.free_slots[shard].pop()
    for page in shared:
      self.idle[shard].pop(page, None)
      self.refs[shard][page] += 1
    seq.pages = list(shared) + [self._take(shard) for _ in range(self.pages_for(columns) - len(shared))]
    self.running[seq.slot] = seq

  def admit(self, rows: list[Sequence], paged: bool = False) -> bool:
    """Places all of a prompt's samples (each needs its prompt and first new token) or none. Samples in one shard
    share the prompt's full pages (decode writes only past the prompt); each has its own partly filled last page.

    paged: the sampler's paged prefill writes the prompts (seqs start pending): the first sample in a shard (the
    lead) starts past its prefix-cache hits, a sibling past the pages it shares with the lead, once the lead has
    written them; a pending row computes at least its last prompt token (its next-token logits), so it shares
    at most (prompt_len - 1) // page_size pages. Otherwise the prompt is written at admission (computed)."""
    prompt = rows[0].prompt_len
    full = (prompt - 1) // self.page_size if paged else prompt // self.page_size
    need = self.pages_for(prompt + 1)
    placed, lead = [], {}
    for seq in rows:
      hits = {}

      def need_in(shard: int) -> int:
        if shard in lead:
          return need - full
        hits[shard] = self._hits(seq, shard)
        return need - len(hits[shard]) + sum(page in self.idle[shard] for page in hits[shard])

      shard = self._place(need_in)
      if shard is None:
        for done in placed:
          self.release(done)
        return False
      seq.length, seq.admitted = prompt, self._admissions
      self._admissions += 1
      shared = lead[shard].pages[:full] if shard in lead else hits[shard]
      seq.computed = len(shared) * self.page_size if paged else prompt
      if shard in lead:
        seq.waits = lead[shard].waits + [(lead[shard], seq.computed)] if paged else []
      else:
        seq.waits = [(self.writer[shard][page], (k + 1) * self.page_size) for k, page in enumerate(shared)]
      self._start(seq, shard, prompt + 1, shared)
      lead.setdefault(shard, seq)
      placed.append(seq)
    for shard, seq in lead.items():
      if self.prefix_cache:
        self._register(seq, shard)
    return True

  def resume(self) -> Sequence | None:
    """The oldest swapped-out sequence, placed again with pages for what it has written plus one column."""
    if not self.swapped:
      return None
    seq = self.swapped[0]
    shard = self._place(lambda s: self.pages_for(seq.length + 1))
    if shard is None:
      return None
    self.swapped.popleft()
    self._start(seq, shard, seq.length + 1)
    return seq

  def release(self, seq: Sequence) -> None:
    """A finished (or swapped-out) sequence gives back its slot and pages."""
    del self.running[seq.slot]
    shard = self.shard(seq.slot)
    self._drop(shard, seq.pages)
    self.free_slots[shard].append(seq.slot)
    seq.slot, seq.pages = -1, []

  def evict(self, seq: Sequence) -> None:
    """A sequence `grow` chose, copied out by the caller: it waits to resume, oldest first."""
    del self.running[seq.slot]
    self.free_slots[self.shard(seq.slot)].append(seq.slot)
    seq.slot, seq.pages = -1, []
    self.swapped = collections.deque(sorted([*self.swapped, seq], key=lambda q: q.admitted))

  def grow(self, lookahead: int) -> list[Sequence]:
    """Pages for every running sequence's next column (and up to `lookahead` columns where pages allow);
    returns the sequences to swap out (youngest first) so that the others can go on. Their pages are already
    counted free (and may be in other rows' tables now): the caller copies each out before the next device write,
    then calls `evict`."""
    victims = []
    for shard in range(self.shards):
      seqs = sorted((q for q in self.running.values() if self.shard(q.slot) == shard), key=lambda q: q.admitted)
      movable = [q for q in seqs if not self.pending(q)]  # a pending prompt holds its pages already
      while movable:
        short = sum(max(0, self.pages_for(q.length + 1) - len(q.pages)) for q in seqs)
        if short <= self.available(shard):
          break
        victims.append(movable.pop())  # the youngest goes
        seqs.remove(victims[-1])
        self._drop(shard, victims[-1].pages)
      for q in seqs:
        while len(q.pages) < self.pages_for(q.length + 1):
          q.pages.append(self._take(shard))
      for q in seqs:  # then ahead, oldest first, as far as the pool allows
        want = min(self.pages_for(min(q.length + lookahead, q.prompt_len + q.limit)), self.pages_per_row)
        while len(q.pages) < want and self.available(shard):
          q.pages.append(self._take(shard))
    self.preemptions += len(victims)
    return victims

  def busiest(self) -> int:
    """The most sequences running in one shard."""
    counts = collections.Counter(self.shard(slot) for slot in self.running)
    return max(counts.values(), default=0)

  def compact(self) -> list[tuple[int, int]]:
    """Moves each shard's running sequences into its lowest slots (their pages stay: pages belong to the shard),
    so a decode over the first slots of each shard runs them all. Returns the (from, to) slot moves."""
    moves = []
    for shard in range(self.shards):
      first = shard * self.per_shard
      mine = sorted(slot for slot in self.running if self.shard(slot) == shard)
      free_low = sorted(set(range(first, first + len(mine))) - set(mine))
      for src, dst in zip([slot for slot in mine if slot >= first + len(mine)], free_low):
        seq = self.running.pop(src)
        seq.slot = dst
        self.running[dst] = seq
        self.free_slots[shard].remove(dst)
        self.free_slots[shard].append(src)
        moves.append((src, dst))
      self.free_slots[shard].sort(reverse=True)  # pop() hands out the lowest free slot
    return moves

  def table(self) -> list[list[int]]:
    """[slots][pages_per_row] page ids (0 = none: the scratch page)."""
    rows = [[0] * self.pages_per_row for _ in range(self.slots)]
    for slot, seq in self.running.items():
      rows[slot][: len(seq.pages)] = seq.pages
    return rows

  def capacity(self) -> list[int]:
    """Columns each slot may write before it needs another page."""
    out = [0] * self.slots
    for slot, seq in self.running.items():
      out[slot] = len(seq.pages) * self.page_size
    return out
