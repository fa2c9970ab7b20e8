"""Evaluation: python eval.py --config=configs/X.py --workdir=DIR --config.eval.mode=generate|score
--config.eval.input=in.jsonl [--config.eval.output=out.jsonl] [--config.eval.checkpoints=last|<step>|0]."""

import sys

from absl import app, flags, logging

from rsft import config as rconfig
from rsft.evals import run
from rsft.evals.errors import EnvironmentProblem
from rsft.evals.follow import FollowTimeout

rconfig.define_flags()


def main(argv):
  del argv
  try:
    run.run(flags.FLAGS.config, flags.FLAGS.workdir)
  except EnvironmentProblem as e:  # the machine lacks something: its fix, without a traceback, and exit status 2
    logging.error("%s", e)
    sys.exit(2)
  except FollowTimeout as e:  # follow mode saw no new checkpoint for eval.follow_timeout: what it scored is kept
    logging.error("%s", e)
    sys.exit(3)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
