"""IFEval agreement's responses (bench/ifeval_agreement.py): for each IFEval row, responses drawn with a per-row seed
from real prose (AlpacaEval's GPT-4-turbo answers), most of them rewritten by a variant aimed at one of the row's
instructions (counts near the threshold, `***` paragraphs, P.S., <<title>>, JSON, bullets, placeholders, SECTION X,
...) and some by generic variants (case, quotes, commas, a chatty first line, sentences that tell punkt from a regex
splitter). Kept apart from the comparison so the two can be read, and changed, on their own.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

# Sentences that tell punkt from a regex splitter and nltk tokens from regex words: abbreviations, initials,
# decimals, ellipses, quotes, hyphenated and dotted capitals.
TRICKY = [
  "The U.S. economy grew by 2.5% in 2023, according to Dr. Smith of the Federal Reserve.",
  "Common examples include apples, pears, etc. and they are all rich in fiber.",
  "Mix the dry ingredients (e.g. flour, sugar, and salt) before adding the eggs.",
  'He said, "I\'ll be there at 5 p.m." Then he hung up.',
  "The price rose from $3.50 to $4.75... and nobody noticed.",
  "Wait... what happened next?",
  "Mr. and Mrs. Jones moved to Washington, D.C. last year.",
  "She earned a Ph.D. in physics from M.I.T. in 2010.",
  "Version 3.11.2 fixed the bug that version 3.10 introduced.",
  "\u201cThat\u2019s amazing!\u201d she exclaimed. \u201cReally?\u201d",
  "It costs approx. 20 dollars, i.e. about 18 euros.",
  "St. Louis sits on the Mississippi River.",
  "The meeting is at 10 a.m. on Jan. 5th in Room 4.",
  "NASA's STATE-OF-THE-ART telescope launched in Dec. 2021!",
  "U.K. and U.S. officials met on Monday. They agreed on nothing.",
  "Prof. Lee teaches AI-POWERED SYSTEMS at the Univ. of Toronto.",
  "He scored 9.5/10. Amazing.",
  "Is it safe? Yes. Is it cheap? No.",
  "Visit www.example.com or e-mail info@example.org for details.",
  '"Stop!" he shouted. "Don\'t move."',
  "The No. 1 rule is simple: DON'T PANIC.",
  "J.R.R. Tolkien wrote The Hobbit. It appeared in 1937.",
  "Acme Inc. was founded in 1999. Its CEO is Jane Doe Jr. and she lives in L.A.",
  "Temperatures reached 41.2 \u00b0C (106.2 \u00b0F) vs. 39 \u00b0C last year.",
  "I'M NOT SURE. ARE YOU?",
  "The ratio is approx. 1:3. See Fig. 2 and Table 4.",
  "A.I. tools, e.g., ChatGPT, are WIDELY-USED today.",
  "Gen. Patton's 3rd Army advanced. Lt. Col. Smith followed.",
]
CAPS_EXTRA = [
  "STATE-OF-THE-ART",
  "U.S.",
  "DON'T",
  "I'M",
  "AI-DRIVEN",
  "E.G.",
  "A.M.",
  "COVID-19",
  "ISN'T",
  "N.B.",
  "WELL-KNOWN",
  "OK",
  "A",
  "I",
  "NO.",
  "U.S.A.",
  "R&D",
  "24/7",
  "Q&A",
  "FAQ's",
]
CHATTY = ["Sure! Here is my answer:", "Of course. Here you go:", "**Answer**", "Here's a draft for you:", "Certainly!"]
OUTRO = ["Let me know if you need anything else.", "I hope this helps!", "*Good luck!*", "Is there anything else?"]


def sentences_of(text: str) -> list[str]:
  return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def paragraphs_of(text: str) -> list[str]:
  return [p.strip() for p in text.split("\n\n") if p.strip()]


def near(rng: random.Random, n: int, spread: int = 2) -> int:
  return max(0, n + rng.randint(-spread, spread))


def with_tricky(rng: random.Random, text: str, k: int | None = None) -> str:
  parts = sentences_of(text)
  for s in rng.sample(TRICKY, k or rng.randint(2, 6)):
    parts.insert(rng.randint(0, len(parts)), s)
  return " ".join(parts)


def n_sentences(rng: random.Random, text: str, n: int) -> str:
  """About n sentences: alpaca prose, some tricky sentences, some kept on their own lines."""
  pool = sentences_of(text)
  tricky = rng.sample(TRICKY, min(len(TRICKY), max(1, n // 3)))
  picked = (pool[: max(0, n - len(tricky))] + tricky)[: max(1, n)]
  rng.shuffle(picked)
  sep = rng.choice([" ", " ", "\n", "\n\n"])
  return sep.join(picked)


def caps(rng: random.Random, text: str, n: int) -> str:
  """About n all-capital tokens: some words upper-cased, some dotted/hyphenated capitals inserted."""
  words = text.split()
  if not words:
    return text
  for i in rng.sample(range(len(words)), min(len(words), rng.randint(0, n))):
    words[i] = words[i].upper()
  for _ in range(rng.randint(0, max(1, n // 2))):
    words.insert(rng.randint(0, len(words)), rng.choice(CAPS_EXTRA))
  return " ".join(words)


def bullets(rng: random.Random, text: str, n: int) -> str:
  items = sentences_of(text)[:n] or ["an item"]
  marks = rng.choice([["* "], ["- "], ["* ", "- "], ["*   "], ["  * "], ["**", "* "]])
  lines = [rng.choice(marks) + s for s in items]
  if rng.random() < 0.3:
    lines.insert(0, "**Summary**")
  return rng.choice(["", "Here are the points:\n"]) + "\n".join(lines) + rng.choice(["", "\n\nHope that helps."])


def sections(rng: random.Random, text: str, n: int, splitter: str) -> str:
  paras = paragraphs_of(text) or [text]
  fmt = rng.choice(["{s} {i}\n{p}", "{s} {i}: {p}", "**{s} {i}**\n{p}", "{s}{i}\n{p}", "# {s} {i}\n\n{p}"])
  return "\n\n".join(fmt.format(s=splitter, i=i + 1, p=paras[i % len(paras)]) for i in range(n))


def star_paragraphs(rng: random.Random, text: str, n: int) -> str:
  paras = (paragraphs_of(text) * 3)[: max(1, n)]
  sep = rng.choice(["\n***\n", "\n\n***\n\n", " *** ", "***", "\n* * *\n", "\n******\n"])
  out = sep.join(paras)
  if rng.random() < 0.15:
    out = "***\n" + out
  if rng.random() < 0.15:
    out += "\n***"
  if rng.random() < 0.05:
    out = out.replace(sep, sep + "***" + sep, 1)  # an empty paragraph in the middle
  return out


def nth_first_word(rng: random.Random, text: str, num: int, nth: int, word: str) -> str:
  paras = (paragraphs_of(text) * 3)[: max(1, near(rng, num, 1))]
  if 0 < nth <= len(paras):
    first = rng.choice(
      [
        word,
        word.capitalize(),
        word.upper(),
        f'"{word.capitalize()}',
        f"{word.capitalize()},",
        f"**{word.capitalize()}**",
        f"'{word}",
      ]
    )
    paras[nth - 1] = first + " " + paras[nth - 1]
  return rng.choice(["\n\n", "\n\n", "\n\n\n", "\n"]).join(paras)


def placeholders(rng: random.Random, text: str, n: int) -> str:
  words = text.split()
  names = ["[name]", "[address]", "[date]", "[company]", "[x]", "[ ]", "[Your Name]", "[phone number]"]
  for _ in range(n):
    words.insert(rng.randint(0, len(words)), rng.choice(names))
  return " ".join(words)


def highlights(rng: random.Random, text: str, n: int) -> str:
  parts = sentences_of(text)
  for i in rng.sample(range(len(parts)), min(len(parts), n)):
    parts[i] = rng.choice(["*{}*", "**{}**", "* {} *", "*{}\n*"]).format(parts[i])
  return " ".join(parts)


def postscript(rng: random.Random, text: str, marker: str | None) -> str:
  marker = rng.choice([marker or "P.S.", "P.S.", "P.P.S.", "P.P.S", "PS:", "p.s.", "P. S.", "P.p.s", "Postscript:"])
  return text + rng.choice(["\n\n", "\n", " "]) + f"{marker} Thanks for reading!" + rng.choice(["", "\n"])


def quoted(rng: random.Random, text: str) -> str:
  return rng.choice(['"{}"', ' "{}" ', '"{}', "\u201c{}\u201d", '"{}"\n', '*"{}"*']).format(text)


def as_json(rng: random.Random, text: str) -> str:
  body = json.dumps({"title": text.split("\n")[0][:40], "answer": text}, indent=rng.choice([None, 2]))
  return rng.choice(
    [
      "{}",
      "```json\n{}\n```",
      "```JSON\n{}\n```",
      "```\n{}\n```",
      "Here is the JSON:\n{}",
      "{}}}",
      "```Json\n{}\n```  ",
    ]
  ).format(body)


def titled(rng: random.Random, text: str) -> str:
  title = " ".join(text.split()[: rng.randint(1, 5)]).strip("*#:")
  return rng.choice(
    ["<<{t}>>\n\n{x}", "<<{t}>> {x}", "<< >>\n{x}", "<<{t}\n>>{x}", "# <<{t}>>\n{x}", "{x}\n<<{t}>>", "<{t}>\n{x}"]
  ).format(t=title, x=text)


def two_responses(rng: random.Random, text: str, other: str) -> str:
  second = rng.choice([other, other, text, ""])
  return rng.choice(
    [
      "{a}\n******\n{b}",
      "{a}\n\n******\n\n{b}",
      "******\n{a}\n******\n{b}",
      "{a} ****** {b}",
      "{a}\n******\n{b}\n******",
      "{a}\n*******\n{b}",
    ]
  ).format(a=text, b=second)


def generic(rng: random.Random, text: str, other: str) -> str:
  kind = rng.choice(
    [
      "upper",
      "lower",
      "tricky",
      "no_comma",
      "chatty",
      "quoted",
      "truncate",
      "json",
      "title",
      "stars",
      "two",
      "ps",
      "caps",
      "markdown",
      "same",
    ]
  )
  if kind == "upper":
    return text.upper()
  if kind == "lower":
    return text.lower()
  if kind == "tricky":
    return with_tricky(rng, text)
  if kind == "no_comma":
    return text.replace(",", "")
  if kind == "chatty":
    return rng.choice(CHATTY) + "\n" + text + ("\n" + rng.choice(OUTRO) if rng.random() < 0.5 else "")
  if kind == "quoted":
    return quoted(rng, text)
  if kind == "truncate":
    return " ".join(text.split()[: rng.choice([3, 8, 20, 50, 120])])
  if kind == "json":
    return as_json(rng, text)
  if kind == "title":
    return titled(rng, text)
  if kind == "stars":
    return star_paragraphs(rng, text, rng.randint(1, 6))
  if kind == "two":
    return two_responses(rng, text, other)
  if kind == "ps":
    return postscript(rng, text, None)
  if kind == "caps":
    return caps(rng, text, rng.randint(1, 25))
  if kind == "markdown":
    return re.sub(r"(\w+ \w+)", lambda m: f"**{m.group(1)}**" if rng.random() < 0.05 else m.group(1), text)
  return text


def targeted(rng: random.Random, instruction_id: str, kw: dict[str, Any], text: str, other: str, prompt: str) -> str:
  """A variant of `text` that lands near the edge of this instruction (either side of it)."""
  name = instruction_id.split(":")[1]
  if name == "number_sentences":
    return n_sentences(rng, text, near(rng, kw["num_sentences"], 3))
  if name == "number_words":
    return " ".join(text.split()[: near(rng, kw["num_words"], 8)]) or text
  if name == "capital_word_frequency":
    return caps(rng, with_tricky(rng, text, 2) if rng.random() < 0.5 else text, near(rng, kw["capital_frequency"], 3))
  if name == "number_paragraphs":
    return star_paragraphs(rng, text, near(rng, kw["num_paragraphs"], 1))
  if name == "nth_paragraph_first_word":
    return nth_first_word(rng, text, kw["num_paragraphs"], kw["nth_paragraph"], kw["first_word"])
  if name == "number_placeholders":
    return placeholders(rng, text, near(rng, kw["num_placeholders"], 1))
  if name == "postscript":
    return postscript(rng, text, kw["postscript_marker"])
  if name == "number_bullet_lists":
    return bullets(rng, text, near(rng, kw["num_bullets"], 1))
  if name == "constrained_response":
    return (
      text
      + "\n\n"
      + rng.choice(
        ["My answer is yes.", "My answer is no.", "My answer is maybe.", "My answer is Yes.", "my answer is no."]
      )
    )
  if name == "number_highlighted_sections":
    return highlights(rng, text, near(rng, kw["num_highlights"], 1))
  if name == "multiple_sections":
    splitter = rng.choice([kw["section_spliter"], kw["section_spliter"], "Section", "SECTION"])
    return sections(rng, text, near(rng, kw["num_sections"], 1), splitter)
  if name == "json_format":
    return as_json(rng, text)
  if name == "title":
    return titled(rng, text)
  if name == "two_responses":
    return two_responses(rng, text, other)
  if name == "repeat_prompt":
    repeat = kw["prompt_to_repeat"]
    repeat = rng.choice([repeat, repeat, repeat.lower(), " " + repeat, repeat[:-1], prompt])
    return rng.choice(["{r}\n\n{x}", "{r} {x}", "Sure:\n{r}\n{x}", "**{r}**\n{x}"]).format(r=repeat, x=text)
  if name == "end_checker":
    end = kw["end_phrase"]
    return (
      text
      + rng.choice([" ", "\n\n"])
      + rng.choice([end, end, end.lower(), end + '"', end + "\n**", end + " :)", end.rstrip("?.!")])
    )
  if name == "quotation":
    return quoted(rng, text)
  if name == "english_capital":
    return rng.choice([text.upper(), text.upper(), with_tricky(rng, text).upper(), text])
  if name == "english_lowercase":
    return rng.choice([text.lower(), text.lower(), with_tricky(rng, text).lower(), text])
  if name == "no_comma":
    return rng.choice([text.replace(",", ""), text.replace(",", ""), text])
  if name == "existence":
    words = text.split()
    for k in kw["keywords"]:
      if rng.random() < 0.8:
        words.insert(rng.randint(0, len(words)), k)
    return " ".join(words)
  if name == "frequency":
    words = text.split()
    for _ in range(near(rng, kw["frequency"], 2)):
      words.insert(rng.randint(0, len(words)), rng.choice([kw["keyword"], kw["keyword"].capitalize()]))
    return " ".join(words)
  if name == "forbidden_words":
    return text + (" " + rng.choice(kw["forbidden_words"]) if rng.random() < 0.5 else "")
  if name == "letter_frequency":
    return " ".join(text.split()[: rng.choice([5, 10, 20, 40])]) + " " + kw["letter"] * rng.randint(0, 8)
  return generic(rng, text, other)  # response_language: English prose, the generic variants


def responses_for(row: dict[str, Any], outputs: list[str], per_row: int) -> list[str]:
  rng = random.Random(f"ifeval-agreement/{row['key']}")
  out = []
  for _ in range(per_row):
    text, other = rng.choice(outputs), rng.choice(outputs)
    if rng.random() < 0.65:
      i = rng.randrange(len(row["instruction_id_list"]))
      text = targeted(rng, row["instruction_id_list"][i], row["kwargs"][i], text, other, row["prompt"])
      if rng.random() < 0.3:
        text = generic(rng, text, other)
    else:
      text = generic(rng, text, other)
      if rng.random() < 0.3:
        text = generic(rng, text, other)
    out.append(text)
  return out
