"""IFEval: the 25 verifiable-instruction checkers, strict and loose, with lm-evaluation-harness 0.4.9.1's semantics.

Our own implementation, checked verdict for verdict against lm_eval's `tasks/ifeval/instructions.py`,
`instructions_util.py` and `utils.py` (bench/ifeval_agreement.py), because lm_eval's copy cannot be imported on its
own: `lm_eval.tasks` pulls in the whole harness, and `instructions_util` downloads NLTK data at import. Like lm_eval,
sentences are counted with NLTK's punkt English model and capital words over `nltk.word_tokenize` tokens; the model
(punkt_tab) is loaded on first use, from `NLTK_DATA` or NLTK's default folders, and downloaded once if missing.

Which NLTK: the verdicts are lm_eval 0.4.9.1's under nltk 3.9.1 (the study's requirements.txt, and the lock) or 3.9.2,
whose punkt and word tokenizer are the same. Later releases move them: 3.9.3 splits words at dashes (U+2012-2015,
so `STATE—OF—THE—ART` is four capital words, not one), 3.10.1 splits a leading apostrophe differently and 3.10.2
ends a sentence after a closing curly quote (`“Great!” she said.` is two). That changes lm_eval's own verdicts
(docs/eval_protocol.md, "IFEval and nltk"), so `environment_problem` refuses any other nltk, up front.
Where lm_eval draws a random argument (a falsy kwarg, a `letter` that is not a-z) no verdict can match it; we count
the given letter, as google-research's checker does at upstream HEAD. langdetect is seeded (lm_eval's is not), so
the language checks are deterministic.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from rsft.evals.errors import EnvironmentProblem

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


NLTK_AGREES = ((3, 9, 1), (3, 9, 3))  # [from, to): the nltk versions whose tokenizers give the study's verdicts

_PUNKT_MISSING = (
  "IFEval needs NLTK's punkt_tab model (tokenizers/punkt_tab/english/) to count sentences and words, "
  "and it is neither installed nor downloadable here. Set NLTK_DATA to a folder that holds it (this "
  "repo's CI uses ../shared/nltk_data) or, online, run: "
  "python -c 'import nltk; nltk.download(\"punkt_tab\")'"
)


def _version(text: str) -> tuple[int, ...]:
  parts = []
  for part in text.split("."):
    digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
    if not digits:
      break
    parts.append(int(digits))
  return tuple(parts)


def environment_problem() -> str | None:
  """Why IFEval cannot be graded as the study graded it on this machine (nltk version, punkt_tab), with the fix;
  None when it can. The sweep and grade mode ask before any generation or grading."""
  import nltk

  low, high = NLTK_AGREES
  if not low <= _version(nltk.__version__) < high:
    return (
      f"IFEval's verdicts follow lm-evaluation-harness 0.4.9.1 under nltk 3.9.1 (the study's), whose sentence "
      f"and word tokenizers nltk {nltk.__version__} changes (docs/eval_protocol.md, 'IFEval and nltk'); "
      "install the locked one: pip install nltk==3.9.1"
    )
  try:
    _punkt()
  except EnvironmentProblem as e:
    return str(e)
  return None


@functools.cache
def _download_punkt() -> bool:
  """Cached so that an offline machine tries the download once, not once per response."""
  import nltk

  try:
    return bool(nltk.download("punkt_tab", quiet=True))
  except Exception:  # nltk raises or returns False depending on how the network fails
    return False


@functools.cache
def _punkt() -> Any:
  """NLTK punkt, English: what lm_eval's count_sentences loads (`nltk.data.load("nltk:tokenizers/punkt/english.pickle")`
  resolves to punkt_tab's English model in nltk >= 3.9). Loaded on first use so that importing rsft needs no data.
  Missing, it is an EnvironmentProblem: the same for every response, so never a per-item score of 0."""
  import nltk

  try:
    nltk.data.find("tokenizers/punkt_tab/english/")
  except LookupError:
    if not _download_punkt():
      raise EnvironmentProblem(_PUNKT_MISSING) from None
  return nltk.tokenize.PunktTokenizer("english")


def count_sentences(text: str) -> int:
  """instructions_util.count_sentences: punkt knows abbreviations ("e.g.", "Dr.", "U.S."), decimals and quotes."""
  return len(_punkt().tokenize(text))


def count_words(text: str) -> int:
  return len(re.findall(r"\w+", text))  # instructions_util.count_words: nltk RegexpTokenizer(r"\w+")


def word_tokens(text: str) -> list[str]:
  """nltk.word_tokenize, as the capital-word checker uses: it keeps "STATE-OF-THE-ART" and "U.S." whole and splits
  "DON'T" into "DO" + "N'T"."""
  import nltk

  _punkt()  # word_tokenize splits sentences with punkt first: make sure the model is there (or say how to get it)
  return nltk.word_tokenize(text)


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
  value, postscript_marker = value.lower(), postscript_marker.strip()  # lm_eval strips the marker
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
  value = (
    value.strip()
    .removeprefix("```json")
    .removeprefix("```Json")
    .removeprefix("```JSON")
    .removeprefix("```")
    .removesuffix("```")
    .strip()
  )
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


def _letter_frequency(value: str, letter: str, let_frequency: int, let_relation: str) -> bool:
  # lm_eval replaces a `letter` outside a-z by a random one (IFEval keys 1122 "#" and 1129 "!"), a verdict nobody can
  # reproduce; we count the character asked for, as google-research's checker does at upstream HEAD.
  return _relation(let_relation)(value.lower().count(letter.strip().lower()), let_frequency)


def _capital_words(value: str, capital_frequency: int, capital_relation: str) -> bool:
  # nltk tokens, not regex words: "STATE-OF-THE-ART" and "U.S." count once, "I'M" twice (I + 'M), "A.I" once.
  return _relation(capital_relation)(sum(1 for w in word_tokens(value) if w.isupper()), capital_frequency)


CHECKERS: dict[str, Callable[..., bool]] = {
  "keywords:existence": lambda v, keywords: all(re.search(k, v, flags=re.I) for k in keywords),
  "keywords:frequency": lambda v, keyword, frequency, relation: _relation(relation)(
    len(re.findall(keyword.strip(), v, flags=re.I)), frequency
  ),
  "keywords:forbidden_words": lambda v, forbidden_words: (
    not any(re.search(r"\b" + w + r"\b", v, flags=re.I) for w in forbidden_words)
  ),
  "keywords:letter_frequency": _letter_frequency,
  "language:response_language": lambda v, language: _language(v) in (None, language),
  "length_constraints:number_sentences": lambda v, num_sentences, relation: _relation(relation)(
    count_sentences(v), num_sentences
  ),
  "length_constraints:number_paragraphs": lambda v, num_paragraphs: _paragraphs_by_divider(v, num_paragraphs),
  "length_constraints:number_words": lambda v, num_words, relation: _relation(relation)(count_words(v), num_words),
  "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
  "detectable_content:number_placeholders": lambda v, num_placeholders: (
    len(re.findall(r"\[.*?\]", v)) >= num_placeholders
  ),
  "detectable_content:postscript": _postscript,
  "detectable_format:number_bullet_lists": lambda v, num_bullets: (
    len(re.findall(r"^\s*\*[^\*].*$", v, flags=re.M)) + len(re.findall(r"^\s*-.*$", v, flags=re.M)) == num_bullets
  ),
  "detectable_format:constrained_response": lambda v: any(
    c in v.strip() for c in ("My answer is yes.", "My answer is no.", "My answer is maybe.")
  ),
  "detectable_format:number_highlighted_sections": _highlights,
  "detectable_format:multiple_sections": lambda v, section_spliter, num_sections: (
    len(re.split(r"\s?" + section_spliter.strip() + r"\s?\d+\s?", v)) - 1 >= num_sections
  ),
  "detectable_format:json_format": _json,
  "detectable_format:title": lambda v: any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", v)),
  "combination:two_responses": _two_responses,
  "combination:repeat_prompt": lambda v, prompt_to_repeat: (
    v.strip().lower().startswith(prompt_to_repeat.strip().lower())
  ),
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
  return [
    response,
    response.replace("*", ""),
    first,
    last,
    both,
    first.replace("*", ""),
    last.replace("*", ""),
    both.replace("*", ""),
  ]


def follows(instruction_id: str, kwargs: dict[str, Any], response: str, loose: bool = False) -> bool:
  if instruction_id not in CHECKERS:
    raise ValueError(f"unknown IFEval instruction {instruction_id!r}")
  # lm_eval utils.py keeps only truthy kwargs (it drops 0, "" and [] too, then draws those arguments at random; here
  # the checker fails on the missing argument instead). The HF release pads every instruction's kwargs with None.
  kwargs = {k: v for k, v in (kwargs or {}).items() if v}
  check = CHECKERS[instruction_id]
  candidates = _loose_variants(response) if loose else [response]
  return any(c.strip() and check(c, **kwargs) for c in candidates)


def grade(instruction_ids: list[str], kwargs: list[dict[str, Any]], response: str) -> dict[str, Any]:
  """IFEval's four numbers for one response (already think-stripped): prompt-level strict / loose (all followed)
  and the per-instruction results, which the summary pools over all instructions (instruction-level accuracy)."""
  strict = [float(follows(i, k, response)) for i, k in zip(instruction_ids, kwargs)]
  loose = [float(follows(i, k, response, loose=True)) for i, k in zip(instruction_ids, kwargs)]
  return {
    "prompt_strict": float(all(strict)),
    "prompt_loose": float(all(loose)),
    "inst_strict": strict,
    "inst_loose": loose,
  }
