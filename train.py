"""Reasoning SFT: python train.py --config=configs/X.py --workdir=DIR [--config.a.b=v ...]."""

from absl import app, flags

from rsft import config as rconfig
from rsft.analysis.probe import Probe
from rsft.train import loop

rconfig.define_flags()


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  loop.run(config, workdir, probe=Probe(config, workdir) if config.train.probe_every else None)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
