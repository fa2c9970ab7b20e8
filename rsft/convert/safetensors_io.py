"""Minimal streaming safetensors reader and writer.

Written by hand (the format is an 8-byte header length, a JSON header and raw little-endian bytes) because
`safetensors.safe_open` memory-maps the whole file, and every touched page of a mapped file counts towards the
process RSS until the file is closed: loading one 28 GB Qwen3-14B shard would then hold the shard *and* the
device copy. Here each tensor is read with one `pread` into its own buffer, and the writer streams tensors one by
one, so neither direction ever holds more than one tensor on the host.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Callable, Iterable

import ml_dtypes
import numpy as np

DTYPES = {
  "F64": np.dtype(np.float64),
  "F32": np.dtype(np.float32),
  "F16": np.dtype(np.float16),
  "BF16": np.dtype(ml_dtypes.bfloat16),
  "I64": np.dtype(np.int64),
  "I32": np.dtype(np.int32),
  "I16": np.dtype(np.int16),
  "I8": np.dtype(np.int8),
  "U8": np.dtype(np.uint8),
  "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in DTYPES.items()}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  file: str
  key: str
  dtype: np.dtype
  shape: tuple[int, ...]
  start: int  # absolute byte offset in the file
  end: int


MAX_HEADER_BYTES = 100 << 20  # the format's own reader refuses headers over 100 MB


def read_header(path: str) -> dict[str, TensorInfo]:
  """Tensor name -> TensorInfo, reading only the JSON header."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"safetensors file {path} does not exist.")
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) != 8:
      raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes).")
    (n,) = struct.unpack("<Q", raw)
    size = os.fstat(f.fileno()).st_size
    if n > min(size - 8, MAX_HEADER_BYTES):
      raise ValueError(
        f"{path}: corrupt safetensors header (it claims {n} bytes; the file has {size}, and a header "
        f"is at most {MAX_HEADER_BYTES})."
      )
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path}: corrupt safetensors header ({e}).") from None
  out = {}
  for key, meta in header.items():
    if key == "__metadata__":
      continue
    if meta["dtype"] not in DTYPES:
      raise ValueError(f"{path}: tensor {key!r} has unsupported dtype {meta['dtype']}.")
    begin, end = meta["data_offsets"]
    out[key] = TensorInfo(path, key, DTYPES[meta["dtype"]], tuple(meta["shape"]), 8 + n + begin, 8 + n + end)
  return out


def read_tensor(fd: int, info: TensorInfo) -> np.ndarray:
  """Reads one tensor with a single pread (fd from os.open); the result owns its memory."""
  nbytes = info.end - info.start
  buf = bytearray(nbytes)
  view = memoryview(buf)
  done = 0
  while done < nbytes:
    got = os.preadv(fd, [view[done:]], info.start + done)
    if got == 0:
      raise ValueError(f"{info.file}: truncated while reading tensor {info.key!r}.")
    done += got
  return np.frombuffer(buf, dtype=info.dtype).reshape(info.shape)


def write_file(
  path: str,
  specs: Iterable[tuple[str, tuple[int, ...], np.dtype]],
  produce: Callable[[str], np.ndarray],
  metadata: dict[str, str] | None = None,
) -> None:
  """Writes `specs` (name, shape, dtype) to `path`, calling `produce(name)` for one tensor at a time."""
  specs = list(specs)
  header: dict = {"__metadata__": metadata or {"format": "pt"}}
  offset = 0
  for name, shape, dtype in specs:
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    header[name] = {"dtype": _NAMES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)  # the spec aligns the data section to 8 bytes
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for name, shape, dtype in specs:
      arr = np.ascontiguousarray(produce(name), dtype=dtype)
      if arr.shape != tuple(shape):
        raise ValueError(f"{path}: tensor {name!r} has shape {arr.shape}, header says {tuple(shape)}.")
      f.write(arr.reshape(-1).view(np.uint8))  # no extra host copy
  os.replace(tmp, path)
