"""Answer extraction shared by the graders: the thinking block, the last \\boxed{}, multiple-choice letters.

Rules follow the study and eval_anchors.md §2.1-2.2: score only what follows the last `</think>`; a response
whose thinking never closed (truncated) has no answer rather than one mined from its thoughts; take the *last*
valid answer, restricted to the item's letters (simple-evals takes the first "Answer:" match, and Qwen-style
upper-casing turns the article "a" into "A": both are avoided here).
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def strip_thinking(response: str) -> str | None:
  """Text after the last `</think>`; the whole response if it never thinks; None if thinking never closed."""
  if "</think>" in response:
    return response.rsplit("</think>", 1)[1]
  if "<think>" in response:
    return None
  return response


def boxed_contents(text: str) -> list[str]:
  """Contents of every \\boxed{...} / \\fbox{...}, brace-matched, in order (also `\\boxed 5`)."""
  out = []
  for match in _BOXED.finditer(text):
    depth, start = 1, match.end()
    for i in range(start, len(text)):
      depth += {"{": 1, "}": -1}.get(text[i], 0)
      if depth == 0:
        out.append(text[start:i])
        break
  out += re.findall(r"\\boxed ([^\s$]+)", text)
  return out


def last_boxed(text: str) -> str | None:
  """The last boxed answer by position."""
  best, best_at = None, -1
  for match in _BOXED.finditer(text):
    depth, start = 1, match.end()
    for i in range(start, len(text)):
      depth += {"{": 1, "}": -1}.get(text[i], 0)
      if depth == 0:
        if match.start() > best_at:
          best, best_at = text[start:i], match.start()
        break
  for match in re.finditer(r"\\boxed ([^\s$]+)", text):
    if match.start() > best_at:
      best, best_at = match.group(1), match.start()
  return best


def _letter_in(text: str, letters: str) -> str | None:
  """A bare option letter, possibly wrapped: "C", "(C)", "C.", "\\text{C}", "C) 42"."""
  text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", text).strip()
  match = re.fullmatch(rf"[\s(\[{{*]*([{letters}])(?:[\s)\]}}.:*]|$).*", text, flags=re.S)
  return match.group(1) if match else None


def choice_letter(response: str, letters: str) -> str | None:
  """The chosen option letter, from the text after thinking; the last answer wins.

  Cascade: last \\boxed{X}; last "answer is (X)" / "Answer: X"; a final line that is only the letter.
  """
  text = strip_thinking(response)
  if text is None:
    return None
  boxed = last_boxed(text)
  if boxed is not None:
    letter = _letter_in(boxed, letters)
    if letter:
      return letter
  found = re.findall(rf"[Aa]nswer(?: is)?\s*[:：]?\s*\**\(?\s*([{letters}])\b\)?", text)
  if found:
    return found[-1]
  last_line = text.strip().splitlines()[-1] if text.strip() else ""
  return _letter_in(last_line, letters) if len(last_line.strip()) <= 6 else None
