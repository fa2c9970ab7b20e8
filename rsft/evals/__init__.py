"""Evaluation: eval.py's modes (generate / score over JSONL files; the benchmark sweep), checkpoint selection."""
