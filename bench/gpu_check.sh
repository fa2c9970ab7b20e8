#!/usr/bin/env bash
# Inference checks for a lent GPU, under 8 minutes: decode tokens/s and the fraction of the memory-bandwidth
# roofline on a Qwen3-0.6B-shaped model, then the tiny-model decode/score ratios of the CPU benchmark.
#   bash bench/gpu_check.sh            (needs jax[cuda], torch with CUDA, transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.5   # torch runs the reference in the same process
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 330 python bench/decode_roofline.py --size=0.6b --batch=32 --prompt=256 --new=512
timeout 120 python bench/sample_throughput.py
