"""Config files: `get_config(arg)` modules that absl loads by path and that import each other as a package
(`from configs import base`); the repo root is on sys.path for train.py / eval.py / analyze.py and pytest."""
