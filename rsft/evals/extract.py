"""Answer extraction: thinking policies, \\boxed{} contents and multiple-choice letters, per protocol.

Everything here reads model output, so every function is linear in the text (str.find / rfind scans; the only
regexes are ones without nested quantifiers) and never raises on any string.

Thinking policies (which part of a response a grader reads), named in each benchmark's entry:
- `raw`: the whole text (the study's math_eval, GPQA, LiveCodeBench, MMLU-Pro: answers inside thinking count).
- `lm_eval`: lm-evaluation-harness's chain in the study's fork (ifeval/halueval/truthfulqa utils.py): remove
  every closed `<think>...</think>` block with the whitespace after it, strip, then everything up to the last
  `</think>`, lstrip; the same for `<|/think|>`. An unclosed `<think>` stays and is read as answer text.
- `after_last`: `text.split("</think>")[-1]` (HEx-PHI's --remove_think; AlpacaEval strips it too).
- `committed` (rsft): the text after the last `</think>`; None when thinking never closed (no committed answer).
"""

from __future__ import annotations

import re
import string

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _remove_closed_blocks(text: str, close: str) -> str:
  """re.sub(r"<think>.*?CLOSE\\s*", "", text, flags=re.S) in one left-to-right pass."""
  out, at = [], 0
  while True:
    start = text.find("<think>", at)
    if start < 0:
      break
    end = text.find(close, start + len("<think>"))
    if end < 0:
      break  # no close after this opening, so none after any later one either
    out.append(text[at:start])
    at = end + len(close)
    while at < len(text) and text[at].isspace():
      at += 1
  out.append(text[at:])
  return "".join(out)


def _after_last(text: str, close: str) -> str:
  """re.sub(r"^.*CLOSE", "", text, flags=re.S): everything through the last CLOSE goes."""
  at = text.rfind(close)
  return text if at < 0 else text[at + len(close) :]


def strip_lm_eval(text: str) -> str:
  """The study's lm-eval think-strip chain (module docstring), exactly."""
  for close in ("</think>", "<|/think|>"):
    text = _remove_closed_blocks(text, close).strip()
    text = _after_last(text, close).lstrip()
  return text


def strip_thinking(response: str) -> str | None:
  """`committed`: text after the last `</think>`; the whole response if it never thinks; None if unclosed."""
  if "</think>" in response:
    return response.rsplit("</think>", 1)[1]
  if "<think>" in response:
    return None
  return response


THINK = {
  "raw": lambda text: text,
  "lm_eval": strip_lm_eval,
  "after_last": lambda text: text.split("</think>")[-1],
  "committed": strip_thinking,
}


def apply_think(policy: str, text: str) -> str | None:
  if policy not in THINK:
    raise ValueError(f"unknown thinking policy {policy!r}; known: {sorted(THINK)}")
  return THINK[policy](text)


def _brace_end(text: str, start: int) -> int:
  """Index of the `}` closing the brace opened just before `start`, or -1 (one scan: use for a single brace)."""
  depth = 1
  for i in range(start, len(text)):
    c = text[i]
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
      if depth == 0:
        return i
  return -1


def _closing_braces(text: str) -> dict[int, int]:
  """{index of "{": index of its "}"} for every balanced pair, in one pass (so many boxes cost linear time)."""
  pairs, stack = {}, []
  for i, c in enumerate(text):
    if c == "{":
      stack.append(i)
    elif c == "}" and stack:
      pairs[stack.pop()] = i
  return pairs


def last_boxed(text: str) -> str | None:
  """The content of the last brace-matched \\boxed{...} / \\fbox{...} or `\\boxed 5`, by position. Spans are
  kept as indices and only the winner is sliced: nested boxes would otherwise copy quadratically."""
  best, best_at = None, -1
  matches = list(_BOXED.finditer(text))
  pairs = _closing_braces(text) if matches else {}
  for m in matches:
    if m.end() - 1 in pairs and m.start() > best_at:
      best, best_at = (m.end(), pairs[m.end() - 1]), m.start()
  for m in re.finditer(r"\\boxed ([^\s$]+)", text):
    if m.start() > best_at:
      best, best_at = m.span(1), m.start()
  return None if best is None else text[best[0] : best[1]]


# ---- rsft's letter cascade (eval.protocol=rsft) -----------------------------------------------------------------


def _letter_in(text: str, letters: str) -> str | None:
  """A bare option letter, possibly wrapped: "C", "(C)", "C.", "\\text{C}", "C) 42"."""
  text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", text).strip()
  match = re.fullmatch(rf"[\s(\[{{*]*([{letters}])(?:[\s)\]}}.:*]|$).*", text, flags=re.S)
  return match.group(1) if match else None


def choice_letter(response: str, letters: str) -> str | None:
  """rsft: the committed option letter, from the text after thinking; the last answer wins.

  Cascade: last \\boxed{X} (wrappers such as (X) or \\text{X} accepted); last "answer is (X)" / "Answer: X"; a final
  line that is only the letter. Only the item's own letters count; unclosed thinking gives None.
  """
  text = strip_thinking(response)
  if text is None:
    return None
  boxed = last_boxed(text)
  if boxed is not None:
    letter = _letter_in(boxed, letters)
    if letter:
      return letter
  found = re.findall(rf"[Aa]nswer(?: is)?[\s:：*(]*([{letters}])\b", text)  # one class run: no backtracking blow-up
  if found:
    return found[-1]
  last_line = text.strip().splitlines()[-1] if text.strip() else ""
  return _letter_in(last_line, letters) if len(last_line.strip()) <= 6 else None


# ---- the study's GPQA-Diamond extraction (evalchemy GPQADiamond/testing_utils.py) --------------------------------

_GPQA_PATTERNS = [
  re.compile(p, re.I)
  for p in (
    r"(?:correct answer|right answer|answer)\s*(?:is|:)\s*([A-D])",
    r"(?:choose|select|pick)\s*(?:option)?\s*([A-D])",
    r"(?:option|choice)\s*([A-D])\s*(?:is correct|is right)",
    r"\b([A-D])\s*(?:is correct|is right|is the answer)",
  )
]


def _gpqa_last_boxed(text: str) -> str | None:
  """last_boxed_only_string: `\\boxed{...}` from the last `\\boxed{` (brace-matched), or None."""
  at = text.rfind("\\boxed{")
  if at < 0:
    return None
  end = _brace_end(text, at + len("\\boxed{"))
  return text[at : end + 1] if end >= 0 else None


def _gpqa_inner(boxed: str) -> str | None:
  """re.search(r'\\\\boxed\\{(.*)\\}', boxed).group(1) without backtracking: `.` stops at a newline, so the match
  starts at the first `\\boxed{` whose line (up to the next newline) still holds a `}`, and ends at that line's
  last `}`."""
  at = boxed.find("\\boxed{")
  while at >= 0:
    start = at + len("\\boxed{")
    line_end = boxed.find("\n", start)
    line_end = len(boxed) if line_end < 0 else line_end
    close = boxed.rfind("}", start, line_end)
    if close >= 0:
      return boxed[start:close]
    at = boxed.find("\\boxed{", line_end)  # later openings on the same line see even less of it
  return None


def gpqa_choice(response: str) -> str:
  """The study's GPQA letter ("" when none): last \\boxed{} anywhere (thinking included) else the whole text, then
  the four IGNORECASE patterns (first match of the first pattern that matches), else a lone letter."""
  pred = response
  boxed = _gpqa_last_boxed(response)
  if boxed:
    inner = _gpqa_inner(boxed)
    pred = inner if inner is not None else boxed
  if not pred:
    return ""
  for pattern in _GPQA_PATTERNS:
    match = pattern.search(pred)
    if match:
      return match.group(1).upper()
  pred = pred.rstrip(".").rstrip("/").strip()
  return pred.upper() if len(pred) == 1 and pred.upper() in "ABCD" else ""


# ---- the study's MMLU-Pro extraction (lm-eval mmlu_pro/_default_template_yaml, filters/extraction.py) ----------

_MMLU_PRO = re.compile(r"(?:answer is \(?([ABCDEFGHIJ])\)?|\\boxed\{(?:\\text\{)?([A-Z])(?:\})?\})")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def mmlu_pro_choice(response: str) -> str:
  """The regex filter with group_select=0: the FIRST match anywhere in the raw text, case-sensitive; its
  non-empty group, stripped; "[invalid]" without a match."""
  match = _MMLU_PRO.search(response)
  if not match:
    return "[invalid]"
  return next((g for g in match.groups() if g), "[invalid]").strip()


def exact_match(prediction: str, gold: str) -> bool:
  """lm-eval exact_match with ignore_case and ignore_punctuation."""
  norm = lambda s: str(s).lower().translate(_PUNCTUATION)
  return norm(prediction) == norm(gold)


# ---- the study's HaluEval verdict (lm-eval halueval/utils.py) ----------------------------------------------------


def halueval_prediction(response: str) -> str:
  """The last Yes/No word after the think-strip chain, lower-cased; else the first line of the *unstripped*
  response, lower-cased."""
  found = re.findall(r"\b(Yes|No)\b", strip_lm_eval(response), re.I)
  if found:
    return found[-1].lower()
  return response.strip().split("\n")[0].lower()


def halueval_correct(prediction: str, gold: str) -> bool:
  """compute_metrics: substring tests, so "nope" reads as no; both or neither of yes/no present is wrong."""
  has_yes, has_no = "yes" in prediction, "no" in prediction
  if has_yes == has_no:
    return False
  return gold == ("yes" if has_yes else "no")
