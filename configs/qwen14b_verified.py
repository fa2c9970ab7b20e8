"""The study's default run: Qwen3-14B-Base on verified long-CoT Math-CoT-20k (paper.md §3, Table 3).

lr 5e-5, 8 epochs of 80 steps, batch 256, max length 20000 (right truncation, no packing), 10% warmup + cosine,
clip 1.0, AdamW wd 0.01, checkpoints at 10, 20, 40, 80, 160, 320, 480, 640. Point model.path at a local copy:
  python train.py --config=configs/qwen14b_verified.py --config.model.path=/ckpt/Qwen3-14B-Base --workdir=...
Fits the study's slices with these defaults (python -m rsft.tools.fit --config=configs/qwen14b_verified.py
--topology=v6e-16 --what=train,sample; docs/fit.md): one 20k row per chip per micro-batch (paper.py), layer
inputs offloaded to host memory, and sampling with 8-way tensor parallelism and as many prompts as memory holds.
Longer rows (docs/fit.md, bench/fit_long.py): 32k tokens fit v6e-16 and v5p-8 as is (--config.data.max_length=32768);
on v6e-8 add --config.mesh.sequence=4 --config.mesh.sequence_attention=ring (context parallelism); 64k tokens need
v6e-32 with whole rows, or v6e-16 with --config.mesh.sequence=2 --config.mesh.sequence_attention=ring.
"""

from configs import paper


def get_config(arg: str | None = None):
  c = paper.get_config(arg or "model=qwen3_14b,data=math_cot,lr=5e-5,epochs=8,batch=256,schedule=cosine")
  c.model.remat = "offload"  # v6e-16: 23.2 of 31.25 GiB per chip (full remat: 34.8, does not fit)
  c.sample.mesh.tensor = 8  # 8 KV heads; the bf16 weights alone (27.5 GiB) would fill one v6e chip
  return c
