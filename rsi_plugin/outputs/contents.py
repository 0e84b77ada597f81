r"""Finding what a run wrote: the scan and sweep folders anywhere below a directory, read back.

:func:`discover` looks for what ``rsi scan``, ``rsi ablate`` and ``rsi demo`` write (the
names are those of :mod:`rsi_plugin.core.runfolder`), anywhere below the directory:

* ``settings.json`` at the top (what the run was);
* every ``scan.csv`` (with its ``summary.csv``, ``paper_comparison.csv`` and ``scan.parquet``
  attributes beside it);
* the Fig.-1 grids ``grid_<block>_<channel>.png``;
* every sweep folder, i.e. one holding ``sweep.json`` (``ablation.csv``, ``eq3.csv``,
  ``draws.csv``, ``skipped.csv``).

Nothing is recomputed from a model; tables missing from a folder are derived from the CSVs
that are there (the per-block summary from ``scan.csv``, Eq. 3 from ``ablation.csv``).
Hidden folders (``.partial``) and temporary files are ignored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rsi_plugin.core.runfolder import (
    ABLATION_CELLS,
    EQ3_TABLE,
    GRID_GLOB,
    GRID_PATTERN,
    SCAN_SUMMARY,
    SCAN_TABLE,
    SWEEP_MANIFEST,
    RunLayout,
    ScanFiles,
    SweepFiles,
)
from rsi_plugin.core.frames import truthy
from rsi_plugin.errors import MissingFileError, PathError, RSIError

__all__ = ["discover", "RunContents", "ScanOutput", "SweepOutput", "block_key"]

logger = logging.getLogger(__name__)


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
            :func:`~rsi_plugin.criteria.paper_comparison.compare_to_paper` for a resnet18 scan without it.
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


def block_key(name: str) -> tuple:
    """Sort key of a block name: ``"3.10"`` after ``"3.9"``."""
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
    from rsi_plugin.criteria.paper_comparison import compare_to_paper
    from rsi_plugin.paper import PAPER_MODEL

    table = _read_csv(path, dtype={"block": str})
    if table is None or any(c not in table.columns for c in ("block", "channel", "passes")):
        logger.warning("skipping %s: not a scan table (needs block, channel, passes)", path)
        return None
    table["passes"] = truthy(table["passes"])
    folder = path.parent
    files = ScanFiles(folder)
    attrs = _parquet_attrs(files.parquet)
    summary = _read_csv(files.summary, dtype={"block": str})
    source = SCAN_SUMMARY
    if summary is None or any(c not in summary.columns for c in ("block", "channels", "passing")):
        summary, source = summarize(table), SCAN_TABLE
    if "share" not in summary.columns:
        summary["share"] = summary["passing"] / summary["channels"].where(summary["channels"] > 0)
    comparison = _read_csv(files.comparison, dtype={"block": str})
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
    files = SweepFiles(folder)
    out = SweepOutput(folder, manifest)
    out.results = _read_csv(files.cells, dtype={"condition": str})
    out.eq3 = _read_csv(files.eq3)
    if out.eq3 is not None:
        out.eq3_source = EQ3_TABLE
    elif out.results is not None and len(out.results):
        try:
            out.eq3, out.eq3_source = eq3_summary(out.results), ABLATION_CELLS
        except ValueError as error:
            logger.warning("no Eq. 3 for %s: %s", folder, error)
    out.draws = _read_csv(files.draws, dtype={"channels": str}, keep_default_na=False)
    out.skipped = _read_csv(files.skipped)
    return out


def discover(run_dir: str | os.PathLike) -> RunContents:
    r"""Find the scan and sweep outputs below a directory (nothing is computed from a model).

    Args:
        run_dir (str or path): the run directory.

    Returns:
        :class:`RunContents`.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        PathError: ``run_dir`` is a file (the message says so, and names its folder).
        ValueError: ``settings.json`` is not a JSON object.
    """
    root = Path(run_dir)
    if root.exists() and not root.is_dir():
        raise PathError(f"{root} is a file, not a directory: give the run directory, the folder holding scan.csv "
                        f"and/or sweep folders below it (e.g. {root.parent})")
    if not root.is_dir():
        raise MissingFileError(f"run directory not found: {root}")
    settings: dict[str, Any] = {}
    settings_path = RunLayout(root).settings
    if settings_path.is_file():
        try:
            settings = json.loads(settings_path.read_text())
        except ValueError as error:
            raise RSIError(f"{settings_path} is not valid JSON: {error}") from None
        if not isinstance(settings, dict):
            raise RSIError(f"{settings_path} must hold a JSON object, got {type(settings).__name__}")
    scans = [s for s in (_read_scan(p, settings) for p in _found(root, SCAN_TABLE)) if s is not None]
    sweeps = [_read_sweep(p) for p in _found(root, SWEEP_MANIFEST)]
    sweeps.sort(key=lambda s: (block_key(str(s.manifest.get("block", ""))), s.dir.relative_to(root).as_posix()))
    grids: dict[str, list[tuple[int, Path]]] = {}
    for path in _found(root, GRID_GLOB):
        match = GRID_PATTERN.match(path.name)
        if match:
            grids.setdefault(match["block"], []).append((int(match["channel"]), path))
    grids = {b: sorted(grids[b]) for b in sorted(grids, key=block_key)}
    return RunContents(root, settings, scans, sweeps, grids)
