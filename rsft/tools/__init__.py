"""Command-line tools that need no accelerator: `python -m rsft.tools.fit` (AOT fit check for TPU slices)."""
