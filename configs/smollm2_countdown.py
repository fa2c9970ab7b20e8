"""The study's toy-game condition on a real, weak model: SmolLM2-135M-Instruct fine-tuned on long-CoT Countdown.

  python -m rsft.tools.models fetch smollm2-135m-instruct   # once (~/.cache/rsft/models, or $RSFT_MODELS_DIR)
  python train.py --config=configs/smollm2_countdown.py --workdir=/tmp/smollm2
  python eval.py --config=configs/smollm2_countdown.py --workdir=/tmp/smollm2
  python analyze.py --config=configs/smollm2_countdown.py --workdir=/tmp/smollm2

paper.md (Sec. 4, Table 2 and Sec. 5): Countdown-CoT transfers on strong models but only marginally on small ones, and
small models keep long responses, imitating the surface of the procedure rather than learning it. Here the weak model fine-tunes on verified traces with backtracking (level
`countdown`: 3-4 numbers to 50, targets to 100; rsft/tasks/countdown.py) for 48 steps of 4 packed 512-token rows
(~340 traces; longer traces are dropped, not cut), saving the model as step 0 and log-spaced checkpoints. eval.py
scores each in-domain on held-out puzzles and out-of-domain on IFEval and MMLU-Pro (rule-graded), sized to finish the three
commands in under an hour on 2 CPU cores (docs/demo.md has the measured table); analyze.py adds response lengths and
backtracking / verification markers per benchmark and step.

`--config=configs/smollm2_countdown.py:full` keeps the training and evaluates at full benchmark sizes with the
study's caps, MATH500 and HaluEval added (its `*_samples` files via eval.files): a GPU or TPU job. Benchmark files
come from `python -m rsft.evals.data fetch --benchmarks=ifeval,mmlu_pro` or --config.eval.data_dir=DIR.
"""

from configs import base
from rsft.tools import models

MODEL = "smollm2-135m-instruct"


def get_config(arg: str | None = None):
  c = base.get_config()
  c.model.path = models.checkpoint_dir(MODEL)
  c.model.dtype = "float32"  # XLA:CPU runs bfloat16 matmuls slower than float32
  c.model.remat = "none"  # 135M parameters: activations of 4 x 512 tokens fit in host memory
  c.mesh.fsdp = 1
  c.mesh.data = -1
  c.data.generate = "countdown"
  c.data.generate_rows = 2000
  c.data.max_length = 512
  c.data.truncation = "drop"  # a trace cut short would teach an answer that never comes
  c.data.packing = True
  c.train.num_steps = 48
  c.train.global_batch_size = 4
  c.train.micro_batch_size = 4
  c.train.lr = 1e-4
  c.train.b2 = 0.95  # Adam's second moment over ~20 steps, not ~1000: the run is 48 steps (as the CPU demo)
  c.train.schedule = "wsd"
  c.train.warmup_ratio = 0.05
  c.train.loss_chunk = 512
  c.train.log_every = 4
  c.checkpoint.save_steps = (6, 12, 24)  # and step 0 (the instruct model) and the last step, 48
  c.eval.benchmarks = ("countdown", "ifeval", "mmlu_pro")
  c.eval.limit = 32  # items per benchmark: 95% intervals of about +-0.15
  c.eval.n = 1
  c.eval.max_new_tokens = 512  # a Countdown trace needs <= 512 tokens (the training rows' bound)
  c.sample.max_num_seqs = 32
  c.sample.mesh.data = -1
  c.analysis.in_domain = ("countdown",)
  if arg == "full":
    c.eval.benchmarks = ("countdown", "ifeval", "mmlu_pro", "math500", "halueval")  # halueval: eval.files
    c.eval.limit = 0
    c.eval.n = 0
    c.eval.max_new_tokens = 0
    c.sample.max_num_seqs = 256
  elif arg:
    raise ValueError(f"configs/smollm2_countdown.py:{arg}: the only variant is :full")
  return c
