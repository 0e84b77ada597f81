r"""HTML building blocks of the report: escaping, cell formatting, tables, a page of sections.

Everything returns strings of HTML with every value escaped; :class:`Page` collects the
sections of one page and turns file paths into links relative to the run directory (only
files that exist inside it are linked). :data:`CSS` is the page's inline style sheet.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

__all__ = ["CSS", "Page", "escape", "format_value", "percent", "scale_label", "html_table", "settings_table"]


def escape(value: Any) -> str:
    """``str(value)`` escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def format_value(value: Any) -> str:
    """A cell's text: floats to 4 significant digits, NaN as a dash, booleans as yes/no."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def percent(value: Any) -> str:
    """A share as a percentage with one decimal (``0.25`` -> ``25.0%``); NaN as a dash."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return format_value(value)
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def scale_label(value: Any) -> str:
    """A scale fraction as a percentage (``0.2`` -> ``20%``)."""
    try:
        return f"{100 * float(value):g}%"
    except (TypeError, ValueError):
        return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))


def html_table(frame: pd.DataFrame, formats: Mapping[str, Callable[[Any], str]] | None = None,
           row_class: Callable[[pd.Series], str] | None = None, css: str = "data",
           index: bool = False, wrap: bool = True) -> str:
    """An escaped HTML table of a frame.

    A table wider than the page (``summary.csv`` has some 40 columns) scrolls sideways
    inside its own box instead of widening the page: it is wrapped in ``<div class="wide">``
    (``overflow-x: auto`` in :data:`CSS`).

    Args:
        frame (DataFrame): the rows.
        formats (dict, optional): column -> cell formatter (default :func:`format_value`).
        row_class (callable, optional): row -> CSS class of its ``<tr>``.
        css (str): CSS class of the table.
        index (bool): include the index as columns.
        wrap (bool): wrap the table in its scrolling ``<div class="wide">``.

    Returns:
        str: the ``<table>`` element (in its ``div``); numbers are right-aligned (``td.num``).
    """
    formats = formats or {}
    frame = frame.reset_index() if index else frame
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(
            f'<td class="{"num" if _numeric(v) else "txt"}">'
            f"{escape(formats.get(c, format_value)(v))}</td>" for c, v in row.items())
        rows.append(f'<tr class="{escape(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    table = f'<table class="{escape(css)}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    return f'<div class="wide">{table}</div>' if wrap else table


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


#: a settings value longer than this many characters is shown by its start and its length
LONG_SETTING = 500


def _setting(value: Any) -> str:
    """A settings cell: a list of mappings (``settings.json``'s ``runs``) as a nested table,
    one row per item and one column per (dotted) key; a text longer than :data:`LONG_SETTING`
    (a table stored as an attribute) by its first 200 characters and its size; anything else
    as its text."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        frame = pd.DataFrame([dict(_flatten(v)) for v in value])
        frame.columns = [str(c).replace(".", ".\u200b") for c in frame.columns]  # dotted keys may break after a dot
        return html_table(frame, css="nested", wrap=False)
    text = format_value(value)
    if len(text) > LONG_SETTING:
        lines = text.count("\n") + 1
        return (f"<code>{escape(text[:200])}</code> … ({len(text)} characters"
                f"{f', {lines} lines' if lines > 1 else ''} in all; not shown)")
    return escape(text)


def settings_table(mapping: Mapping[str, Any]) -> str:
    """A two-column table of a (nested) mapping, keys dotted (``config.scales``); a list of
    mappings becomes a nested table (one row each), never raw JSON; long values wrap."""
    rows = _flatten(mapping)
    if not rows:
        return '<p class="note">(empty)</p>'
    body = "".join(f'<tr><th scope="row">{escape(k)}</th><td>{_setting(v)}</td></tr>' for k, v in rows)
    return f'<div class="wide"><table class="settings"><tbody>{body}</tbody></table></div>'


class Page:
    """Collects the sections of one page; turns paths into escaped links relative to the run
    directory (only existing files inside it are linked).

    Args:
        root (Path): the run directory (the page's location).
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self._ids: set[str] = set()

    def rel(self, path: Path) -> str | None:
        """The URL of ``path`` relative to the run directory, or None if it is not a file in it."""
        try:
            full = path.resolve()
            relative = full.relative_to(self.root)
        except (OSError, ValueError):
            return None
        return quote(relative.as_posix()) if full.is_file() else None

    def anchor(self, text: str) -> str:
        """A unique ``id`` for a heading (``"Scan (§3)"`` -> ``"scan-3"``, then ``"scan-3-2"``)."""
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
        name, n = base, 2
        while name in self._ids:
            name, n = f"{base}-{n}", n + 1
        self._ids.add(name)
        return name

    def section(self, title: str, level: int = 2, toc: bool = True) -> None:
        """Add a heading; level-2 headings go into the table of contents unless ``toc`` is false."""
        name = self.anchor(title)
        if toc and level == 2:
            self.toc.append((name, title))
        self.parts.append(f'<h{level} id="{name}">{escape(title)}</h{level}>')

    def add(self, text: str) -> None:
        """Add HTML as it is (the caller escapes)."""
        self.parts.append(text)

    def figure(self, path: Path, caption: str, css: str = "figure", alt: str | None = None) -> bool:
        """Add an image linked to itself with its caption; False (nothing added) when ``path`` is
        not a file inside the run directory."""
        url = self.rel(path)
        if url is None:
            return False
        self.parts.append(f'<figure class="{escape(css)}"><a href="{escape(url)}"><img src="{escape(url)}" alt="{escape(alt or caption)}" '
                          f'loading="lazy"></a><figcaption>{escape(caption)}</figcaption></figure>')
        return True

    def link(self, path: Path, text: str | None = None) -> str:
        """An ``<a>`` to ``path``, or just the escaped text when it is not a file inside the run directory."""
        url = self.rel(path)
        label = escape(text or path.name)
        return f'<a href="{escape(url)}">{label}</a>' if url else label


#: the report's inline style sheet
CSS = """
body { font-family: Georgia, 'Times New Roman', serif; color: #222; max-width: 1150px; margin: 2em auto;
       padding: 0 1.5em; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #bbb; padding-bottom: 0.15em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
p.meta, p.note, figcaption, .caption { color: #555; font-size: 0.9em; }
nav ol { columns: 2; font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-family: -apple-system, 'Segoe UI', Helvetica, Arial,
        sans-serif; font-size: 0.82em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.55em; }
thead th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.settings th { text-align: left; background: #f7f7f7; font-weight: normal; color: #444; }
tr.pass td { background: #eef7ee; }
tr.keep td { background: #eef7ee; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figure.figure img { max-width: min(640px, 100%); }
figure.plot img { max-width: 100%; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { margin: 0; }
.gallery figure.grid img { width: auto; max-width: 100%; }
.gallery figure.pair img { width: 112px; image-rendering: pixelated; }
.pair-row { display: flex; gap: 4px; }
details { margin: 0.6em 0 1.2em; }
summary { cursor: pointer; color: #2a5d9f; }
.scroll { max-height: 32em; overflow: auto; border: 1px solid #eee; }
code { font-size: 0.9em; }
.banner { border: 2px solid #c0392b; background: #fdecea; padding: 0.5em 0.8em; margin: 0.8em 0;
          font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 0.9em; }
p.verdict { font-weight: bold; }
.wide { overflow-x: auto; max-width: 100%; }
table.settings td { overflow-wrap: anywhere; }
table.nested { margin: 0; font-size: 1em; }
table.nested th, table.nested td { overflow-wrap: normal; }
table.card td { vertical-align: top; max-width: 16em; }
.mark-pass, .mark-fail, .mark-inconclusive { font-weight: bold; padding: 0 0.3em; border-radius: 3px; }
.mark-pass { background: #dff0d8; color: #1e5a1e; }
.mark-fail { background: #f8d7da; color: #7a1c1c; }
.mark-inconclusive { background: #fff3cd; color: #6b5200; }
ul.rules { font-size: 0.85em; color: #444; }
"""
