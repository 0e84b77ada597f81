r"""A self-contained HTML report of a run directory, built from its files alone (no model).

:func:`write_report` looks for what ``rsi scan``, ``rsi ablate`` and ``rsi demo`` write,
anywhere below the directory:

* ``settings.json`` at the top (what the run was; every key is shown);
* every ``scan.csv`` (with its ``summary.csv``, ``paper_comparison.csv``, ``scan.parquet``
  attributes and FZ PNGs beside it);
* the Fig.-1 grids ``grid_<block>_<channel>.png`` (:mod:`rsi_plugin.outputs.figures`) and
  ``figures/summary.png``;
* every sweep folder, i.e. one holding ``sweep.json`` (``ablation.csv``, ``eq3.csv``,
  ``eq3.png``, ``accuracy.png``, ``draws.csv``, ``skipped.csv``).

and writes ``report.html`` beside them: inline CSS, no script, images referenced by paths
relative to the directory (every referenced file exists). Nothing is recomputed from a model;
tables missing from a folder are derived from the CSVs that are there (the per-block summary
from ``scan.csv``, Eq. 3 from ``ablation.csv``), and the summary bar chart is drawn when
``figures/summary.png`` is missing or older than its scan.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from rsi_plugin.core.atomic import atomic_write_text
from rsi_plugin.errors import MissingFileError, RSIError

__all__ = ["write_report", "RunContents", "ScanOutput", "SweepOutput", "discover", "REPORT_NAME"]

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
GRID_PATTERN = re.compile(r"^grid_(?P<block>.+)_(?P<channel>\d+)\.png$")
#: at most this many rows of a scan table are written into the report (all are in scan.csv)
MAX_TABLE_ROWS = 5000
#: at most this many In/Pre FZ pairs per block when no grid exists
MAX_FZ_PAIRS = 64


# --------------------------------------------------------------------------- discovery


@dataclass
class ScanOutput:
    """One scan folder (the one holding ``scan.csv``).

    Attributes:
        dir (Path): the folder.
        table (DataFrame): ``scan.csv`` (``block`` read as str).
        summary (DataFrame): ``summary.csv``, or :func:`~rsi_plugin.criteria.equations.summarize` of
            the table when that file is missing.
        summary_source (str): ``"summary.csv"`` or ``"scan.csv"``.
        attrs (dict): the table's attributes stored in ``scan.parquet`` (model, weights,
            node variant, transform), empty without it.
        comparison (DataFrame or None): ``paper_comparison.csv``, or
            :func:`~rsi_plugin.paper.compare_to_paper` for a resnet18 scan without it.
    """

    dir: Path
    table: pd.DataFrame
    summary: pd.DataFrame
    summary_source: str
    attrs: dict[str, Any] = field(default_factory=dict)
    comparison: pd.DataFrame | None = None


@dataclass
class SweepOutput:
    """One sweep folder (the one holding ``sweep.json``).

    Attributes:
        dir (Path): the folder.
        manifest (dict): ``sweep.json``.
        results (DataFrame or None): ``ablation.csv``.
        eq3 (DataFrame or None): ``eq3.csv``, or Eq. 3 of ``results`` when missing.
        eq3_source (str): ``"eq3.csv"``, ``"ablation.csv"`` or ``""`` (none).
        draws (DataFrame or None): ``draws.csv``.
        skipped (DataFrame or None): ``skipped.csv``.
    """

    dir: Path
    manifest: dict[str, Any]
    results: pd.DataFrame | None = None
    eq3: pd.DataFrame | None = None
    eq3_source: str = ""
    draws: pd.DataFrame | None = None
    skipped: pd.DataFrame | None = None


@dataclass
class RunContents:
    """Everything :func:`discover` found in a run directory.

    Attributes:
        root (Path): the run directory.
        settings (dict): ``settings.json`` (empty without it).
        scans (list of ScanOutput): scan folders, by path.
        sweeps (list of SweepOutput): sweep folders, by block then path.
        grids (dict): block -> ``[(channel, Path)]`` of the Fig.-1 grid PNGs, channels ascending.
    """

    root: Path
    settings: dict[str, Any]
    scans: list[ScanOutput]
    sweeps: list[SweepOutput]
    grids: dict[str, list[tuple[int, Path]]]

    @property
    def model(self) -> str | None:
        """The model's name, from ``settings.json``, a scan's attributes or a sweep's manifest."""
        for source in [self.settings] + [s.attrs for s in self.scans] + [s.manifest for s in self.sweeps]:
            if isinstance(source.get("model"), str):
                return source["model"]
        return None

    @property
    def weights(self) -> str | None:
        """The model's weights, found as :attr:`model` is."""
        for source in [self.settings] + [s.attrs for s in self.scans] + [s.manifest for s in self.sweeps]:
            if source.get("weights") is not None:
                return str(source["weights"])
        return None


def _visible(path: Path, root: Path) -> bool:
    """Not inside a hidden folder (``.partial``) and not a temporary file."""
    parts = path.relative_to(root).parts
    return not any(p.startswith(".") for p in parts) and not path.name.endswith(".tmp")


def _found(root: Path, name: str) -> list[Path]:
    return sorted((p for p in root.rglob(name) if p.is_file() and _visible(p, root)),
                  key=lambda p: p.relative_to(root).as_posix())


def _block_key(name: str) -> tuple:
    parts = str(name).split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def _parquet_attrs(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        import pyarrow.parquet as pq

        metadata = pq.read_schema(path).metadata or {}
        raw = metadata.get(b"PANDAS_ATTRS")
        return dict(json.loads(raw)) if raw else {}
    except (ImportError, OSError, ValueError) as error:  # an unreadable side file must not stop the report
        logger.warning("could not read the attributes of %s: %s", path, error)
        return {}


def _truthy(values: pd.Series) -> pd.Series:
    if values.dtype == bool:
        return values
    return values.map(lambda v: str(v).strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v))


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        logger.warning("skipping unreadable %s: %s", path, error)
        return None


def _read_scan(path: Path, settings: Mapping[str, Any]) -> ScanOutput | None:
    from rsi_plugin.criteria.equations import summarize
    from rsi_plugin.paper import PAPER_MODEL, compare_to_paper

    table = _read_csv(path, dtype={"block": str})
    if table is None or any(c not in table.columns for c in ("block", "channel", "passes")):
        logger.warning("skipping %s: not a scan table (needs block, channel, passes)", path)
        return None
    table["passes"] = _truthy(table["passes"])
    folder = path.parent
    attrs = _parquet_attrs(folder / "scan.parquet")
    summary = _read_csv(folder / "summary.csv", dtype={"block": str})
    source = "summary.csv"
    if summary is None or any(c not in summary.columns for c in ("block", "channels", "passing")):
        summary, source = summarize(table), "scan.csv"
    if "share" not in summary.columns:
        summary["share"] = summary["passing"] / summary["channels"].where(summary["channels"] > 0)
    comparison = _read_csv(folder / "paper_comparison.csv", dtype={"block": str})
    model = attrs.get("model", settings.get("model"))
    if comparison is None and model == PAPER_MODEL:
        table.attrs.update({k: v for k, v in attrs.items() if k in ("model", "weights")})
        comparison = compare_to_paper(table)
    return ScanOutput(folder, table, summary, source, attrs, comparison)


def _read_sweep(path: Path) -> SweepOutput:
    from rsi_plugin.ablation.eq3 import eq3_summary

    folder = path.parent
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("unreadable %s: %s", path, error)
        manifest = {}
    if not isinstance(manifest, dict):
        logger.warning("%s does not hold a JSON object; its settings are not shown", path)
        manifest = {}
    out = SweepOutput(folder, manifest)
    out.results = _read_csv(folder / "ablation.csv", dtype={"condition": str})
    out.eq3 = _read_csv(folder / "eq3.csv")
    if out.eq3 is not None:
        out.eq3_source = "eq3.csv"
    elif out.results is not None and len(out.results):
        try:
            out.eq3, out.eq3_source = eq3_summary(out.results), "ablation.csv"
        except ValueError as error:
            logger.warning("no Eq. 3 for %s: %s", folder, error)
    out.draws = _read_csv(folder / "draws.csv", dtype={"channels": str}, keep_default_na=False)
    out.skipped = _read_csv(folder / "skipped.csv")
    return out


def discover(run_dir: str | os.PathLike) -> RunContents:
    r"""Find the scan and sweep outputs below a directory (nothing is computed from a model).

    Args:
        run_dir (str or path): the run directory.

    Returns:
        :class:`RunContents`.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory.
        ValueError: ``settings.json`` is not a JSON object.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise MissingFileError(f"run directory not found: {root}")
    settings: dict[str, Any] = {}
    settings_path = root / "settings.json"
    if settings_path.is_file():
        try:
            settings = json.loads(settings_path.read_text())
        except ValueError as error:
            raise RSIError(f"{settings_path} is not valid JSON: {error}") from None
        if not isinstance(settings, dict):
            raise RSIError(f"{settings_path} must hold a JSON object, got {type(settings).__name__}")
    scans = [s for s in (_read_scan(p, settings) for p in _found(root, "scan.csv")) if s is not None]
    sweeps = [_read_sweep(p) for p in _found(root, "sweep.json")]
    sweeps.sort(key=lambda s: (_block_key(str(s.manifest.get("block", ""))), s.dir.relative_to(root).as_posix()))
    grids: dict[str, list[tuple[int, Path]]] = {}
    for path in _found(root, "grid_*.png"):
        match = GRID_PATTERN.match(path.name)
        if match:
            grids.setdefault(match["block"], []).append((int(match["channel"]), path))
    grids = {b: sorted(grids[b]) for b in sorted(grids, key=_block_key)}
    return RunContents(root, settings, scans, sweeps, grids)


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _format(value: Any) -> str:
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
        return ", ".join(_format(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _percent(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _format(value)
    return "–" if math.isnan(value) else f"{100 * value:.1f}%"


def _scale_label(value: Any) -> str:
    try:
        return f"{100 * float(value):g}%"
    except (TypeError, ValueError):
        return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))


def _table(frame: pd.DataFrame, formats: Mapping[str, Callable[[Any], str]] | None = None,
           row_class: Callable[[pd.Series], str] | None = None, css: str = "data",
           index: bool = False) -> str:
    """An escaped HTML table of a frame."""
    formats = formats or {}
    frame = frame.reset_index() if index else frame
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(
            f'<td class="{"num" if _numeric(v) else "txt"}">'
            f"{_e(formats.get(c, _format)(v))}</td>" for c, v in row.items())
        rows.append(f'<tr class="{_e(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f'<table class="{_e(css)}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _settings_table(mapping: Mapping[str, Any]) -> str:
    rows = _flatten(mapping)
    if not rows:
        return '<p class="note">(empty)</p>'
    body = "".join(f'<tr><th scope="row">{_e(k)}</th><td>{_e(_format(v))}</td></tr>' for k, v in rows)
    return f'<table class="settings"><tbody>{body}</tbody></table>'


class _Page:
    """Collects sections; turns paths into escaped links relative to the run directory."""

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
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
        name, n = base, 2
        while name in self._ids:
            name, n = f"{base}-{n}", n + 1
        self._ids.add(name)
        return name

    def section(self, title: str, level: int = 2, toc: bool = True) -> None:
        name = self.anchor(title)
        if toc and level == 2:
            self.toc.append((name, title))
        self.parts.append(f'<h{level} id="{name}">{_e(title)}</h{level}>')

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, path: Path, caption: str, css: str = "figure", alt: str | None = None) -> bool:
        url = self.rel(path)
        if url is None:
            return False
        self.parts.append(f'<figure class="{_e(css)}"><a href="{_e(url)}"><img src="{_e(url)}" alt="{_e(alt or caption)}" '
                          f'loading="lazy"></a><figcaption>{_e(caption)}</figcaption></figure>')
        return True

    def link(self, path: Path, text: str | None = None) -> str:
        url = self.rel(path)
        label = _e(text or path.name)
        return f'<a href="{_e(url)}">{label}</a>' if url else label


# --------------------------------------------------------------------------- sections

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
figure.figure img { max-width: 640px; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { margin: 0; }
.gallery figure.grid img { width: 300px; }
.gallery figure.pair img { width: 112px; image-rendering: pixelated; }
.pair-row { display: flex; gap: 4px; }
details { margin: 0.6em 0 1.2em; }
summary { cursor: pointer; color: #2a5d9f; }
.scroll { max-height: 32em; overflow: auto; border: 1px solid #eee; }
code { font-size: 0.9em; }
.banner { border: 2px solid #c0392b; background: #fdecea; padding: 0.5em 0.8em; margin: 0.8em 0;
          font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 0.9em; }
p.verdict { font-weight: bold; }
"""

SCAN_CAPTION = ("A channel passes when Eq. 1 holds, ReLU(Pre_c(X̂_In)) < Pre_c(S(X̂_In)) (scaling up the In FZ "
                "raises Pre in the positive domain), and Eq. 2 holds, 2/3 < Post_c(X̂_In) / Post_c(X̂_Pre) < 3/2 "
                "(Post answers both summands' FZs about equally); X̂ are centre-neuron FZs, S crops the centre half "
                "and resizes back. The paper (ResNet18, ImageNet) found 6 channels in 1.1 (~9.4%), 2 in 2.0 (~1.5%), "
                "23 in 2.1 (~18%) and 46 in 3.1 (~18%).")
GRID_CAPTION = ("Columns: the channel at In, Pre and Post of the block. Rows: FZ of the channel's centre neuron, "
                "FZ of the whole channel, and the top natural images at the centre neuron (as in the paper's Fig. 1).")
EQ3_CAPTION = ("Eq. 3: mean over random trials of acc(invariant channels ablated) / acc(random channels ablated) "
               "at each scale; whiskers: standard error over the trials (none where fewer than two were kept); blue line: the no-scale ratio. Bars below "
               "the line mean that ablating the scale-invariant channels costs more accuracy under scaling than "
               "without it, relative to random channels (the paper's Fig. 2).")
ACC_CAPTION = ("Top-1 accuracy against the scale transformation (centre crop of p% of the resized image, resized "
               "back): no ablation (black), the scale-invariant channels mean-ablated (red), each random control set "
               "(grey) and their mean (blue).")


def _scan_label(scan: ScanOutput, root: Path) -> str:
    relative = scan.dir.relative_to(root).as_posix()
    return "." if relative in ("", ".") else relative


def _scan_settings(scan: ScanOutput) -> dict[str, Any]:
    table = scan.table
    info: dict[str, Any] = dict(scan.attrs)
    for column in ("source", "transform", "tolerance", "node_variant", "images_per_channel"):
        if column in table.columns:
            values = list(dict.fromkeys(table[column].dropna().tolist()))
            if values:
                info.setdefault(column, values[0] if len(values) == 1 else values)
    info["rows"] = len(table)
    info["blocks"] = list(dict.fromkeys(table["block"].astype(str)))
    return info


def _summary_chart(scan: ScanOutput, contents: RunContents, page: _Page) -> Path | None:
    from rsi_plugin.outputs.figures import plot_summary

    figures = contents.root / "figures"
    if len(contents.scans) == 1:
        path = figures / "summary.png"
    else:
        slug = re.sub(r"[^A-Za-z0-9.]+", "_", _scan_label(scan, contents.root)).strip("_") or "scan"
        path = figures / f"summary_{slug}.png"
    source = scan.dir / "scan.csv"
    stale = not path.is_file() or path.stat().st_mtime < source.stat().st_mtime
    if stale and not scan.summary.empty:
        try:
            plot_summary(scan.summary, path)
        except (OSError, ValueError) as error:
            logger.warning("could not draw %s: %s", path, error)
    return path if path.is_file() else None


def _scan_section(scan: ScanOutput, contents: RunContents, page: _Page, many: bool) -> None:
    label = _scan_label(scan, contents.root)
    page.section(f"Scan: {label}" if many else "Scan (§3)")
    files = [page.link(scan.dir / n, n) for n in ("scan.csv", "summary.csv", "paper_comparison.csv", "scan.parquet")
             if (scan.dir / n).is_file()]
    page.add(f'<p class="meta">Folder <code>{_e(label)}</code>; files: {", ".join(files)}.</p>')
    page.add(_settings_table(_scan_settings(scan)))

    page.section("Passing channels per block", level=3)
    derived = " (computed from scan.csv; summary.csv is missing)" if scan.summary_source == "scan.csv" else ""
    page.add(f'<p class="caption">Channels analysed and passing both criteria per block{_e(derived)}. '
             f"{_e(SCAN_CAPTION)}</p>")
    page.add(_table(scan.summary, {"share": _percent}))
    chart = _summary_chart(scan, contents, page)
    if chart is not None:
        page.figure(chart, "Share of channels passing Eq. 1 and 2 per block; labels: passing / analysed.",
                    alt="bar chart of the passing share per block")

    if scan.comparison is not None:
        page.section("Agreement with the paper's channels", level=3)
        weights = scan.attrs.get("weights", contents.weights)
        page.add('<p class="caption">The channels this scan found against the paper\'s published passing channels '
                 "of ResNet18 IMAGENET1K_V1 (Fig. 1, 3, 4), among the channels scanned. "
                 f"This run's weights: {_e(weights or 'unknown')}. The paper notes results vary with the "
                 "stochastic feature visualisation: this measures agreement, not pass/fail.</p>")
        page.add(_table(scan.comparison))

    table = scan.table.drop(columns=[c for c in scan.table.columns if c.endswith("_path")])
    shown = table.head(MAX_TABLE_ROWS)
    more = f" (first {MAX_TABLE_ROWS} of {len(table)} rows)" if len(table) > len(shown) else f" ({len(table)} rows)"
    page.add(f"<details><summary>Full scan table{_e(more)}: one row per (source, block, channel); "
             f"passing rows shaded. FZ paths are in {page.link(scan.dir / 'scan.csv', 'scan.csv')}.</summary>"
             f'<div class="scroll">'
             f'{_table(shown, row_class=lambda r: "pass" if bool(r.get("passes", False)) else "")}</div></details>')


def _find_fz(value: Any, scan_dir: Path, root: Path) -> Path | None:
    """Where an FZ PNG named in scan.csv lies inside the run directory, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value)
    candidates = [path] if path.is_absolute() else [scan_dir / path, root / path, Path.cwd() / path]
    if len(path.parts) >= 5:  # <fingerprint>/<block>/<node>/<hash>/cNNNNN.png under the scan's fz/
        candidates.append(scan_dir / "fz" / Path(*path.parts[-5:]))
    root = root.resolve()
    for candidate in candidates:
        try:
            if candidate.is_file() and candidate.resolve().is_relative_to(root):
                return candidate
        except OSError:
            continue
    return None


def _passing_counts(scans: Sequence[ScanOutput]) -> dict[str, int]:
    """Passing channels (FZ rows) per block, from the first scan holding each block."""
    counts: dict[str, int] = {}
    for scan in scans:
        rows = scan.table
        if "source" in rows.columns:
            rows = rows[rows["source"].astype(str) == "fz"]
        for block, part in rows.groupby(rows["block"].astype(str), sort=False):
            counts.setdefault(str(block), int(part["passes"].sum()))
    return counts


def _grids_section(contents: RunContents, page: _Page) -> None:
    page.section("Scale-invariant channels (Fig. 1)")
    if contents.grids:
        page.add(f'<p class="caption">{_e(GRID_CAPTION)}</p>')
        passing = _passing_counts(contents.scans)
        for block, grids in contents.grids.items():
            of = f" of {passing[block]} passing" if block in passing else ""
            page.section(f"Block {block}: {len(grids)}{of} channel(s)", level=3, toc=False)
            page.add('<div class="gallery">')
            for channel, path in grids:
                page.figure(path, f"block {block}, channel {channel}", css="grid")
            page.add("</div>")
        return
    pairs = 0
    for scan in contents.scans:
        if not {"in_fz_path", "pre_fz_path"} <= set(scan.table.columns):
            continue
        rows = scan.table[scan.table["passes"]]
        if "source" in rows.columns:
            rows = rows[rows["source"].astype(str) == "fz"]
        for block, part in rows.groupby(rows["block"].astype(str), sort=False):
            found = []
            for row in part.itertuples():
                a = _find_fz(row.in_fz_path, scan.dir, contents.root)
                b = _find_fz(row.pre_fz_path, scan.dir, contents.root)
                if a is not None and b is not None:
                    found.append((int(row.channel), a, b))
            if not found:
                continue
            if pairs == 0:
                page.add('<p class="caption">No Fig.-1 grid in this directory; shown instead: the In (left) and '
                         "Pre (right) centre-neuron FZs of each passing channel, as the scan rendered them.</p>")
            shown = found[:MAX_FZ_PAIRS]
            more = f" (first {len(shown)} of {len(found)})" if len(found) > len(shown) else ""
            page.section(f"Block {block}: {len(found)} channel(s){more}", level=3, toc=False)
            page.add('<div class="gallery">')
            for channel, a, b in shown:
                ua, ub = page.rel(a), page.rel(b)
                page.add(f'<figure class="pair"><div class="pair-row"><img src="{_e(ua)}" alt="In FZ"><img '
                         f'src="{_e(ub)}" alt="Pre FZ"></div><figcaption>channel {channel}: In | Pre</figcaption>'
                         "</figure>")
            page.add("</div>")
            pairs += len(shown)
    if pairs == 0:
        page.add('<p class="note">No Fig.-1 grid (figures/grid_&lt;block&gt;_&lt;channel&gt;.png) and no FZ image of a '
                 "passing channel in this directory.</p>")


def _accuracy_pivot(results: pd.DataFrame) -> pd.DataFrame:
    from rsi_plugin.ablation.eq3 import CONDITIONS

    frame = results.copy()
    frame["scale"] = frame["scale"].astype(float).round(6)
    pivot = frame.pivot_table(index=["condition", "trial"], columns="scale", values="accuracy", aggfunc="first")
    order = {name: i for i, name in enumerate(CONDITIONS)}
    pivot = pivot.sort_index(key=lambda s: s.map(lambda v: order.get(v, len(order))) if s.name == "condition" else s)
    pivot.columns = [_scale_label(c) for c in pivot.columns]
    return pivot.reset_index()


def _sweep_section(sweep: SweepOutput, contents: RunContents, page: _Page) -> None:
    label = sweep.dir.relative_to(contents.root).as_posix() or "."
    manifest = sweep.manifest
    block = manifest.get("block", "?")
    channels = manifest.get("channels") or []
    page.section(f"Ablation: block {block} ({label})")
    files = [page.link(sweep.dir / n, n) for n in ("sweep.json", "ablation.csv", "eq3.csv", "draws.csv", "means.csv",
                                                   "skipped.csv") if (sweep.dir / n).is_file()]
    page.add(f'<p class="meta">{len(channels)} scale-invariant channel(s) mean-ablated at '
             f"{_e(manifest.get('node', 'post'))}; folder <code>{_e(label)}</code>; files: {', '.join(files)}.</p>")
    page.add(_settings_table(manifest))
    from rsi_plugin.outputs.summary import summarize_contents

    ablation = summarize_contents(RunContents(contents.root, {}, [], [sweep], {}))["ablations"][0]
    banner = _starved(ablation)
    if banner:
        page.add(f'<div class="banner">{_e(banner)}</div>')
    page.add(f'<p class="verdict">{_e(ablation["verdict"])}</p>')

    if not page.figure(sweep.dir / "eq3.png", EQ3_CAPTION, alt=f"Eq. 3 ratios per scale, block {block}"):
        page.add('<p class="note">eq3.png is missing (the sweep may not have finished).</p>')
    if sweep.eq3 is not None:
        note = (" Computed from the finished cells of ablation.csv (eq3.csv is missing: the sweep may not have "
                "finished).") if sweep.eq3_source == "ablation.csv" else ""
        page.add(f'<p class="caption">Eq. 3 per scale: ratio_mean ± ratio_se over n_trials random sets, the '
                 "no-scale ratio and the accuracies of each condition; the tests (rsi_plugin.ablation.eq3_stats): a bootstrap "
                 "95% interval of the mean ratio (ratio_ci_low/high), the mean paired difference to the no-scale "
                 "ratio (diff_mean) with one-sided paired permutation (p_permutation) and sign (p_sign) tests over "
                 "the random sets, and the invariant set's scale-specific deficit (deficit) against n_null random "
                 "same-size sets from all channels (null_share: share doing at least as badly; p_null)."
                 f"{_e(note)}</p>")
        page.add(_table(sweep.eq3, {"scale": _scale_label}))
    page.figure(sweep.dir / "accuracy.png", ACC_CAPTION, alt=f"accuracy against scale, block {block}")
    if sweep.results is not None and len(sweep.results):
        n = sorted({int(v) for v in sweep.results.get("n_images", pd.Series(dtype=int)).dropna()})
        images = f" over {', '.join(map(str, n))} images" if n else ""
        page.add(f'<p class="caption">Top-1 accuracy per condition and trial (rows) and scale (columns){_e(images)}.'
                 "</p>")
        shown = sweep.results[sweep.results["condition"].astype(str) != "null_set"]
        nulls = int(sweep.results.loc[sweep.results["condition"].astype(str) == "null_set", "trial"].nunique())
        page.add(_table(_accuracy_pivot(shown)))
        if nulls:
            page.add(f'<p class="note">The {nulls} null sets\' cells are in '
                     f"{page.link(sweep.dir / 'ablation.csv', 'ablation.csv')} (condition null_set).</p>")
    if sweep.draws is not None:
        kept_mask = _truthy(sweep.draws["kept"]) if "kept" in sweep.draws.columns else pd.Series(dtype=bool)
        kept = int(kept_mask.sum())
        tolerance = manifest.get("tolerance")
        page.add(f'<p class="caption">Screening of random control sets in the no-scale condition: {len(sweep.draws)} '
                 f"drawn, {kept} kept, {len(sweep.draws) - kept} rejected (kept when their accuracy is at most the "
                 f"invariant set's + {_e(_format(tolerance))}).</p>")
        page.add(f"<details><summary>Screened draws ({len(sweep.draws)})</summary>"
                 f'<div class="scroll">{_table(sweep.draws, row_class=lambda r: "keep" if str(r.get("kept")) == "True" else "")}'
                 "</div></details>")
    if sweep.skipped is not None and len(sweep.skipped):
        page.add(f'<p class="note">{len(sweep.skipped)} data file(s) could not be read and were skipped '
                 f"({page.link(sweep.dir / 'skipped.csv', 'skipped.csv')}).</p>")


def _starved(ablation: Mapping[str, Any]) -> str | None:
    """The banner text of a sweep that kept fewer random sets than asked, or None."""
    kept, asked = ablation.get("trials_kept"), ablation.get("trials_asked")
    if kept is None or asked is None or kept >= asked:
        return None
    bars = " Fig. 2 has no error bars." if kept < 2 else ""
    return (f"Block {ablation['block']}: screening kept only {kept} of the {asked} random control sets asked "
            f"({ablation.get('draws')} draws, tolerance {_format(ablation.get('tolerance'))}); Eq. 3 rests on "
            f"{kept} set(s).{bars} Rerun with --tolerance auto (the smallest tolerance that keeps {asked}) or a "
            "larger --max-draws.")


def _glance_section(contents: RunContents, page: _Page) -> None:
    """The first screen: per block, the passing channels, the seed agreement, the random
    sets kept and the Eq. 3 verdict with its test."""
    from rsi_plugin.outputs.summary import summarize_contents

    try:
        summary = summarize_contents(contents)
    except (KeyError, ValueError, TypeError) as error:  # a partial run must still get a report
        logger.warning("no overview: %s", error)
        return
    blocks = {b["block"]: b for b in summary["blocks"]}
    ablations = {a["block"]: a for a in summary["ablations"]}
    if not blocks and not ablations:
        return
    page.section("At a glance")
    for ablation in ablations.values():
        text = _starved(ablation)
        if text:
            page.add(f'<div class="banner">{_e(text)}</div>')
    rows = []
    for name in sorted(set(blocks) | set(ablations), key=_block_key):
        b, a = blocks.get(name, {}), ablations.get(name)
        jaccard = b.get("jaccard_mean")
        row = {"block": name, "channels": b.get("channels"),
               "robust": b.get("robust", b.get("passing")), "any seed": b.get("any_seed"),
               "undetermined": b.get("undetermined"),
               "seed Jaccard": "–" if jaccard is None else
               f"{jaccard:.2f} ({_format(b.get('jaccard_min'))}–{_format(b.get('jaccard_max'))})",
               "random sets kept": "–" if a is None else f"{a.get('trials_kept')} of {a.get('trials_asked')}",
               "Eq. 3 verdict": "not ablated" if a is None else a["verdict"]}
        rows.append(row)
    frame = pd.DataFrame(rows)
    seeded = any(b.get("robust") is not None for b in blocks.values())
    if not seeded:
        frame = frame.rename(columns={"robust": "passing"})
    frame = frame.drop(columns=[c for c in ("any seed", "undetermined") if frame[c].isna().all()])
    page.add('<p class="caption">Per block: channels passing both criteria (robust: in every seed, when the scan '
             "has seeds; any seed; undetermined: an In or Pre FZ was not valid), the agreement of the passing sets "
             "between seeds (Jaccard), the random control sets kept by the screening, and whether the Eq. 3 "
             "scale-specific deficit is distinguishable from a null of random same-size sets.</p>")
    page.add(_table(frame))


def _render(contents: RunContents, title: str | None) -> str:
    from rsi_plugin import __version__

    page = _Page(contents.root)
    model = contents.model
    _glance_section(contents, page)
    heading = title or (f"Scale invariance in the residual stream: {model}" if model
                        else f"Scale invariance in the residual stream: {contents.root.resolve().name}")
    if contents.settings:
        page.section("Settings")
        page.add('<p class="caption">What this run was (settings.json).</p>')
        page.add(_settings_table(contents.settings))
    for scan in contents.scans:
        _scan_section(scan, contents, page, many=len(contents.scans) > 1)
    if contents.scans or contents.grids:
        _grids_section(contents, page)
    for sweep in contents.sweeps:
        _sweep_section(sweep, contents, page)

    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    found = (f"{len(contents.scans)} scan(s), {sum(len(g) for g in contents.grids.values())} Fig.-1 grid(s), "
             f"{len(contents.sweeps)} ablation sweep(s)")
    toc = "".join(f'<li><a href="#{name}">{_e(text)}</a></li>' for name, text in page.toc)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(heading)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(heading)}</h1>\n"
        f'<p class="meta">Run directory <code>{_e(contents.root.resolve().name)}</code>: {_e(found)}. '
        f"Model {_e(model or 'unknown')}, weights {_e(contents.weights or 'unknown')}. "
        f"Generated {_e(stamp)} by rsi_plugin {_e(__version__)}, after arXiv 2504.16290.</p>\n"
        f"<nav><ol>{toc}</ol></nav>\n" + "\n".join(page.parts) + "\n</body>\n</html>\n"
    )


def write_report(run_dir: str | os.PathLike, title: str | None = None) -> Path:
    r"""Write ``run_dir/report.html`` from the scan and sweep outputs found below ``run_dir``.

    The report holds: ``settings.json`` as a table; for each scan its settings, the
    per-block count and share of passing channels (the paper's §3; from ``summary.csv``,
    or computed from ``scan.csv``), the summary bar chart (``figures/summary.png``, drawn
    when missing or older than the scan), the comparison with the paper's channels for
    resnet18 and the full scan table (collapsible); the Fig.-1 grids grouped by block (or,
    without grids, the In/Pre FZ pairs of the passing channels that exist); for each sweep
    its settings, the Eq. 3 plot and table, the accuracy-vs-scale plot and table and the
    screening counts. No model is loaded and nothing is recomputed from one; the file is
    written atomically. Images are referenced by paths relative to ``run_dir``, and only
    files that exist are referenced.

    Args:
        run_dir (str or path): a directory holding ``scan.csv`` and/or sweep folders
            (``sweep.json``) anywhere below it, e.g. the folder of ``rsi demo``, ``rsi scan
            --out`` or ``rsi ablate --out``.
        title (str, optional): the report's title; by default named after the model.

    Returns:
        Path of ``report.html``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory.
        ValueError: ``run_dir`` holds neither a ``scan.csv`` nor a ``sweep.json`` below it,
            or an unreadable ``settings.json``.
    """
    contents = discover(run_dir)
    if not contents.scans and not contents.sweeps:
        raise RSIError(f"{contents.root} holds no scan or ablation outputs: looked for scan.csv (from rsi scan; "
                         "columns block, channel, passes) and sweep.json (a sweep folder from rsi ablate) anywhere "
                         "below it")
    text = _render(contents, title)
    path = contents.root / REPORT_NAME
    atomic_write_text(path, text)
    logger.info("wrote %s (%s)", path, f"{len(contents.scans)} scan(s), {len(contents.sweeps)} sweep(s)")
    return path
