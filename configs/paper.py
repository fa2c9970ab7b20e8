"""Every training run of the study (paper.md §3 "Run matrix") from a short argument, evaluated on its ten
benchmarks the way its harness evaluates them (eval.protocol=study).

  --config=configs/paper.py:model=qwen3_14b,data=math_cot,lr=5e-5,epochs=8,batch=256,schedule=cosine
Keys (defaults = the study's default run): model, data, lr, epochs, batch, schedule (cosine | constant),
models (dir holding the HF base checkpoints, named as on the hub), data_dir (dir with the released parquet files;
default: the Hugging Face dataset through `datasets`' offline cache), faithful (1 = the study's pure-bf16 AdamW
and verl loss aggregation; 0 = float32 master weights and a global token mean), judges (dir holding the reward
model and judges, named as on the hub), safety_judge (the HEx-PHI judge: an OpenAI-compatible URL for GPT-4.1,
or a local dir). A benchmark whose data or judge is missing is reported "not run: <what>" in the summary.
"""

import os

from configs import base

MODELS = {
  "qwen3_1.7b": "Qwen3-1.7B-Base",
  "qwen3_4b": "Qwen3-4B-Base",
  "qwen3_8b": "Qwen3-8B-Base",
  "qwen3_14b": "Qwen3-14B-Base",
  "qwen2.5_1.5b": "Qwen2.5-1.5B",
  "qwen2.5_3b": "Qwen2.5-3B",
  "qwen2.5_7b": "Qwen2.5-7B",
  "qwen2.5_14b": "Qwen2.5-14B",
  "internlm2.5_20b": "internlm2_5-20b",  # Table 2 / Fig. 6-7; remote code upstream, a native family here
}
# data key -> (released dataset name, rows used): Math-CoT-2.5k is a 2,560-row subset of Math-CoT-20k.
DATA = {
  "math_cot": ("Math-CoT-20k", None),
  "math_nocot": ("Math-NoCoT-20k", None),
  "numina": ("NuminaMath-20k", None),
  "countdown_cot": ("Countdown-CoT-20k", None),
  "deepseek_r1": ("DeepSeek-R1-20k", None),
  "math_cot_2.5k": ("Math-CoT-20k", 2560),
}
EVAL_STEPS = (10, 20, 40, 80, 160, 320, 480, 640, 800, 960, 1120, 1280)  # App. D; 16-epoch runs add the tail
DEFAULTS = dict(
  model="qwen3_14b",
  data="math_cot",
  lr="5e-5",
  epochs="8",
  batch="256",
  schedule="cosine",
  models="~/models",
  data_dir="",
  faithful="1",
  judges="~/models",
  safety_judge="",
)
# The study's ten (paper.md §4): in-domain, OOD reasoning, general, safety. LiveCodeBench v2, HaluEval's *_samples
# and HEx-PHI are not in ../shared/benchmarks: give them with --config.eval.files=name=path (hf: works offline).
BENCHMARKS = (
  "math500",
  "aime24",
  "livecodebench",
  "gpqa_diamond",
  "mmlu_pro",
  "ifeval",
  "alpaca_eval",
  "halueval",
  "truthfulqa",
  "hexphi",
)
JUDGES = dict(
  reward_model="Llama-3.1-8B-Instruct-RM-RB2",
  truth_judge="truthfulqa-truth-judge-llama2-7B",
  info_judge="truthfulqa-info-judge-llama2-7B",
  safety_judge_tokenizer="Llama-Guard-3-8B",
)


def parse(arg: str | None) -> dict[str, str]:
  out = dict(DEFAULTS)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in DEFAULTS:
      raise ValueError(f"configs/paper.py: unknown key {key!r}; keys are {sorted(DEFAULTS)}")
    out[key] = value
  if out["model"] not in MODELS:
    raise ValueError(f"configs/paper.py: model={out['model']!r}; choose one of {sorted(MODELS)}")
  if out["data"] not in DATA:
    raise ValueError(f"configs/paper.py: data={out['data']!r}; choose one of {sorted(DATA)}")
  return out


def get_config(arg: str | None = None):
  a = parse(arg)
  c = base.get_config()
  c.model.path = os.path.join(os.path.expanduser(a["models"]), MODELS[a["model"]])
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "bfloat16" if a["faithful"] == "1" else "float32"
  name, rows = DATA[a["data"]]
  c.data.train_files = os.path.join(a["data_dir"], f"{name}.parquet") if a["data_dir"] else f"hf:jasonrqh/{name}"
  c.data.limit_rows = rows or 0
  internlm = a["model"].startswith("internlm")
  # the base models' EOS (the tokenizer's eos_token, as the study's OurSFTDataset), appended to every response
  c.data.eos_token = "</s>" if internlm else "<|endoftext|>"
  c.data.strip_default_system = a["model"].startswith("qwen2.5")  # the study's "no-sys-prompt" Qwen2.5 copies
  c.data.max_length = 20000
  c.data.truncation = "right"
  c.data.packing = False
  c.data.shuffle = False
  c.train.lr = float(a["lr"])
  c.train.num_epochs = int(a["epochs"])
  c.train.global_batch_size = int(a["batch"])
  c.train.micro_batch_size = 0  # one 20k-token row per data-parallel device (what fits; docs/fit.md)
  c.train.schedule = a["schedule"]
  c.train.warmup_ratio = 0.1
  c.train.weight_decay = 0.01
  c.train.max_grad_norm = 1.0
  c.train.loss_aggregation = "verl" if a["faithful"] == "1" else "token_mean"
  c.train.verl_ranks = 8
  # the study's per-GPU micro-batch (4; InternLM 2), whatever fits here; fewer when the batch is under 8 x that
  c.train.verl_rows_per_micro = max(1, min(2 if internlm else 4, int(a["batch"]) // 8))
  steps = (DATA[a["data"]][1] or 20480) // int(a["batch"]) * int(a["epochs"])
  c.checkpoint.save_steps = tuple(s for s in EVAL_STEPS if s <= steps) + ((steps,) if steps not in EVAL_STEPS else ())
  c.checkpoint.every_steps = 0
  # sampling: continuous batching with KV pages from device memory (sample.kv_pages=0, rsft.infer.sampler.plan)
  c.eval.protocol = "study"
  c.eval.benchmarks = BENCHMARKS
  c.eval.update({key: os.path.join(os.path.expanduser(a["judges"]), name) for key, name in JUDGES.items()})
  c.eval.safety_judge = a["safety_judge"] or None
  return c
