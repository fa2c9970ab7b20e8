"""Evaluation: python eval.py --config=configs/X.py --workdir=DIR --config.eval.mode=generate|score
--config.eval.input=in.jsonl [--config.eval.output=out.jsonl] [--config.eval.checkpoints=last|<step>|0]."""

from absl import app, flags

from rsft import config as rconfig
from rsft.evals import run

rconfig.define_flags()


def main(argv):
  del argv
  run.run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
