"""Analysis report: python analyze.py --config=configs/X.py --workdir=DIR[,DIR2,...] -> DIR/report/index.html."""

import os

from absl import app, flags

from rsft import config as rconfig
from rsft.analysis import report

rconfig.define_flags()


def main(argv):
  del argv
  config = rconfig.validate(flags.FLAGS.config)
  workdirs = [w for w in flags.FLAGS.workdir.split(",") if w]
  out = config.analysis.output or os.path.join(workdirs[0], "report")
  if config.analysis.tokens:
    from rsft.analysis import tokens
    from rsft.evals import run

    for workdir in workdirs:
      tokens.analyze(config, workdir, lambda path: run.load(config, path))
  report.build(workdirs, out, tuple(config.analysis.in_domain), config.analysis.dip_threshold, config.analysis.markers)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
