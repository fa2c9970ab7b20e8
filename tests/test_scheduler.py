"""The sampler's host bookkeeping (rsft.infer.scheduler): slots, pages, admission, preemption."""

from rsft.infer.scheduler import Scheduler, Sequence


def _pages_in_use(book):
  return sorted((book.shard(s), p) for s, q in book.running.items() for p in q.pages)


def test_admission_places_all_samples_or_none_and_pages_are_never_shared():
  book = Scheduler(slots=4, shards=2, pages_per_shard=5, page_size=8, pages_per_row=4)  # 4 usable pages a shard
  first = [Sequence(row=j, prompt_len=10, limit=20, admitted=0) for j in range(2)]
  assert book.admit(first)  # 2 pages each (10 prompt + 1 new column), one per shard: the emptier shard first
  assert sorted(book.shard(q.slot) for q in first) == [0, 1] and all(len(q.pages) == 2 for q in first)
  too_big = [Sequence(row=2 + j, prompt_len=24, limit=4, admitted=0) for j in range(2)]
  assert not book.admit(too_big)  # 4 pages each do not fit beside the first two: nothing placed, nothing leaked
  assert len(book.running) == 2 and all(q.slot == -1 and not q.pages for q in too_big)
  assert sum(len(f) for f in book.free_pages) == 4 and sum(len(f) for f in book.free_slots) == 2
  used = _pages_in_use(book)
  assert len(used) == len(set(used)) and all(p != 0 for _, p in used)  # page 0 is scratch


def test_growth_preempts_the_youngest_and_resumes_the_oldest_first():
  book = Scheduler(slots=3, shards=1, pages_per_shard=6, page_size=4, pages_per_row=5)  # 5 usable pages
  seqs = [Sequence(row=i, prompt_len=3, limit=16, admitted=0) for i in range(3)]
  for q in seqs:
    assert book.admit([q])  # one page each (3 + 1 columns)
  for q in seqs:
    q.length = 8  # each wrote its page full and needs a third page for column 8: 9 pages wanted, 5 exist
  victims = book.grow(lookahead=4)
  assert [v.row for v in victims] == [2, 1]  # youngest first, until the oldest can go on
  for v in victims:
    book.evict(v)
  assert list(book.running.values()) == [seqs[0]] and len(seqs[0].pages) == 3
  assert [q.row for q in book.swapped] == [1, 2]  # resumes in admission order
  book.release(seqs[0])
  one = book.resume()
  assert one.row == 1 and len(one.pages) == 3
  assert book.resume() is None  # 2 pages left, row 1 wants one soon: row 2 (3 pages) waits
  table, capacity = book.table(), book.capacity()
  assert table[one.slot][:3] == one.pages and table[one.slot][3:] == [0, 0] and capacity[one.slot] == 12
  book.release(one)
  assert book.resume().row == 2 and not book.swapped


def test_lookahead_stops_at_a_rows_last_column():
  book = Scheduler(slots=1, shards=1, pages_per_shard=20, page_size=4, pages_per_row=4)
  q = Sequence(row=0, prompt_len=5, limit=6, admitted=0)
  assert book.admit([q])
  book.grow(lookahead=100)
  assert len(q.pages) == 3  # 5 + 6 = 11 columns at most: three pages, not the lookahead's


def test_compaction_moves_running_sequences_into_each_shards_lowest_slots():
  book = Scheduler(slots=8, shards=2, pages_per_shard=9, page_size=8, pages_per_row=2)
  seqs = [Sequence(row=i, prompt_len=4, limit=8, admitted=0) for i in range(8)]
  for q in seqs:
    assert book.admit([q])
  for q in seqs:
    if q.row not in (3, 6, 7):
      book.release(q)
  pages = {q.row: list(q.pages) for q in seqs if q.slot >= 0}
  shard_of = {q.row: book.shard(q.slot) for q in seqs if q.slot >= 0}
  moves = book.compact()
  assert all(book.shard(src) == book.shard(dst) and dst < src for src, dst in moves)  # pages belong to the shard
  firsts = {0: set(range(0, 4)), 1: set(range(4, 8))}
  by_shard = {s: sorted(slot for slot in book.running if book.shard(slot) == s) for s in (0, 1)}
  assert all(slots == sorted(firsts[s])[: len(slots)] for s, slots in by_shard.items())  # the lowest slots
  assert book.busiest() == max(len(v) for v in by_shard.values())
  for slot, q in book.running.items():
    assert q.slot == slot and q.pages == pages[q.row] and book.shard(slot) == shard_of[q.row]
  assert book.compact() == []  # already compact
  free = [sorted(f) for f in book.free_slots]
  assert all(set(f).isdisjoint(book.running) and len(f) + len(by_shard[s]) == 4 for s, f in enumerate(free))
  fresh = Sequence(row=9, prompt_len=4, limit=8, admitted=0)
  assert book.admit([fresh]) and fresh.slot in (len(by_shard[0]), 4 + len(by_shard[1]))  # the lowest free slot


def test_samples_of_one_prompt_share_its_full_pages_until_the_last_lets_go():
  book = Scheduler(slots=4, shards=1, pages_per_shard=12, page_size=8, pages_per_row=6)  # 11 usable pages
  rows = [Sequence(row=j, prompt_len=20, limit=20, admitted=0) for j in range(4)]
  assert book.admit(rows)  # 20 + 1 columns: 2 full prompt pages shared, a third page each
  shared = rows[0].pages[:2]
  assert all(q.pages[:2] == shared for q in rows) and len({q.pages[2] for q in rows}) == 4
  assert sum(len(f) for f in book.free_pages) == 11 - 2 - 4  # not 11 - 4 x 3
  for q in rows[:3]:
    book.release(q)
  assert not set(shared) & set(book.free_pages[0])  # still held by the last sample
  book.release(rows[3])
  assert set(shared) <= set(book.free_pages[0]) and not book.refs[0]
  again = [Sequence(row=j, prompt_len=20, limit=20, admitted=1) for j in range(2)]
  assert book.admit(again)
  for q in again:
    q.length = 24  # each wrote its own third page full: the next column needs a page of its own
  victims = book.grow(lookahead=1)
  assert not victims and again[0].pages[3] != again[1].pages[3] and again[0].pages[:2] == again[1].pages[:2]


def _paged(book, row, prompt_len, keys, n=1):
  seqs = [Sequence(row=row * n + j, prompt_len=prompt_len, limit=8, admitted=0, keys=keys) for j in range(n)]
  assert book.admit(seqs, paged=True)
  return seqs


def test_the_prefix_cache_shares_written_pages_and_reuses_idle_ones_last():
  book = Scheduler(slots=4, shards=1, pages_per_shard=9, page_size=4, pages_per_row=4, prefix_cache=True)
  (a,) = _paged(book, 0, 10, ("k1", "k2"))  # 10 tokens: pages 0-1 shareable, its 10th token always computed
  assert a.computed == 0 and not a.waits and book.pending(a)
  (b,) = _paged(book, 1, 9, ("k1", "k2"))  # admitted while a still writes them: shares both, waits for a
  assert b.pages[:2] == a.pages[:2] and b.computed == 8 and not book.ready(b)
  (c,) = _paged(book, 2, 9, ("k1", "x2"))  # shares the first page only
  assert c.pages[0] == a.pages[0] and c.pages[1] != a.pages[1] and c.computed == 4
  a.computed = 4
  assert book.ready(c) and not book.ready(b)
  a.computed = 10
  assert book.ready(b)
  held = a.pages[:2]
  for q in (a, b, c):
    q.computed = q.prompt_len
    book.release(q)
  # a's two pages and c's second are cached but held by nobody: idle, counted free, reused only when needed
  assert len(book.idle[0]) == 3 and book.available(0) == 8 and not book.refs[0]
  (d,) = _paged(book, 3, 9, ("k1", "k2"))  # a later prompt hits them (they hold their cache still)
  assert d.pages[:2] == held and d.computed == 8 and book.ready(d) and len(book.idle[0]) == 1
  book.release(d)
  big = _paged(book, 4, 29, ())[0]  # 8 pages: takes the free ones first, then the idle ones, oldest first
  assert len(big.pages) == 8 and not book.idle[0] and not book.cached[0]


def test_without_the_prefix_cache_only_a_prompts_samples_share():
  book = Scheduler(slots=4, shards=2, pages_per_shard=13, page_size=4, pages_per_row=6)
  a0, a1, a2 = _paged(book, 0, 13, ("k1", "k2", "k3"), n=3)  # shards: 0, 1, then 0 again (the emptier first)
  lead, sibling = (a0, a2) if book.shard(a0.slot) == book.shard(a2.slot) else (a1, a2)
  assert sibling.pages[:3] == lead.pages[:3] and sibling.waits == [(lead, 12)] and sibling.computed == 12
  assert lead.computed == 0 and not lead.waits
  (b,) = _paged(book, 1, 13, ("k1", "k2", "k3"))
  assert b.computed == 0 and not set(b.pages) & set(a0.pages + a1.pages)
  assert not book.cached[0] and not book.cached[1]


def test_a_pending_prompt_is_never_preempted():
  book = Scheduler(slots=2, shards=1, pages_per_shard=6, page_size=4, pages_per_row=4)  # 5 usable pages
  (old,) = _paged(book, 0, 3, ())
  (young,) = _paged(book, 1, 7, ())  # pending: holds its 2 pages
  old.computed, old.length = 3, 8  # decoding, needs a third page for column 8
  assert book.grow(lookahead=1) == [] and len(old.pages) == 3  # the last free pages; nobody is swapped
  old.length = 12  # wants a fourth: only the decoding row can go, never the pending one
  assert book.grow(lookahead=1) == [old]
