"""Inference: the KV-cache sampler (generate) and token selection."""
