"""LiveCodeBench: literal-only decoding of private tests, stdin and functional grading in the sandbox."""

import base64
import json
import os
import pickle
import zlib

import pytest

from rsft.evals import benchmarks, grading, loaders
from rsft.evals.graders import livecodebench as lcb


def encode(tests):  # LiveCodeBench's private-test encoding
  return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


STDIN_TESTS = [{"input": "3\n1 2 3\n", "output": "6\n", "testtype": "stdin"}]
PRIVATE = [
  {"input": "2\n10 -4\n", "output": "6", "testtype": "stdin"},
  {"input": "1\n0.5\n", "output": "0.50", "testtype": "stdin"},
]
FUNC_TESTS = [
  {"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional"},
  {"input": "[3, 3]\n6", "output": "[0, 1]", "testtype": "functional"},
]


@pytest.fixture
def data_dir(tmp_path):
  rows = [
    {
      "question_id": "sum",
      "question_content": "Print the sum of n numbers.",
      "starter_code": "",
      "public_test_cases": json.dumps(STDIN_TESTS),
      "private_test_cases": encode(PRIVATE),
      "metadata": "{}",
      "difficulty": "easy",
    },
    {
      "question_id": "two-sum",
      "question_content": "Return indices of two numbers adding to target.",
      "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
      "public_test_cases": json.dumps(FUNC_TESTS[:1]),
      "private_test_cases": encode(FUNC_TESTS[1:]),
      "metadata": json.dumps({"func_name": "twoSum"}),
      "difficulty": "medium",
    },
  ]
  (tmp_path / "livecodebench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(tmp_path)


SUM_OK = (
  "```python\nfrom decimal import Decimal\nn = int(input())\nprint(sum(Decimal(x) for x in input().split()))\n```"
)
SUM_WRONG = "```python\nn = int(input())\nprint(n)\n```"
TWO_SUM = (
  "```python\nfrom typing import List\nclass Solution:\n    def twoSum(self, nums, target):\n"
  "        seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
  "                return (seen[target - x], i)\n            seen[x] = i\n```"
)


def test_stdin_and_functional_problems(data_dir):
  bench = benchmarks.get("livecodebench", "rsft")
  items = loaders.load_items(bench, data_dir)
  assert len(items[0].extra["tests"]) == 3 and items[1].extra["func_name"] == "twoSum"
  assert "### Format: You will use the following starter code" in items[1].prompt
  assert "Read the inputs from stdin" in items[0].prompt
  responses = [f"<think>easy</think>{SUM_OK}", f"<think>hash map</think>{TWO_SUM}"]
  assert [g["score"] for g in grading.grade(bench, items, responses)] == [1.0, 1.0]  # "0.5" == "0.50" as Decimal
  wrong = grading.grade(
    bench, items, [SUM_WRONG, "```python\nclass Solution:\n    def twoSum(self, n, t):\n        return [1, 0]\n```"]
  )
  assert [g["score"] for g in wrong] == [0.0, 0.0]
  slow = grading.grade(bench, items[:1], ["```python\nwhile True: pass\n```"])[0]
  assert slow["score"] == 0.0
  fake = "```python\nimport os, sys\nsys.__stdout__.write('\\n__LCB_00__[true, true, true]\\n'); os._exit(0)\n```"
  assert grading.grade(bench, items[:1], [fake])[0]["score"] == 0.0  # output cannot pose as the results line


def test_private_tests_never_unpickle_code():
  class Evil:
    def __reduce__(self):
      return (os.system, ("touch /tmp/rsft_pwned",))

  payload = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
  with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
    lcb.decode_tests(payload)
  assert not os.path.exists("/tmp/rsft_pwned")
  assert lcb.decode_tests(encode(PRIVATE)) == PRIVATE
