"""IFEval checkers on hand-made responses, one pass and one fail per instruction id, plus the real items.

Every expected value here was checked against lm-evaluation-harness 0.4.9.1 (`lm_eval/tasks/ifeval/instructions.py`,
`instructions_util.py`, `utils.py`); bench/ifeval_agreement.py compares the two at scale. lm_eval is not imported
here: CI does not install it. Sentence and word tokenization need NLTK's punkt_tab model (NLTK_DATA).
"""

import json
import os

import nltk
import pytest

from rsft.evals import benchmarks, errors, extract, grading, loaders
from rsft.evals.graders import ifeval

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "benchmarks")
EN = "The weather today is sunny and warm, and everyone in the park seems happy to be outside."
FR = "Le temps est ensoleillé aujourd'hui et tout le monde dans le parc semble heureux d'être dehors."

CASES = [  # (instruction id, kwargs, a response that follows it, one that does not)
  ("keywords:existence", {"keywords": ["banana", "moon"]}, "A Banana on the moon.", "A banana on Mars."),
  ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": "at least"}, "cat cat Cat", "cat cat"),
  ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "one cat", "cat cat"),
  ("keywords:forbidden_words", {"forbidden_words": ["red", "blue"]}, "Reddish green.", "It was Red."),
  ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"}, "zzZ", "zz"),
  (
    "keywords:letter_frequency",
    {"letter": "#", "let_frequency": 4, "let_relation": "at least"},
    "#a #b #c #d",
    "#a #b",
  ),  # punctuation counts (upstream HEAD; PROVENANCE note 1): lm_eval draws a random letter
  ("language:response_language", {"language": "fr"}, FR, EN),
  (
    "length_constraints:number_sentences",
    {"num_sentences": 3, "relation": "less than"},
    "One. Two here.",
    "One. Two. Three.",
  ),
  (
    "length_constraints:number_sentences",
    {"num_sentences": 2, "relation": "at least"},
    "Mr. Smith came. He left.",
    "Mr. Smith came home.",
  ),  # "Mr." does not end a sentence
  (
    "length_constraints:number_sentences",
    {"num_sentences": 2, "relation": "less than"},
    "Wait... what happened next?",
    "Prof. Lee teaches here. Gen. Patton left.",
  ),  # punkt; the regex splitter: 2, 4
  ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\nb\n***\nc", "a\n***\nb"),
  (
    "length_constraints:number_words",
    {"num_words": 5, "relation": "at least"},
    "one two three four five",
    "one two three",
  ),
  (
    "length_constraints:nth_paragraph_first_word",
    {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
    'First part.\n\n"Then, the end.',
    "First part.\n\nAfter that.",
  ),
  ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name] at [address]", "Dear [name]"),
  ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. bye", "Hi. PS bye"),
  ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\np.p.s. more", "Hi. P.S. more"),
  ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two", "* one\n* two\n* three"),
  ("detectable_format:constrained_response", {}, "I think so. My answer is yes.", "Yes."),
  ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", "*one* and * *"),
  (
    "detectable_format:multiple_sections",
    {"section_spliter": "Section", "num_sections": 2},
    "Section 1\na\nSection 2\nb",
    "Section 1\na",
  ),
  ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
  ("detectable_format:title", {}, "<<My Poem>>\nroses", "My Poem\nroses"),
  ("combination:two_responses", {}, "Answer A\n******\nAnswer B", "Answer A\n******\nAnswer A"),
  (
    "combination:repeat_prompt",
    {"prompt_to_repeat": "Write a poem."},
    "write a poem. Here it is.",
    "Here: write a poem.",
  ),
  (
    "startend:end_checker",
    {"end_phrase": "Any other questions?"},
    'Done. any other questions?"',
    "Any other questions? Done.",
  ),
  ("startend:quotation", {}, '"quoted"', '"not quoted'),
  (
    "change_case:capital_word_frequency",
    {"capital_frequency": 2, "capital_relation": "at least"},
    "THIS is VERY loud",
    "only ONE here",
  ),
  (
    "change_case:capital_word_frequency",
    {"capital_frequency": 2, "capital_relation": "less than"},
    "Our STATE-OF-THE-ART lab",
    "the U.S. is BIG",
  ),  # nltk tokens: 1 and 2 (regex words: 4 and 3)
  ("change_case:english_capital", {}, EN.upper(), EN),
  ("change_case:english_lowercase", {}, EN.lower(), EN),
  ("punctuation:no_comma", {}, "No commas here.", "Well, a comma."),
]


def test_every_instruction_id_has_a_case():
  assert {c[0] for c in CASES} == set(ifeval.CHECKERS) and len(ifeval.CHECKERS) == 25


@pytest.mark.parametrize("instruction,kwargs,good,bad", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_checker_strict(instruction, kwargs, good, bad):
  assert ifeval.follows(instruction, kwargs, good)
  assert not ifeval.follows(instruction, kwargs, bad)


# instructions_util.count_sentences (punkt, English) on texts where the regex splitter that rsft used before (and
# instructions_util.split_into_sentences) counts otherwise: (text, punkt's count, the regex splitter's count).
SENTENCES = [
  ("Mr. Smith came. He left.", 2, 2),
  ("The price is 3.5 dollars. That is cheap.", 2, 2),
  ('He said "Hi." Then left.', 2, 2),
  ("See e.g. the docs. Done.", 3, 2),
  ("Wait... what happened next?", 1, 2),
  ("Visit www.example.com today. It is free.", 2, 3),
  ("J.R.R. Tolkien wrote The Hobbit. It appeared in 1937.", 3, 2),
  ("Prof. Lee teaches here. Gen. Patton left.", 2, 4),
  ("Hello!!! How are you??", 3, 5),
  ("Temperatures reached 41.2 \u00b0C vs. 39 \u00b0C last year.", 1, 2),
  ("\u201cThat\u2019s amazing!\u201d she exclaimed. \u201cReally?\u201d", 2, 4),  # nltk >= 3.10.2 ends one at \u201d: 3
  ("Jan. 5th was cold. Feb. 2nd too.", 2, 4),
  ("I LIVE IN THE U.S. IT IS BIG.", 2, 1),
  ("This is a sentence.This is another.", 1, 2),
]

# CapitalWordFrequencyChecker (instructions.py) counts nltk.word_tokenize tokens with str.isupper(): hyphenated and
# dotted capitals stay whole, "e.g." loses its last dot, contractions split ("I'M" -> I + 'M, "DON'T" -> DO + N'T).
CAPITALS = [
  ("STATE-OF-THE-ART tech", 1),
  ("the U.S. is BIG", 2),
  ("I'M NOT SURE, DON'T ASK", 7),
  ("A.I. and U.S.A. are WELL-KNOWN", 3),
  ("AI-POWERED SYSTEMS", 2),
  ("e.g. E.G. N.B.", 2),
  ("U.S. U.K. EU", 3),
  ("AI/ML IS HOT", 3),
  ("NASA's ROVER", 2),
  ("Our STATE\u2014OF\u2014THE\u2014ART LAB\u2013WIDE test", 2),  # nltk >= 3.9.3 splits at dashes: 6
]


@pytest.mark.parametrize("text,count,_regex", SENTENCES)
def test_sentences_are_counted_by_punkt(text, count, _regex):
  assert ifeval.count_sentences(text) == count


@pytest.mark.parametrize("text,count", CAPITALS)
def test_capital_words_are_nltk_tokens(text, count):
  assert sum(1 for w in ifeval.word_tokens(text) if w.isupper()) == count
  at_least = {"capital_frequency": count, "capital_relation": "at least"}
  assert ifeval.follows("change_case:capital_word_frequency", at_least, text)
  assert not ifeval.follows("change_case:capital_word_frequency", {**at_least, "capital_frequency": count + 1}, text)


def test_kwargs_as_lm_eval_reads_them():
  # utils.py keeps only truthy kwargs (HF's release pads each instruction's kwargs with None), and build_description
  # strips the keyword, section splitter and postscript marker.
  padded = {"num_highlights": 2, "relation": None, "keywords": [], "section_spliter": "", "num_words": 0}
  assert ifeval.follows("detectable_format:number_highlighted_sections", padded, "*one* and **two**")
  assert ifeval.follows(
    "keywords:frequency", {"keyword": " cat ", "frequency": 2, "relation": "at least"}, "a cat, another cat"
  )
  assert ifeval.follows(
    "detectable_format:multiple_sections",
    {"section_spliter": " Section ", "num_sections": 2},
    "Section 1\na\nSection 2\nb",
  )
  assert ifeval.follows("detectable_content:postscript", {"postscript_marker": "P.S. "}, "Hi.\np. s. bye")


def test_missing_punkt_says_how_to_get_it(monkeypatch):
  downloads = []
  monkeypatch.setattr(nltk.data, "find", lambda *a, **k: (_ for _ in ()).throw(LookupError("not found")))
  monkeypatch.setattr(nltk, "download", lambda *a, **k: downloads.append(a) or False)
  ifeval._punkt.cache_clear()
  ifeval._download_punkt.cache_clear()
  try:
    for _ in range(2):
      with pytest.raises(errors.EnvironmentProblem, match="NLTK_DATA.*nltk.download"):
        ifeval.count_sentences("One. Two.")
    assert downloads == [("punkt_tab",)]  # tried once, not once per response
  finally:
    ifeval._punkt.cache_clear()
    ifeval._download_punkt.cache_clear()


def test_loose_accepts_markdown_and_a_chatty_first_line():
  kwargs = {"prompt_to_repeat": "Write a poem."}
  response = "Sure! Here is my reply:\nWrite a poem. Roses are red."
  assert not ifeval.follows("combination:repeat_prompt", kwargs, response)
  assert ifeval.follows("combination:repeat_prompt", kwargs, response, loose=True)
  assert ifeval.follows("startend:quotation", {}, '*"quoted"*', loose=True)
  g = ifeval.grade(["punctuation:no_comma", "startend:quotation"], [{}, {}], 'Sure:\n"no commas"')
  assert g["prompt_strict"] == 0.0 and g["prompt_loose"] == 1.0 and g["inst_strict"] == [1.0, 0.0]


def test_real_items_grade_and_thinking_is_stripped():
  bench = benchmarks.get("ifeval")
  items = loaders.load_items(bench, BENCH)
  assert len(items) == 541
  grades = grading.grade(bench, items, ["<think>,,,</think>" + "x" * 10] * len(items))
  assert all(g["status"] == "ok" and set(g["extra"]) == {"prompt_loose", "inst_strict", "inst_loose"} for g in grades)
  comma = next(i for i, it in enumerate(items) if it.extra["instruction_ids"] == ["punctuation:no_comma"])
  ok = grading.grade(bench, [items[comma]], ["<think>a, b, c</think>No commas at all."])[0]
  unclosed = grading.grade(bench, [items[comma]], ["<think>a, b, c and no end"])[0]
  assert ok["score"] == 1.0 and unclosed["score"] == 0.0
  left = extract.apply_think(bench.think, "<think>a, b, c and no end")  # the policy decides if an answer is left
  assert unclosed["status"] == ("ok" if left else "no_answer")
  row = json.loads(open(os.path.join(BENCH, "ifeval.jsonl")).readline())
  assert items[0].prompt == f"Question: {row['prompt']}\nAnswer:"
