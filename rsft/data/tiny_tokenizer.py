"""A small byte-level BPE tokenizer with Qwen's special tokens and ChatML template, trained locally.

The CPU demo and the tests need a tokenizer without network access and without a 151k-row embedding; this one
behaves like Qwen's where it matters (ChatML turns, `<|im_end|>`, `<|endoftext|>` as EOS, `<think>` tags as
single tokens that survive skip_special_tokens) and saves as a normal Hugging Face tokenizer directory.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]
CHATML = (
  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train(texts: Iterable[str], vocab_size: int, out_dir: str):
  """Trains, saves to out_dir (tokenizer.json + config) and returns the transformers tokenizer (at most
  `vocab_size` ids, thinking tags included)."""
  import tokenizers
  import transformers
  from tokenizers import decoders, models, pre_tokenizers, trainers

  tok = tokenizers.Tokenizer(models.BPE())
  # Digit runs split from the text and learnt as whole tokens (every number of the demo's Countdown traces is one):
  # comparing a result with the target is then comparing two tokens. Qwen splits digits one by one; the demo keeps
  # numbers whole for a model of a million parameters that has minutes to learn the comparison.
  tok.pre_tokenizer = pre_tokenizers.Sequence(
    [pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.ByteLevel(add_prefix_space=False)]
  )
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size - len(THINK),
    special_tokens=SPECIAL,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tok.train_from_iterator(texts, trainer)
  # As in Qwen3's tokenizer, the thinking tags are added tokens but not "special": decoding with
  # skip_special_tokens (what vLLM and rsft's eval do) keeps them, so the think block can still be stripped.
  tok.add_tokens([tokenizers.AddedToken(t, special=False) for t in THINK])
  fast = transformers.PreTrainedTokenizerFast(
    tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", chat_template=CHATML
  )
  fast.save_pretrained(out_dir)
  return transformers.AutoTokenizer.from_pretrained(out_dir)
