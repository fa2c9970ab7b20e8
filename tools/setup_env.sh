#!/usr/bin/env bash
# The README's set-up command: a fresh virtual environment holding exactly the locked versions.
#   bash tools/setup_env.sh [VENV]      # default .venv; an existing one is deleted first, never reused
# Installs bubblewrap (the sandbox for generated code) when missing, then in the new venv: the CPU torch
# (requirements/torch-cpu.txt), every other package from requirements/cpu.txt with its hash checked and no
# resolution (--no-deps: the lock is complete), and rsft itself (editable, no build isolation: the locked setuptools
# builds it). `pip check` then proves the set consistent. PYTHON picks the interpreter (the lock is for 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "requirements/cpu.txt is locked for Python 3.11; $PYTHON is $("$PYTHON" -V 2>&1). Set PYTHON=python3.11" \
       "(or re-lock for your Python: docs/dependencies.md)." >&2
  exit 2
fi
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null
  else echo "bubblewrap (bwrap) is missing: sudo apt-get install -y bubblewrap  (the sandbox for generated code)" >&2; exit 2
  fi
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# The CPU wheel from wherever pip's own config finds it (a wheel folder, a mirror), else from PyTorch's index.
"${PIP[@]}" install --no-deps -r requirements/torch-cpu.txt 2>/dev/null ||
  "${PIP[@]}" install --no-deps --index-url https://download.pytorch.org/whl/cpu -r requirements/torch-cpu.txt
"${PIP[@]}" install --no-deps --require-hashes -r requirements/cpu.txt
"${PIP[@]}" install --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check
echo "ready: $VENV ($("$VENV/bin/python" -c 'import jax, flax, transformers, nltk, torch; print(f"jax {jax.__version__}, flax {flax.__version__}, transformers {transformers.__version__}, nltk {nltk.__version__}, torch {torch.__version__}")'))"
