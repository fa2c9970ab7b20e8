"""The one line between "this machine cannot grade" and "this response is bad".

A problem of the environment (a missing NLTK model, sandbox binary, judge checkpoint or benchmark file, a
permission) is the same for every item: scoring each item 0 with a warning would make a sweep's numbers silently
wrong. Graders raise `EnvironmentProblem` for those, the per-item guards let it through, and the sweep checks for
it before any generation is spent (rsft/evals/preflight.py). Everything else a grader meets is the item's own.
"""


class EnvironmentProblem(RuntimeError):
  """Stops the run with its message, which says how to fix it; never a per-item error row."""
