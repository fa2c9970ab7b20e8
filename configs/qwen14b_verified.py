"""The study's default run: Qwen3-14B-Base on verified long-CoT Math-CoT-20k (paper.md §3, Table 3).

lr 5e-5, 8 epochs of 80 steps, batch 256, max length 20000 (right truncation, no packing), 10% warmup + cosine,
clip 1.0, AdamW wd 0.01, checkpoints at 10, 20, 40, 80, 160, 320, 480, 640. Point model.path at a local copy:
  python train.py --config=configs/qwen14b_verified.py --config.model.path=/ckpt/Qwen3-14B-Base --workdir=...
"""

from configs import paper


def get_config(arg: str | None = None):
  return paper.get_config(arg or "model=qwen3_14b,data=math_cot,lr=5e-5,epochs=8,batch=256,schedule=cosine")
