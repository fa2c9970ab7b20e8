"""Reasoning-pattern markers in responses: a documented, configurable lexicon (ours: the study published none).

Each category is a list of case-insensitive regular expressions matched at word boundaries. Counts are per
response and per 1,000 whitespace tokens, over the text of the whole response (thinking included: the
patterns live there). Override with `analysis.markers` ("category=regex|regex;category=...").
The token-level analysis (rsft.analysis.tokens) reads the same lexicon: a token is a marker when its word alone
matches one of the patterns, so the two analyses can never count different markers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

LEXICON: dict[str, tuple[str, ...]] = {
  "backtracking": (
    r"wait",
    r"backtrack",
    r"alternatively",
    r"let me (?:re-?try|reconsider|start over)",
    r"that(?:'s| is) (?:not right|wrong|incorrect)",
    r"on second thought",
    r"actually",
  ),
  "verification": (
    r"let me (?:check|verify|double[- ]check)",
    r"double[- ]check",
    r"verify",
    r"sanity check",
    r"check:",
    r"plug(?:ging)? (?:it |this )?back",
  ),
  "decomposition": (
    r"first,",
    r"step \d+",
    r"let'?s break (?:it|this) down",
    r"sub-?problem",
    r"case \d+",
    r"next,",
    r"finally,",
  ),
  "hesitation": (r"hmm+", r"i think", r"maybe", r"perhaps", r"not sure", r"i wonder"),
}


def parse_lexicon(spec: str | None) -> dict[str, tuple[str, ...]]:
  if not spec:
    return dict(LEXICON)
  out = {}
  for part in spec.split(";"):
    if part.strip():
      name, sep, patterns = part.partition("=")
      if not sep:
        raise ValueError(f"analysis.markers entry {part!r}: expected category=regex|regex")
      out[name.strip()] = tuple(p for p in patterns.split("|") if p)
  return out


@functools.lru_cache(maxsize=8)
def _compiled_cached(items: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, re.Pattern]:
  return {name: re.compile(r"(?<!\w)(?:" + "|".join(pats) + r")(?!\w)", re.I) for name, pats in items}


def _compiled(lexicon: dict[str, tuple[str, ...]]) -> dict[str, re.Pattern]:
  return _compiled_cached(tuple((k, tuple(v)) for k, v in lexicon.items()))


def word_category(word: str, lexicon: dict[str, tuple[str, ...]] | None = None) -> str | None:
  """The lexicon category whose patterns match `word` as a whole (a single token's text), else None."""
  for name, p in _compiled(lexicon or LEXICON).items():
    if p.fullmatch(word.strip()):
      return name
  return None


def count(text: str, lexicon: dict[str, tuple[str, ...]] | None = None) -> dict[str, int]:
  return {name: len(p.findall(text)) for name, p in _compiled(lexicon or LEXICON).items()}


def rates(texts: Sequence[str], lexicon: dict[str, tuple[str, ...]] | None = None) -> dict[str, dict[str, float]]:
  """category -> {"per_response": mean count, "per_1k_tokens": count per 1,000 whitespace tokens}."""
  patterns = _compiled(lexicon or LEXICON)
  words = sum(len(t.split()) for t in texts)
  out = {}
  for name, p in patterns.items():
    total = sum(len(p.findall(t)) for t in texts)
    out[name] = {"per_response": total / max(len(texts), 1), "per_1k_tokens": 1000 * total / max(words, 1)}
  return out
