"""SFT data: readers (parquet/JSONL/HF), chat rendering with loss weights, the grain pipeline."""
