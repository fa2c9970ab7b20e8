"""eval.py's grade mode on rows written here, for tests: the graded rows back, in input order."""

import json

from rsft import config as rconfig
from rsft.evals import run


def grade(tmp_path, requests, **eval_cfg) -> list[dict]:
  tmp_path.mkdir(exist_ok=True)
  inp = tmp_path / "in.jsonl"
  inp.write_text("".join(json.dumps(r) + "\n" for r in requests))
  c = rconfig.base_config()
  c.model.dtype = "float32"
  c.eval.update(dict(mode="grade", input=str(inp), output=str(tmp_path / "out.jsonl"), **eval_cfg))
  run.run(c, str(tmp_path / "work"))
  return sorted((json.loads(line) for line in open(tmp_path / "out.jsonl")), key=lambda r: r["index"])
