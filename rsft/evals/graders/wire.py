"""Values crossing the sandbox boundary: a type-tagged JSON tree of plain Python values.

A sandboxed program returns data, never objects: what crosses is ints, floats, bools, strings, None, lists, tuples
and dicts, tagged so that a tuple stays a tuple and True stays a bool (the harnesses compare with Python's `==`).
Anything else arrives as an object equal to nothing, so a custom `__eq__` cannot vote on its own verdict. The same
source runs on both sides: `SOURCE` is embedded in the sandboxed programs and executed here for the parent.
"""

from __future__ import annotations

from typing import Any

SOURCE = r'''
import operator as _operator


class Opaque:
    """A value of a type the wire does not carry: equal to nothing."""

    def __init__(self, kind="object"):
        self.kind = kind

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<opaque {self.kind}>"


def tagged(x, depth=0):
    if depth > 200:
        return ["o", "too deep"]
    if type(x).__module__ == "numpy" and hasattr(x, "tolist"):  # numpy scalars and arrays: their Python values
        try:
            x = x.tolist()
        except Exception:
            return ["o", type(x).__name__]
    if x is None:
        return ["n"]
    if isinstance(x, bool):
        return ["b", bool(x)]
    if isinstance(x, float):
        return ["f", repr(float(x))]
    if isinstance(x, str):
        return ["s", str.__str__(x)]
    if isinstance(x, (list, tuple)):
        return ["l" if isinstance(x, list) else "t", [tagged(v, depth + 1) for v in list.__iter__(list(x))]]
    if isinstance(x, dict):
        return ["d", [[tagged(k, depth + 1), tagged(v, depth + 1)] for k, v in dict.items(x)]]
    try:
        return ["i", str(int(_operator.index(x)))]
    except Exception:
        return ["o", type(x).__name__]


def untag(node, depth=0):
    if depth > 200 or not isinstance(node, list) or not node:
        return Opaque()
    kind, rest = node[0], node[1:]
    try:
        if kind == "n":
            return None
        if kind == "b":
            return bool(rest[0])
        if kind == "i":
            return int(rest[0])
        if kind == "f":
            return float(rest[0])
        if kind == "s":
            return str(rest[0])
        if kind in ("l", "t"):
            values = [untag(v, depth + 1) for v in rest[0]]
            return values if kind == "l" else tuple(values)
        if kind == "d":
            out = {}
            for k, v in rest[0]:
                key = untag(k, depth + 1)
                try:
                    hash(key)
                except TypeError:
                    key = repr(key)
                out[key] = untag(v, depth + 1)
            return out
    except (TypeError, ValueError, IndexError):
        pass
    return Opaque(str(rest[0]) if kind == "o" and rest else "object")
'''

_namespace: dict[str, Any] = {}
exec(SOURCE, _namespace)  # noqa: S102 - our own constant source, the same that runs inside the sandbox
tagged = _namespace["tagged"]
untag = _namespace["untag"]
Opaque = _namespace["Opaque"]
