"""IFEval checkers on hand-made responses, one pass and one fail per instruction id, plus the real items."""

import json
import os

import pytest

from rsft.evals import benchmarks, grading, loaders
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
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 4, "let_relation": "at least"},
     "#a #b #c #d", "#a #b"),  # punctuation letters count (upstream HEAD; PROVENANCE note 1)
    ("language:response_language", {"language": "fr"}, FR, EN),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "One. Two here.", "One. Two. Three."),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"},
     "Mr. Smith came. He left.", "Mr. Smith came home."),  # "Mr." does not end a sentence
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\nb\n***\nc", "a\n***\nb"),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four five",
     "one two three"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First part.\n\n\"Then, the end.", "First part.\n\nAfter that."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name] at [address]", "Dear [name]"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. bye", "Hi. PS bye"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\np.p.s. more", "Hi. P.S. more"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two", "* one\n* two\n* three"),
    ("detectable_format:constrained_response", {}, "I think so. My answer is yes.", "Yes."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", "*one* and * *"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\na\nSection 2\nb", "Section 1\na"),
    ("detectable_format:json_format", {}, "```json\n{\"a\": 1}\n```", "{a: 1}"),
    ("detectable_format:title", {}, "<<My Poem>>\nroses", "My Poem\nroses"),
    ("combination:two_responses", {}, "Answer A\n******\nAnswer B", "Answer A\n******\nAnswer A"),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a poem. Here it is.",
     "Here: write a poem."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. any other questions?\"",
     "Any other questions? Done."),
    ("startend:quotation", {}, "\"quoted\"", "\"not quoted"),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "THIS is VERY loud", "only ONE here"),
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


def test_loose_accepts_markdown_and_a_chatty_first_line():
  kwargs = {"prompt_to_repeat": "Write a poem."}
  response = "Sure! Here is my reply:\nWrite a poem. Roses are red."
  assert not ifeval.follows("combination:repeat_prompt", kwargs, response)
  assert ifeval.follows("combination:repeat_prompt", kwargs, response, loose=True)
  assert ifeval.follows("startend:quotation", {}, "*\"quoted\"*", loose=True)
  g = ifeval.grade(["punctuation:no_comma", "startend:quotation"], [{}, {}], "Sure:\n\"no commas\"")
  assert g["prompt_strict"] == 0.0 and g["prompt_loose"] == 1.0 and g["inst_strict"] == [1.0, 0.0]


def test_real_items_grade_and_thinking_is_stripped():
  bench = benchmarks.get("ifeval")
  items = loaders.load_items(bench, BENCH)
  assert len(items) == 541
  grades = grading.grade(bench, items, ["<think>,,,</think>" + "x" * 10] * len(items))
  assert all(g["status"] == "ok" and set(g["extra"]) == {"prompt_loose", "inst_strict", "inst_loose"}
             for g in grades)
  comma = next(i for i, it in enumerate(items) if it.extra["instruction_ids"] == ["punctuation:no_comma"])
  ok = grading.grade(bench, [items[comma]], ["<think>a, b, c</think>No commas at all."])[0]
  unclosed = grading.grade(bench, [items[comma]], ["<think>a, b, c and no end"])[0]
  assert ok["score"] == 1.0 and unclosed["score"] == 0.0 and unclosed["status"] == "no_answer"
  row = json.loads(open(os.path.join(BENCH, "ifeval.jsonl")).readline())
  assert items[0].prompt == f"Question: {row['prompt']}\nAnswer:"
