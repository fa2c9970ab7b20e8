"""A full-page PNG of a report, rendered by headless Chromium (Debian's `chromium` package), for the docs.

  python -m rsft.tools.screenshot /tmp/countdown/report/index.html docs/demo_report.png [--width=1280]

Chromium's `--screenshot` captures one window, so the window is made taller than any report (`--height`) and the
blank rows below the page are cropped away. The page is checked first with `rsft.analysis.markup.leftovers`: a
report that shows markdown source or undecodable text is refused, not photographed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile

import numpy as np
from PIL import Image

from rsft.analysis import markup

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
  for name in BROWSERS:
    path = shutil.which(name)
    if path:
      return path
  raise FileNotFoundError(
    f"no headless browser: none of {', '.join(BROWSERS)} is on PATH (Debian/Ubuntu: apt-get install chromium)"
  )


def command(exe: str, page: str, out: str, width: int, height: int) -> list[str]:
  return [
    exe,
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--hide-scrollbars",
    f"--window-size={width},{height}",
    f"--screenshot={out}",
    "file://" + os.path.abspath(page),
  ]


def crop_blank_bottom(image: Image.Image, margin: int = 24) -> Image.Image:
  """The image down to its last row that is not the background (the bottom-right pixel's colour), plus a margin."""
  pixels = np.asarray(image.convert("RGB"))
  background = pixels[-1, -1]
  used = np.flatnonzero((pixels != background).any(axis=(1, 2)))
  bottom = min(pixels.shape[0], (int(used[-1]) + 1 + margin) if used.size else margin)
  return image.crop((0, 0, pixels.shape[1], bottom))


def screenshot(page: str, out: str, width: int = 1280, height: int = 16000, timeout: float = 120.0) -> str:
  with open(page, encoding="utf-8") as f:
    problems = markup.leftovers(f.read())
  if problems:
    raise ValueError(f"{page}: the report does not render clean: {problems[:3]}")
  with tempfile.TemporaryDirectory() as tmp:
    raw = os.path.join(tmp, "raw.png")
    proc = subprocess.run(command(browser(), page, raw, width, height), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not os.path.exists(raw):
      raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    crop_blank_bottom(Image.open(raw)).save(out)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("page")
  parser.add_argument("out")
  parser.add_argument("--width", type=int, default=1280)
  parser.add_argument("--height", type=int, default=16000, help="window height: taller than the page")
  args = parser.parse_args()
  print(screenshot(args.page, args.out, args.width, args.height))


if __name__ == "__main__":
  main()
