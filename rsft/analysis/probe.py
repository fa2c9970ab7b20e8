"""The forgetting probe inside the training loop (train.probe_every): a dip seen while it happens, without sampling.

Once, at the start of training (step 0: the base model), the model answers `train.probe_items` items of each
benchmark in `train.probe_sets` greedily (at most `train.probe_tokens` tokens; WORKDIR/probe/answers.jsonl, kept
for resumed runs). Every `probe_every` steps the model being trained scores those same answers teacher-forced
(rsft.infer.scorer): how likely it still finds the base's own out-of-domain behaviour. Per set it logs
`probe/<set>/logprob` (mean log-prob per answer token), `probe/<set>/drift` (the base's log-prob minus today's:
> 0 is forgetting) and `probe/<set>/entropy`, plus `probe/markers/logprob`, the mean log-prob of the answer tokens
whose word is a reasoning marker of the analysis lexicon (rsft.analysis.patterns). Seconds per probe on the demo;
the report sets the curves beside the sampled scores (report.probe_vs_scores).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from absl import logging

from rsft import distributed, sharding
from rsft.analysis import patterns
from rsft.convert.model_io import default_stop_ids
from rsft.evals import benchmarks, loaders, preflight
from rsft.evals.requests import Renderer
from rsft.infer import sampler, scorer

ANSWERS = "answers.jsonl"


class Probe:
  """Called by the training loop as probe(step, model) -> scalars. Building it loads the probe items, so a missing
  benchmark file stops train.py before anything trains; prompts are rendered with the run's tokenizer (which a
  demo run only makes once training starts) at the first call."""

  def __init__(self, config: Any, workdir: str):
    self.config = config
    self.path = os.path.join(workdir, "probe", ANSWERS)
    files = loaders.parse_files(config.eval.files)
    self.items = {}
    for name in config.train.probe_sets:
      bench = benchmarks.get(name, config.eval.protocol)
      why = preflight.problem(bench, config.eval, files, graders=False)
      if why is not None:
        raise ValueError(f"train.probe_sets: {name} cannot be read here ({why}); fix it or drop it from the sets.")
      self.items[name] = loaders.load_items(
        bench, loaders.data_dir(config.eval), config.train.probe_items, files.get(name)
      )
    self.answers: list[dict[str, Any]] | None = None

  def _render(self, tokenizer: Any) -> None:
    config = self.config
    renderer = Renderer(tokenizer, config.eval.chat_template, config.data.strip_default_system)
    self.prompts = {
      name: [renderer.prompt({"prompt": it.prompt}, f"{name} item {it.id}") for it in items]
      for name, items in self.items.items()
    }
    lexicon = patterns.parse_lexicon(config.analysis.markers)
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    self.markers = np.asarray(
      [patterns.word_category(tokenizer.convert_tokens_to_string([t]), lexicon) is not None for t in vocab]
    )
    self.tokenizer = tokenizer

  def __call__(self, step: int, model: Any) -> dict[str, float]:
    if self.answers is None:
      self._render(model.tokenizer)
      self.answers = self._load() or self._answer(step, model)
    scores = scorer.score(
      model,
      [a["prompt"] for a in self.answers],
      [a["answer"] for a in self.answers],
      batch_tokens=self.config.eval.score_batch_tokens,
    )
    out, marker_lps = {}, []
    for name in self.prompts:
      rows = [(a, s) for a, s in zip(self.answers, scores) if a["set"] == name and a["answer"]]
      lps = np.concatenate([s.logprobs for _, s in rows]) if rows else np.zeros(0)
      base = np.concatenate([a["base_logprobs"] for a, _ in rows]) if rows else np.zeros(0)
      if lps.size:
        out[f"probe/{name}/logprob"] = float(lps.mean())
        out[f"probe/{name}/drift"] = float((base - lps).mean())
        out[f"probe/{name}/entropy"] = float(np.concatenate([s.entropies for _, s in rows]).mean())
      for a, s in rows:
        marked = self.markers[np.asarray(a["answer"])]
        marker_lps += np.asarray(s.logprobs)[marked].tolist()
    if marker_lps:
      out["probe/markers/logprob"] = float(np.mean(marker_lps))
    return out

  def _load(self) -> list[dict[str, Any]] | None:
    """Answers a previous (resumed) run made, if they are for these sets."""
    if not os.path.exists(self.path):
      return None
    with open(self.path) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    if sorted({r["set"] for r in rows}) != sorted(self.prompts):
      raise ValueError(
        f"{self.path} holds probe answers for sets {sorted({r['set'] for r in rows})}, not "
        f"train.probe_sets {sorted(self.prompts)}; move it away to answer the new sets."
      )
    return rows

  def _answer(self, step: int, model: Any) -> list[dict[str, Any]]:
    """The model's greedy answers (the base's, at step 0) and their log-probs, written once."""
    if step:
      logging.warning("probe: no %s for this run; the probe answers are step %d's, not the base's.", self.path, step)
    flat = [(name, p) for name, ps in self.prompts.items() for p in ps]
    prompts = [p for _, p in flat]
    new = self.config.train.probe_tokens
    # The KV pool every row needs (its prompt's bucket, at most twice it, + the answer), and no more: the device
    # also holds the optimizer state, which the sampler's memory budget does not know about.
    rows = min(len(prompts), 32)
    per_row = -(-(max(64, 2 * max(map(len, prompts))) + new) // 128)
    opts = sampler.Options(max_num_seqs=rows, kv_pages=per_row * -(-rows // sharding.batch_multiple(model.mesh)))
    res = sampler.generate(model, prompts, new, stop_token_ids=default_stop_ids(None, self.tokenizer), options=opts)
    answers = [
      dict(set=name, prompt=p, answer=tokens, base_logprobs=lps, base_step=step)
      for (name, p), tokens, lps in zip(flat, res.tokens, res.logprobs)
    ]
    if distributed.is_primary():
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      with open(self.path + ".tmp", "w") as f:
        f.writelines(json.dumps(a) + "\n" for a in answers)
      os.replace(self.path + ".tmp", self.path)
    return answers
