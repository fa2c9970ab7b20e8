#!/usr/bin/env bash
# Training and decode figures for a lent GPU, under 8 minutes (docs/performance.md):
#   1. train-step MFU, rsft vs transformers/PyTorch (same process, same GPU), Qwen3-0.6B and -1.7B shapes with
#      random weights, bf16, AdamW, 4 x 4096 tokens per step, full remat / gradient checkpointing;
#   2. decode tokens/s and the fraction of the memory-bandwidth roofline (Qwen3-0.6B shape, batch 32).
#   bash bench/gpu_step.sh            (needs jax[cuda12], torch with CUDA, transformers)
#   bash bench/gpu_step.sh --smoke    (every script at its smoke size: the path in under a minute)
# Without an NVIDIA GPU it says "skipped: ..." and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "skipped: bench/gpu_step.sh needs an NVIDIA GPU (nvidia-smi found none)"
  exit 0
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45   # torch runs the reference in the same process
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
if [[ "${1:-}" == "--smoke" ]]; then
  python bench/step_mfu.py --smoke
  python bench/decode_roofline.py --smoke
  exit 0
fi
timeout 150 python bench/step_mfu.py --arch=qwen3_0.6b --batch=4 --seq=4096 --steps=5
timeout 180 python bench/step_mfu.py --arch=qwen3_1.7b --batch=4 --seq=4096 --steps=5
timeout 120 python bench/decode_roofline.py --size=0.6b --batch=32 --prompt=256 --new=512
