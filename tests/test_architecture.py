"""The layering of docs/architecture.md, checked on every import in rsft/ (function-local ones included): a module
imports only its own package and lower layers, and rsft/api.py only re-exports."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lowest first. A package may import its own modules and any package of a lower rank; equal ranks are independent.
RANKS = {
  "sharding": 0,
  "distributed": 0,
  "hardware": 0,
  "tasks": 0,
  "user_cache": 0,
  "tracking": 0,
  "models": 1,
  "workdir": 1,
  "convert": 2,
  "config": 3,
  "infer": 4,
  "data": 5,
  "train": 6,
  "evals": 6,
  "analysis": 7,
  "tools": 8,
  "api": 9,
  "__init__": 10,
}


def _imports(path):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.lineno, node.module
      if node.module == "rsft":  # from rsft import convert, sharding
        yield from ((node.lineno, f"rsft.{a.name}") for a in node.names)


def _package(dotted):
  parts = dotted.split(".")
  return parts[1] if parts[0] == "rsft" and len(parts) > 1 else None


def test_every_import_points_down():
  problems, seen = [], set()
  for folder, _, files in os.walk(os.path.join(ROOT, "rsft")):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      mine = _package(os.path.relpath(path, ROOT)[:-3].replace(os.sep, "."))
      assert mine in RANKS, f"{path}: package {mine!r} has no layer in this test and docs/architecture.md"
      seen.add(mine)
      for line, module in _imports(path):
        theirs = _package(module)
        if theirs is None or theirs == mine:
          continue
        assert theirs in RANKS, f"{path}:{line}: imports {module}, which has no layer"
        if RANKS[theirs] >= RANKS[mine]:
          problems.append(
            f"{os.path.relpath(path, ROOT)}:{line}: {mine} (layer {RANKS[mine]}) imports {module} "
            f"(layer {RANKS[theirs]})"
          )
  assert not problems, "\n".join(problems)
  assert {"models", "convert", "infer", "sharding", "api"} <= seen


def test_api_only_re_exports():
  tree = ast.parse(open(os.path.join(ROOT, "rsft", "api.py")).read())
  defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
  assert not defined, f"rsft/api.py defines {defined}; the public API re-exports what the layers own"


def test_the_forward_and_chunked_head_are_called_from_one_module():
  """Merging a model and applying the chunked head happens in rsft/models/forward.py only."""
  callers = []
  for folder, _, files in os.walk(os.path.join(ROOT, "rsft")):
    for name in files:
      path = os.path.join(folder, name)
      if name.endswith(".py") and "chunked_logprobs(" in open(path).read():
        callers.append(os.path.relpath(path, ROOT))
  assert sorted(callers) == ["rsft/models/forward.py", "rsft/models/head.py"], callers
