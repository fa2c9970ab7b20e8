"""Defaults for every stage; other configs start from this one and override.

Usage: --config=configs/base.py, overrides like --config.train.lr=1e-5 --config.mesh.fsdp=-1.
Architecture comes from the checkpoint's config.json (model.path); model.arch is only for from-scratch models.
Defaults follow the study (paper.md §3) unless a comment says otherwise.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  c = ml_collections.ConfigDict()

  c.model = dict(
    path=config_dict.placeholder(str),  # HF checkpoint dir (or None with model.arch)
    tokenizer=config_dict.placeholder(str),  # tokenizer dir; default: model.path
    arch=ml_collections.ConfigDict(),  # ModelConfig fields for from-scratch models
    dtype="bfloat16",  # compute dtype
    param_dtype="float32",  # master weights; "bfloat16" = the study's pure-bf16 AdamW
    remat="full",  # none | full | save_dots_no_batch | save_names
    attention="auto",  # auto | xla | chunked | splash | cudnn (rsft/models/attention.py)
  )
  c.mesh = dict(
    data=1,
    fsdp=-1,
    tensor=1,  # -1 = all remaining devices
    sequence=1,  # context parallelism: each row's tokens split over this many devices
    # (zigzag: device i holds chunks i and 2S-1-i of 2S; data.max_length
    # must divide by 2 x sequence)
    sequence_attention="allgather",
  )  # how queries meet the other shards' keys: allgather (every
  # shard gathers the row's K/V) | ring (K/V blocks passed round)

  c.data = dict(
    train_files=config_dict.placeholder(str),  # comma-separated paths/globs, or hf:owner/name[:split]
    format="auto",  # auto (by extension) | jsonl | parquet
    on_error="raise",  # raise | skip (counted in the log)
    max_length=20000,  # tokens per example (prompt + response + EOS); also the row length
    truncation="right",  # right (study) | drop
    eos_token=config_dict.placeholder(str),  # default tokenizer.eos_token; Qwen3-Base: <|endoftext|>
    strip_default_system=False,  # Qwen2.5 "no-sys-prompt" template
    packing=False,  # study: one right-padded example per row
    shuffle=False,  # study: parquet order every epoch
    seed=0,
    limit_rows=0,  # >0: a seeded random subset of this many rows (Math-CoT-2.5k)
    # "name=weight,...": the training files (each named by its base name without extensions) interleaved by
    # weight, each shuffled with its own seed and repeated without end; needs train.num_steps (docs/training.md)
    mix=config_dict.placeholder(str),
    generate=config_dict.placeholder(str),  # a Countdown level (countdown | countdown3): make the demo's SFT
    generate_rows=2000,  # data in WORKDIR/data (rsft/data/generate.py)
  )
  # A base model made from scratch before SFT (the CPU demo): it learns short-answer tasks first, and SFT starts
  # from it as a real run starts from model.path; it is checkpoint step 0 of the run. Off unless generate or
  # train_files is set.
  c.pretrain = dict(
    generate=(),  # short-answer tasks (rsft/tasks/short_answer.py), e.g. ("arithmetic", "sorting")
    train_files=config_dict.placeholder(str),  # default: WORKDIR/data/base.jsonl, made from `generate`
    rows=12000,
    num_epochs=1,
    lr=2e-3,
    max_length=128,  # packed rows of short examples
    global_batch_size=8,
  )
  c.train = dict(
    num_steps=config_dict.placeholder(int),  # default: num_epochs over the data
    num_epochs=8,
    global_batch_size=256,
    micro_batch_size=32,  # rows per accumulation step, whole mesh; 0 = one row per data x fsdp device
    # (a memory setting only: the loss never depends on it)
    lr=5e-5,
    schedule="cosine",  # cosine | constant | wsd (all after linear warmup)
    decay_ratio=0.2,  # wsd: the last share of the steps, decayed linearly to 0
    warmup_ratio=0.1,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.01,
    weight_decay_mask="all",  # all (study) | kernels
    max_grad_norm=1.0,
    loss_aggregation="token_mean",  # token_mean | verl (the study's micro-batch token mean, summed)
    verl_ranks=8,  # data-parallel ranks the verl aggregation emulates
    verl_rows_per_micro=4,  # rows per rank micro-batch it emulates (the study: 4 per GPU); independent of
    # micro_batch_size, which only sets how many rows fit per accumulation step
    loss_chunk=1024,  # sequence chunk of the LM head / loss
    log_every=1,
    seed=0,
    probe_every=0,  # forgetting probe every K steps (and at the start); 0 = off (train.py)
    probe_sets=("ifeval", "gpqa_diamond"),  # benchmarks whose items the base answers once (greedy); the probe
    # scores those answers teacher-forced under the model being trained
    probe_items=16,  # items per probe set
    probe_tokens=256,  # most answer tokens per item
    # Low-rank adapters: rank 0 = full fine-tuning; rank > 0 freezes model.path's weights (held in model.dtype) and
    # trains adapters on `targets`; checkpoints hold the adapters, merged on load and export (docs/training.md).
    lora=dict(
      rank=0,
      alpha=32.0,  # scale = alpha / rank
      dropout=0.0,  # share of the adapters' input dropped while training (PEFT's lora_dropout)
      targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ),
  )
  c.checkpoint = dict(
    save_steps=(10, 20, 40, 80, 160, 320, 480, 640),  # tuples: overridable as --config.x="(1, 2)"
    every_steps=0,  # 0 = only save_steps (plus the last step)
    keep=0,  # 0 = keep all; N = also keep only the N latest unlisted steps
    async_save=True,
  )
  c.sample = dict(
    temperature=0.6,
    top_p=0.95,
    top_k=20,
    max_new_tokens=32768,
    n=1,
    seed=0,
    presence_penalty=0.0,
    frequency_penalty=0.0,  # vLLM's, over output tokens (AlpacaEval: 0.1 each)
    max_total_tokens=0,  # cap on prompt + output (vLLM max_model_len); 0 = none
    think_budget=0,  # tokens a row may think before </think> is forced (vLLM's thinking
    # token limit); 0 = off
    answer_budget=0,  # tokens after a forced </think>; 0 = up to max_new_tokens
    skip_special_tokens=True,  # decoding of completions (lm-eval / evalchemy keep them: False)
    max_num_seqs=256,  # sequences decoding at once (continuous batching: a finished one's
    # slot takes the next waiting prompt at once; vLLM's max_num_seqs)
    page_size=128,  # KV-cache columns per page (attention reads a row's written pages only)
    kv_pages=0,  # pages per data shard; 0 = what memory_utilization of the device holds
    memory_utilization=0.9,  # weights + sampler state share of device memory (vLLM's); when pages run
    # out the youngest sequence is swapped to host memory and resumes later
    top_k_cap=64,  # static bound on top_k (one compile for any top_k <= cap; top-p is exact)
    chunk_steps=256,  # most decode steps between host checks (admission, progress)
    prefix_cache=False,  # full prompt pages shared across prompts by a hash of their prefix
    # (vLLM's automatic prefix caching: system prompts, few-shot blocks)
    chunked_prefill=0,  # prompt tokens per prefill piece, interleaved with decode steps so a
    # long prompt never stalls decoding rows (vLLM's); 0 = whole prompts
    prompt_buckets=(64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768),
    dtype=config_dict.placeholder(str),  # sampling dtype; default model.dtype
    mesh=dict(data=-1, tensor=1),  # sampling mesh (data x tensor); weights are resharded onto it
  )
  c.eval = dict(
    benchmarks=("math500", "aime24", "gpqa_diamond", "mmlu_pro", "humaneval", "halueval"),  # rsft.evals.benchmarks
    protocol="study",  # study: the study's harness, quirks included | rsft: docs/eval_protocol.md's deviations
    limit=0,  # items per benchmark (0 = all)
    n=0,  # samples per item (0 = the benchmark's study default)
    max_new_tokens=0,  # 0 = the benchmark's default (32768)
    temperature=-1.0,  # < 0 = the benchmark's default (study: 0.6; AlpacaEval 0.7)
    top_p=-1.0,  # < 0 = the benchmark's default
    top_k=-1,  # < 0 = the benchmark's default
    seed=-1,  # < 0 = the benchmark's default (study: math 1234, AlpacaEval 42, else 0)
    files=config_dict.placeholder(str),  # per-benchmark data: "hexphi=/d/hexphi.csv,livecodebench=hf:o/n:test"
    gold_columns=config_dict.placeholder(str),  # math gold column per benchmark, e.g. "aime24=solution"
    group_aggregate="mean",  # a group's score (halueval): mean of its members' scores | pooled over items
    skip_unavailable=False,  # a benchmark that cannot run here (data, grader environment, judge): False stops
    # the run up front with every fix; True runs the rest and lists it as not run
    checkpoints="all",  # all | last | comma-separated steps, "last" among them (0,last)
    data_dir="",  # benchmark files; "" = the user cache `python -m rsft.evals.data fetch` fills
    # ($RSFT_DATA_DIR, else ~/.cache/rsft/benchmarks)
    mode="sweep",  # sweep | generate | score | grade | prompts
    follow=False,  # sweep: score each checkpoint as training commits it, until its final step is scored
    follow_timeout=3600.0,  # follow: seconds without a new checkpoint before it gives up (0 = never)
    follow_poll=10.0,  # follow: seconds between looks at WORKDIR/checkpoints
    input=config_dict.placeholder(str),  # generate / score modes: JSONL in
    output=config_dict.placeholder(str),  # ... and out (default WORKDIR/eval/<mode>.jsonl)
    chat_template=True,  # render "prompt" strings as one user turn with the chat template
    save_logprobs=False,  # generate mode: also write token ids and per-token log-probs
    think_budgets=(),  # sweep: also score each benchmark under these thinking budgets (tokens),
    # cut from the full generation, answers re-decoded: <bench>@think<B>
    score_batch_tokens=16384,  # score mode and reward models: padded tokens per forward
    # Model graders (rsft/evals/judges.py): local HF dirs, or an OpenAI-compatible URL for the safety judge.
    reward_model=config_dict.placeholder(str),  # AlpacaEval, e.g. allenai/Llama-3.1-8B-Instruct-RM-RB2
    truth_judge=config_dict.placeholder(str),  # TruthfulQA, allenai/truthfulqa-truth-judge-llama2-7B
    info_judge=config_dict.placeholder(str),  # TruthfulQA, allenai/truthfulqa-info-judge-llama2-7B
    safety_judge=config_dict.placeholder(str),  # HEx-PHI / HarmBench: HF dir or http(s)://host/v1
    safety_judge_model="gpt-4.1",  # model name sent to an endpoint judge (the study's)
    safety_judge_tokenizer=config_dict.placeholder(str),  # clip responses in its tokens (study: Llama-Guard-3-8B)
    truth_judge_tokenizer=config_dict.placeholder(str),  # endpoint judges: tokenizer for the 4,075-token clip
    info_judge_tokenizer=config_dict.placeholder(str),
    judge_max_new_tokens=4096,  # safety judge (study: GPT-4.1, max_tokens 4096)
    judge_batch_size=8,  # prompts per local-judge generate call (judge prompts are long)
    judge_max_response_tokens=16384,  # safety-judge clip with safety_judge_tokenizer (study: 16,384)
    judge_max_response_chars=65536,  # ... and without it, in characters
  )
  c.tracking = dict(
    backend="tensorboard",  # tensorboard (always written: WORKDIR/tensorboard) | wandb | mlflow (also; installed
    # by you: neither is in rsft's lock). Training and follow-mode eval log to one run.
    project="rsft",  # W&B project / MLflow experiment
    name=config_dict.placeholder(str),  # run name; default: the workdir's basename
  )
  c.analysis = dict(
    dip_threshold=0.02,  # smallest score drop (absolute, 0-1) called a dip, on top of the noise
    in_domain=("math",),  # benchmark domains that match the training data (the rest: OOD / general / safety)
    markers=config_dict.placeholder(str),  # reasoning-marker lexicon override: "category=regex|regex;..."
    output=config_dict.placeholder(str),  # default: WORKDIR/report (the first workdir)
    tokens=False,  # token-level log-probs under every checkpoint (loads each model once)
    token_source="",  # "benchmark:step" (step may be "last"; default: first benchmark, last step), or
    # "data": the first training rows, with teacher ratios if rows carry `logprob`
    token_samples=16,  # responses scored
  )
  return c
