"""IFEval: the 25 verifiable-instruction checkers, strict and loose, with google-research's semantics.

Written here because the maintained implementations do not run offline: lm-evaluation-harness's copy downloads
NLTK's punkt data at import and needs it for sentence and word tokenization. Each checker below follows
google-research `instruction_following_eval/instructions.py` (the letter-frequency checker as at upstream HEAD,
which accepts punctuation such as "#"); the deviations, forced by having no punkt model, are documented where
they occur: sentences are split with the regex splitter from the same project's `instructions_util.py`, and
capital words are counted over regex word tokens. langdetect is seeded, so language checks are deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_COMPARE = {"less than": lambda count, n: count < n, "at least": lambda count, n: count >= n}


def _relation(relation: str) -> Callable[[int, int], bool]:
  if relation not in _COMPARE:
    raise ValueError(f"IFEval relation {relation!r}; expected one of {sorted(_COMPARE)}")
  return _COMPARE[relation]


def _language(text: str) -> str | None:
  import langdetect
  langdetect.DetectorFactory.seed = 0
  try:
    return langdetect.detect(text)
  except langdetect.LangDetectException:
    return None  # as upstream: an undetectable text passes the language checks


_PREFIXES, _SUFFIXES = "(Mr|St|Mrs|Ms|Dr)[.]", "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = (r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s"
             r"|This\s|Wherever)")
_ACRONYMS, _WEBSITES = "([A-Z][.][A-Z][.](?:[A-Z][.])?)", "[.](com|net|org|io|gov|edu|me)"
_ALPHA, _DIGITS = "([A-Za-z])", "([0-9])"


def split_into_sentences(text: str) -> list[str]:
  """instructions_util.split_into_sentences (regex; stands in for NLTK punkt, which needs a download)."""
  text = " " + text + "  "
  text = text.replace("\n", " ")
  text = re.sub(_PREFIXES, "\\1<prd>", text)
  text = re.sub(_WEBSITES, "<prd>\\1", text)
  text = re.sub(_DIGITS + "[.]" + _DIGITS, "\\1<prd>\\2", text)
  text = re.sub(r"\.{2,}", lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
  text = text.replace("Ph.D.", "Ph<prd>D<prd>")
  text = re.sub(r"\s" + _ALPHA + "[.] ", " \\1<prd> ", text)
  text = re.sub(_ACRONYMS + " " + _STARTERS, "\\1<stop> \\2", text)
  text = re.sub(_ALPHA + "[.]" + _ALPHA + "[.]" + _ALPHA + "[.]", "\\1<prd>\\2<prd>\\3<prd>", text)
  text = re.sub(_ALPHA + "[.]" + _ALPHA + "[.]", "\\1<prd>\\2<prd>", text)
  text = re.sub(" " + _SUFFIXES + "[.] " + _STARTERS, " \\1<stop> \\2", text)
  text = re.sub(" " + _SUFFIXES + "[.]", " \\1<prd>", text)
  text = re.sub(" " + _ALPHA + "[.]", " \\1<prd>", text)
  text = text.replace(".\u201d", "\u201d.").replace('."', '".').replace('!"', '"!').replace('?"', '"?')
  text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>").replace("<prd>", ".")
  sentences = [s.strip() for s in text.split("<stop>")]
  return sentences[:-1] if sentences and not sentences[-1] else sentences


def count_words(text: str) -> int:
  return len(re.findall(r"\w+", text))  # nltk RegexpTokenizer(r"\w+") without nltk


def _paragraphs_by_divider(value: str, n: int) -> bool:
  paragraphs = re.split(r"\s?\*\*\*\s?", value)
  count = len(paragraphs)
  for i, p in enumerate(paragraphs):
    if not p.strip():
      if i in (0, len(paragraphs) - 1):
        count -= 1
      else:
        return False
  return count == n


def _nth_paragraph_first_word(value: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
  paragraphs = re.split(r"\n\n", value)
  count = len(paragraphs) - sum(1 for p in paragraphs if not p.strip())
  if nth_paragraph > count:
    return False
  paragraph = paragraphs[nth_paragraph - 1].strip()
  if not paragraph:
    return False
  word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
  got = ""
  for letter in word:
    if letter in {".", ",", "?", "!", "'", '"'}:
      break
    got += letter.lower()
  return count == num_paragraphs and got == first_word.lower()


def _postscript(value: str, postscript_marker: str) -> bool:
  value = value.lower()
  if postscript_marker == "P.P.S":
    pattern = r"\s*p\.\s?p\.\s?s.*$"
  elif postscript_marker == "P.S.":
    pattern = r"\s*p\.\s?s\..*$"
  else:
    pattern = r"\s*" + postscript_marker.lower() + r".*$"
  return bool(re.findall(pattern, value, flags=re.M))


def _highlights(value: str, num_highlights: int) -> bool:
  count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", value) if h.strip("*").strip())
  count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", value) if h.removeprefix("**").removesuffix("**").strip())
  return count >= num_highlights


def _json(value: str) -> bool:
  value = (value.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
           .removeprefix("```").removesuffix("```").strip())
  try:
    json.loads(value)
  except ValueError:
    return False
  return True


def _two_responses(value: str) -> bool:
  parts = value.split("******")
  valid = []
  for i, part in enumerate(parts):
    if not part.strip():
      if i not in (0, len(parts) - 1):
        return False
    else:
      valid.append(part)
  return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def _capital_words(value: str, capital_frequency: int, capital_relation: str) -> bool:
  # Upstream counts nltk.word_tokenize tokens that are all caps; regex tokens give the same count except for
  # contractions split differently ("DON'T": nltk DO + N'T, here DON + T: two either way).
  words = re.findall(r"\w+|[^\w\s]+", value)
  return _relation(capital_relation)(sum(1 for w in words if w.isupper()), capital_frequency)


CHECKERS: dict[str, Callable[..., bool]] = {
    "keywords:existence": lambda v, keywords: all(re.search(k, v, flags=re.I) for k in keywords),
    "keywords:frequency": lambda v, keyword, frequency, relation: _relation(relation)(
        len(re.findall(keyword, v, flags=re.I)), frequency),
    "keywords:forbidden_words": lambda v, forbidden_words: not any(
        re.search(r"\b" + w + r"\b", v, flags=re.I) for w in forbidden_words),
    "keywords:letter_frequency": lambda v, letter, let_frequency, let_relation: _relation(let_relation)(
        v.lower().count(letter.lower()), let_frequency),
    "language:response_language": lambda v, language: _language(v) in (None, language),
    "length_constraints:number_sentences": lambda v, num_sentences, relation: _relation(relation)(
        len(split_into_sentences(v)), num_sentences),
    "length_constraints:number_paragraphs": lambda v, num_paragraphs: _paragraphs_by_divider(v, num_paragraphs),
    "length_constraints:number_words": lambda v, num_words, relation: _relation(relation)(count_words(v), num_words),
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": lambda v, num_placeholders: len(
        re.findall(r"\[.*?\]", v)) >= num_placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": lambda v, num_bullets: len(
        re.findall(r"^\s*\*[^\*].*$", v, flags=re.M)) + len(re.findall(r"^\s*-.*$", v, flags=re.M)) == num_bullets,
    "detectable_format:constrained_response": lambda v: any(
        c in v.strip() for c in ("My answer is yes.", "My answer is no.", "My answer is maybe.")),
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:multiple_sections": lambda v, section_spliter, num_sections: len(
        re.split(r"\s?" + section_spliter + r"\s?\d+\s?", v)) - 1 >= num_sections,
    "detectable_format:json_format": _json,
    "detectable_format:title": lambda v: any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", v)),
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": lambda v, prompt_to_repeat: v.strip().lower().startswith(
        prompt_to_repeat.strip().lower()),
    "startend:end_checker": lambda v, end_phrase: v.strip().strip('"').lower().endswith(end_phrase.strip().lower()),
    "startend:quotation": lambda v: len(v.strip()) > 1 and v.strip()[0] == '"' and v.strip()[-1] == '"',
    "change_case:capital_word_frequency": _capital_words,
    "change_case:english_capital": lambda v: v.isupper() and _language(v) in (None, "en"),
    "change_case:english_lowercase": lambda v: v.islower() and _language(v) in (None, "en"),
    "punctuation:no_comma": lambda v: not re.search(r"\,", v),
}


def _loose_variants(response: str) -> list[str]:
  lines = response.split("\n")
  first, last, both = "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()
  return [response, response.replace("*", ""), first, last, both, first.replace("*", ""), last.replace("*", ""),
          both.replace("*", "")]


def follows(instruction_id: str, kwargs: dict[str, Any], response: str, loose: bool = False) -> bool:
  if instruction_id not in CHECKERS:
    raise ValueError(f"unknown IFEval instruction {instruction_id!r}")
  kwargs = {k: v for k, v in (kwargs or {}).items() if v is not None}
  check = CHECKERS[instruction_id]
  candidates = _loose_variants(response) if loose else [response]
  return any(c.strip() and check(c, **kwargs) for c in candidates)


def grade(instruction_ids: list[str], kwargs: list[dict[str, Any]], response: str) -> dict[str, Any]:
  """IFEval's four numbers for one response (already think-stripped): prompt-level strict / loose (all followed)
  and the per-instruction results, which the summary pools over all instructions (instruction-level accuracy)."""
  strict = [float(follows(i, k, response)) for i, k in zip(instruction_ids, kwargs)]
  loose = [float(follows(i, k, response, loose=True)) for i, k in zip(instruction_ids, kwargs)]
  return {"prompt_strict": float(all(strict)), "prompt_loose": float(all(loose)), "inst_strict": strict,
          "inst_loose": loose}
