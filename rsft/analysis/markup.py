"""The report's markdown, rendered to HTML: the subset `report.md` uses, every character escaped first.

Blocks: `#`..`###` headings, `|` tables (the first row a header, the `|---|` rule dropped), `- ` bullet lists and
paragraphs. Inline: `code` (one or two backticks), **bold**, *emphasis*, [links](url). Linear-time (one pass per
line, regexes without nested repetition); model text in a code span is shown as written, never interpreted.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

UNDECODABLE = "\ufffd"  # what a tokenizer's decode writes for bytes that are not UTF-8 (a split multi-byte char)
UNDECODABLE_SHOWN = "[?]"

_CODE = re.compile(r"(``?)(.+?)\1")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_EM = re.compile(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def model_text(text: str, limit: int | None = None) -> str:
  """Generated text fit for one line of the report: whitespace runs as one space, undecodable bytes as [?],
  backticks (which would end the code span) as ', cut to `limit` characters."""
  text = " ".join(text.split()).replace(UNDECODABLE, UNDECODABLE_SHOWN).replace("`", "'")
  return text if limit is None or len(text) <= limit else text[:limit] + "…"


def inline(text: str) -> str:
  """One line's inline markup as HTML; code spans are escaped and left alone."""
  out, last = [], 0
  for m in _CODE.finditer(text):
    out.append(_emphasis(text[last : m.start()]))
    out.append(f"<code>{html.escape(m.group(2).strip())}</code>")
    last = m.end()
  out.append(_emphasis(text[last:]))
  return "".join(out)


def _emphasis(text: str) -> str:
  text = html.escape(text.replace(UNDECODABLE, UNDECODABLE_SHOWN), quote=False)
  text = _LINK.sub(lambda m: f'<a href="{m.group(2).replace(chr(34), "&quot;")}">{m.group(1)}</a>', text)  # escaped
  text = _BOLD.sub(r"<strong>\1</strong>", text)
  return _EM.sub(r"<em>\1</em>", text)


def _cells(line: str) -> list[str]:
  """A table row's cells: split at `|` outside code spans (a token such as `'|'` stays one cell)."""
  cells, current, in_code = [], [], False
  for ch in line.strip().strip("|"):
    if ch == "`":
      in_code = not in_code
    if ch == "|" and not in_code:
      cells.append("".join(current).strip())
      current = []
    else:
      current.append(ch)
  return cells + ["".join(current).strip()]


def to_html(lines: list[str]) -> str:
  """Markdown lines (as report.md has them) as an HTML fragment."""
  out: list[str] = []
  table: list[list[str]] = []
  items: list[str] = []

  def flush() -> None:
    if table:
      head, *rows = table
      out.append(
        "<table><thead><tr>"
        + "".join(f"<th>{inline(c)}</th>" for c in head)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in rows)
        + "</tbody></table>"
      )
      table.clear()
    if items:
      out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
      items.clear()

  for line in lines:
    stripped = line.strip()
    if stripped.startswith("|"):
      if items:
        flush()
      if not set(stripped) <= set("|-: "):  # the header rule carries no cells
        table.append(_cells(stripped))
      continue
    if table:
      flush()
    if stripped.startswith("- "):
      items.append(stripped[2:])
      continue
    flush()
    heading = re.match(r"(#{1,3}) (.*)", stripped)
    if heading:
      level = len(heading.group(1))
      out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
    elif stripped:
      out.append(f"<p>{inline(stripped)}</p>")
  flush()
  return "\n".join(out)


_LEFTOVER = re.compile(r"\*\*|`|\]\(|\|\s*-{3}|^\s*(?:#{1,3}|-|\|) ", re.M)


class _Text(HTMLParser):
  """The text a browser shows, minus code spans and styles (where `*`, `|` or `#` are content)."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.skip, self.parts = 0, []

  def handle_starttag(self, tag, attrs):
    self.skip += tag in ("code", "style", "script")

  def handle_endtag(self, tag):
    self.skip -= tag in ("code", "style", "script") and self.skip > 0

  def handle_data(self, data):
    if not self.skip:
      self.parts.append(data)


def leftovers(page: str) -> list[str]:
  """What a rendered report should not show: markdown syntax outside code spans (`**`, backticks, `](`, table
  rules, line-leading `#`/`-`/`|`) and undecodable text (U+FFFD anywhere, code included). Empty when clean."""
  parser = _Text()
  parser.feed(page)
  found = [
    f"markdown {m.group(0)!r} in {text.strip()[:80]!r}" for text in parser.parts for m in _LEFTOVER.finditer(text)
  ]
  if UNDECODABLE in html.unescape(page):
    at = html.unescape(page).index(UNDECODABLE)
    found.append(f"undecodable text near {html.unescape(page)[max(0, at - 40) : at + 40]!r}")
  return found
