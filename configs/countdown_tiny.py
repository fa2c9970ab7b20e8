"""CPU demo: the study's question in miniature, from nothing, on 2 CPU cores.

  python train.py --config=configs/countdown_tiny.py --workdir=/tmp/countdown &
  python eval.py --config=configs/countdown_tiny.py --workdir=/tmp/countdown --config.eval.follow=True
  python analyze.py --config=configs/countdown_tiny.py --workdir=/tmp/countdown
(eval.py follows training: each checkpoint is scored as it lands; without follow it scores them all afterwards.)
A tiny Qwen3-architecture model first becomes a "base model" with short-answer skills (one-operation arithmetic and
sorting, answered directly: config.pretrain, WORKDIR/base), then is fine-tuned on verified long-CoT Countdown
traces with backtracking (three numbers 1-6), saving checkpoints on a log-spaced schedule; step 0 is the base.
eval.py scores every checkpoint in-domain (held-out Countdown puzzles, never in the training rows) and
out-of-domain (the base's own skills); analyze.py writes the report. docs/demo.md has the measured numbers.
"""

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config(arg)
  c.model.arch = dict(
    model_type="qwen3",
    vocab_size=512,
    hidden_size=128,
    intermediate_size=384,
    num_layers=4,
    num_heads=2,
    num_kv_heads=1,
    head_dim=64,
    rope_theta=10000.0,
    qk_norm=True,
    tie_word_embeddings=True,
    max_position_embeddings=1024,
  )
  c.model.dtype = "float32"
  c.model.remat = "none"
  c.mesh.fsdp = 1
  c.mesh.data = -1
  # The base model: short-answer skills first (rsft/tasks/short_answer.py).
  c.pretrain.generate = ("arithmetic", "sorting")
  c.pretrain.rows = 12000
  c.pretrain.num_epochs = 2
  c.pretrain.lr = 3e-3
  c.pretrain.max_length = 128
  c.pretrain.global_batch_size = 8
  # SFT: long-CoT Countdown (rsft/tasks/countdown.py, level countdown3).
  c.data.generate = "countdown3"
  c.data.generate_rows = 2000
  c.data.max_length = 512
  c.data.truncation = "drop"  # a trace cut short would teach an answer that never comes
  c.data.packing = True
  c.train.num_epochs = 3
  c.train.global_batch_size = 4
  c.train.micro_batch_size = 4
  c.train.lr = 2e-3
  c.train.b2 = 0.95  # and the base's: Adam's second moment over ~20 steps, not ~1000, for a run of a few hundred
  c.train.schedule = "wsd"  # and the base's: the peak rate until the last fifth, then linearly to 0
  c.train.warmup_ratio = 0.05
  c.train.loss_chunk = 256
  c.train.log_every = 5
  # The forgetting probe: the base's own answers to 16 held-out questions of each skill, scored every 10 steps.
  c.train.probe_every = 10
  c.train.probe_sets = ("arithmetic", "sorting")
  c.train.probe_items = 16
  c.train.probe_tokens = 48
  c.checkpoint.save_steps = (10, 20, 40, 80, 160, 320, 640)  # and step 0 (the base) and the last step
  # Evaluation (python eval.py, same config): in-domain held-out puzzles, out-of-domain the base's skills.
  c.eval.benchmarks = ("countdown3", "arithmetic", "sorting")
  c.eval.limit = 64
  c.eval.n = 1
  c.eval.max_new_tokens = 512
  c.sample.max_num_seqs = 64
  c.eval.follow_timeout = 1800.0  # follow mode beside train.py: the made base trains first, with no SFT checkpoint
  c.sample.mesh.data = -1
  c.analysis.in_domain = ("countdown",)
  c.analysis.tokens = True  # per-token log-probs of 16 last-step countdown responses under every checkpoint
  return c
