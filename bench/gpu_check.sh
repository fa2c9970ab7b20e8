#!/usr/bin/env bash
# Inference checks for a lent GPU, under 8 minutes: decode tokens/s and the fraction of the memory-bandwidth
# roofline on a Qwen3-0.6B-shaped model, then the tiny-model decode/score ratios of the CPU benchmark.
#   bash bench/gpu_check.sh            (needs jax[cuda], torch with CUDA, transformers)
#   bash bench/gpu_check.sh --smoke    (every script at its smoke size: the path in under a minute)
# Without an NVIDIA GPU it says "skipped: ..." and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "skipped: bench/gpu_check.sh needs an NVIDIA GPU (nvidia-smi found none)"
  exit 0
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.5   # torch runs the reference in the same process
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if [[ "${1:-}" == "--smoke" ]]; then
  python bench/decode_roofline.py --smoke
  python bench/sample_throughput.py --smoke
  exit 0
fi
timeout 330 python bench/decode_roofline.py --size=0.6b --batch=32 --prompt=256 --new=512
timeout 120 python bench/sample_throughput.py
