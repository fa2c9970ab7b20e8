"""CPU demo: Countdown long-CoT data -> a tiny Qwen3-architecture model trained from scratch -> checkpoints.

  python train.py --config=configs/countdown_tiny.py --workdir=/tmp/countdown
  python eval.py --config=configs/countdown_tiny.py --workdir=/tmp/countdown
  python analyze.py --config=configs/countdown_tiny.py --workdir=/tmp/countdown
Generates 2,000 verified backtracking traces and a 512-token BPE tokenizer in WORKDIR, then trains 2 epochs
(164 steps of 16 packed rows x 512 tokens; about 3 minutes on 2 CPU cores, loss ~5.9 -> ~1.2), saving
checkpoints on a log-spaced schedule as the study does.
"""

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config(arg)
  c.model.arch = dict(model_type="qwen3", vocab_size=512, hidden_size=128, intermediate_size=384, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=32, rope_theta=10000.0, qk_norm=True,
                      tie_word_embeddings=True, max_position_embeddings=1024)
  c.model.dtype = "float32"
  c.model.remat = "none"
  c.mesh.fsdp = 1
  c.mesh.data = -1
  c.data.generate = "countdown"
  c.data.generate_rows = 2000
  c.data.max_length = 512
  c.data.packing = True
  c.train.num_epochs = 2
  c.train.global_batch_size = 16
  c.train.micro_batch_size = 16
  c.train.lr = 3e-3
  c.train.warmup_ratio = 0.05
  c.train.loss_chunk = 256
  c.train.log_every = 5
  c.checkpoint.save_steps = (5, 10, 20, 40, 80, 160)  # and the last step
  # Evaluation (python eval.py, same config): in-domain held-out Countdown puzzles plus a cross-domain probe.
  c.eval.benchmarks = ("countdown", "math500")
  c.eval.limit = 32
  c.eval.n = 1
  c.eval.max_new_tokens = 320
  c.sample.max_num_seqs = 32
  c.sample.mesh.data = -1
  c.analysis.in_domain = ("countdown",)
  c.analysis.tokens = True  # per-token log-probs of 16 step-164 countdown responses under every checkpoint
  return c
