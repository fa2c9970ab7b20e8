#!/usr/bin/env bash
# Re-resolves the locks from pyproject.toml's ranges (docs/dependencies.md says when and how):
#   pip install uv==0.13.9 && bash requirements/lock.sh            # newest versions the ranges allow
#   bash requirements/lock.sh --upgrade-package jax --upgrade-package jaxlib  # extra flags go to every uv call
# Without --upgrade/--upgrade-package, uv keeps every version already in a lock (uv pip compile reads the -o file),
# so a re-run only moves what the ranges force. Then: bash tools/setup_env.sh && .venv/bin/python -m pytest -n 2 tests
#
# cpu.txt: the CI / developer environment (CPU jax, libtpu for the AOT fit check, the test tools), Python 3.11 on
#          Linux x86_64, hashed. torch, the parity reference, is pinned apart in torch-cpu.txt: its CPU build is a
#          local-version wheel (+cpu) from PyTorch's own index (or a machine's wheel folder), not from PyPI.
# tpu.txt, gpu.txt: what a TPU VM / GPU host runs (no test tools, no torch), any Python >= 3.11 and platform
#          (universal markers), held to cpu.txt's versions wherever they overlap: one tested stack, not one per Python.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=(uv)
command -v uv >/dev/null || UV=(python -m uv)
TORCH=$(grep -E '^torch==' requirements/torch-cpu.txt | head -1)
WHEELS=()
[ -d /opt/wheels ] && WHEELS=(--find-links /opt/wheels)   # this workplace's folder holding the CPU torch wheel
common=(--quiet --generate-hashes --no-header --annotation-style line --custom-compile-command "bash requirements/lock.sh")
"${UV[@]}" pip compile pyproject.toml requirements/lock.in --extra test "${common[@]}" "${WHEELS[@]}" \
  --constraint <(echo "$TORCH") --no-emit-package torch \
  --python-version 3.11 --python-platform x86_64-manylinux_2_31 -o requirements/cpu.txt "$@"
for extra in tpu gpu; do
  "${UV[@]}" pip compile pyproject.toml requirements/lock.in --extra "$extra" "${common[@]}" \
    --universal --python-version 3.11 --constraint requirements/cpu.txt -o "requirements/$extra.txt" "$@"
done
echo "locked: $(grep -c '==' requirements/cpu.txt) cpu, $(grep -c '==' requirements/tpu.txt) tpu, $(grep -c '==' requirements/gpu.txt) gpu pins"
