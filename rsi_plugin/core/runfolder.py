r"""The run folder: every file name a run writes or reads, defined once.

``rsi scan --out``, ``rsi ablate --out`` and ``rsi demo --out`` write into a folder; ``rsi
report`` reads one. The writers (:func:`rsi_plugin.criteria.channel_scan.write_scan`,
:class:`rsi_plugin.ablation.store.SweepStore`, :func:`rsi_plugin.ablation.experiment.sweep`,
:func:`rsi_plugin.apps.demo.run_demo`) and the readers (:mod:`rsi_plugin.outputs.contents`,
the CLI) take the names from here. A demo run folder::

    RUN/settings.json               what the run was (rsi demo)
    RUN/report.html                 the report (rsi report, rsi demo)
    RUN/results-summary.json        the headline numbers (rsi report --summary-json, rsi demo)
    RUN/scan/                       a scan folder (ScanFiles): scan.csv, scan.parquet,
                                    scan_channels.csv, summary.csv, paper_comparison.csv, fz/,
                                    scan_settings.json (what the tables were scanned with),
                                    sensitivity.csv, sensitivity_summary.csv (rsi sensitivity),
                                    scan_controls.csv (a scan with controls)
    RUN/planted/                    the planted positive control (rsi demo; apps.planted):
                                    planted.json, planted_scan.csv, planted_controls.csv,
                                    planted_eq3.csv, fz/ (names that discover() does not take
                                    for the run's own scan or sweeps)
    RUN/figures/                    grid_<block>_<channel>.png (Fig. 1), summary.png
    RUN/ablation/<block>/           a sweep folder (SweepFiles): sweep.json, means.csv,
                                    ablation.csv, draws.csv, eq3.csv, eq3.png, accuracy.png,
                                    skipped.csv, .partial/

``rsi scan --out OUT`` makes ``OUT`` a scan folder and ``rsi ablate --out OUT`` a sweep
folder; :func:`rsi_plugin.outputs.contents.discover` finds both kinds anywhere below a
directory. This module is pure path arithmetic (no I/O; it imports only the standard library
and :mod:`rsi_plugin.errors`), so every layer may use it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rsi_plugin.errors import InputTypeError

__all__ = [
    "RunLayout",
    "ScanFiles",
    "SweepFiles",
    "PlantedFiles",
    "SCAN_TABLE",
    "SWEEP_MANIFEST",
    "GRID_GLOB",
    "GRID_PATTERN",
    "grid_filename",
]

# -- the run folder (rsi demo)
SETTINGS = "settings.json"
REPORT = "report.html"
RESULTS_SUMMARY = "results-summary.json"
SCAN_DIR = "scan"
FIGURES_DIR = "figures"
ABLATION_DIR = "ablation"
SUMMARY_PLOT = "summary.png"
#: the planted positive control of a demo run (:mod:`rsi_plugin.apps.planted`)
PLANTED_DIR = "planted"
PLANTED_SUMMARY = "planted.json"
PLANTED_SCAN = "planted_scan.csv"
PLANTED_CONTROLS = "planted_controls.csv"
PLANTED_EQ3 = "planted_eq3.csv"

# -- a scan folder (rsi scan --out)
SCAN_TABLE = "scan.csv"
SCAN_PARQUET = "scan.parquet"
SCAN_CHANNELS = "scan_channels.csv"
SCAN_SUMMARY = "summary.csv"
#: the settings the scan's tables were computed with (a later scan merges into them only when they match)
SCAN_SETTINGS = "scan_settings.json"
PAPER_COMPARISON = "paper_comparison.csv"
FZ_CACHE_DIR = "fz"
#: the analysis-choice sensitivity of a scan (:mod:`rsi_plugin.criteria.sensitivity`)
SENSITIVITY = "sensitivity.csv"
SENSITIVITY_SUMMARY = "sensitivity_summary.csv"
#: the rows of a scan's untrained control copies (:mod:`rsi_plugin.criteria.controls`)
SCAN_CONTROLS = "scan_controls.csv"
#: the scan's CSV tables, in the order :func:`~rsi_plugin.criteria.channel_scan.write_scan` writes them
SCAN_TABLES: tuple[str, ...] = (SCAN_TABLE, SCAN_CHANNELS, SCAN_SUMMARY, PAPER_COMPARISON)

# -- a sweep folder (rsi ablate --out)
SWEEP_MANIFEST = "sweep.json"
MEANS = "means.csv"
ABLATION_CELLS = "ablation.csv"
DRAWS = "draws.csv"
EQ3_TABLE = "eq3.csv"
EQ3_PLOT = "eq3.png"
ACCURACY_PLOT = "accuracy.png"
SKIPPED = "skipped.csv"
PARTIAL_DIR = ".partial"

# -- the Fig.-1 grids
GRID_GLOB = "grid_*.png"
GRID_PATTERN = re.compile(r"^grid_(?P<block>.+)_(?P<channel>\d+)\.png$")


def grid_filename(block: str, channel: int) -> str:
    """Name of a channel's Fig.-1 grid PNG: ``grid_<block>_<channel>.png``."""
    return f"grid_{block}_{int(channel)}.png"


@dataclass(frozen=True)
class _Folder:
    """A folder of a run; ``dir`` is made a Path."""

    dir: Path

    def __post_init__(self) -> None:
        if not isinstance(self.dir, (str, os.PathLike)):
            raise InputTypeError(f"dir must be a str or path, got {type(self.dir).__name__}")
        object.__setattr__(self, "dir", Path(self.dir))


@dataclass(frozen=True)
class ScanFiles(_Folder):
    r"""The files of one scan folder (``rsi scan --out DIR``, or ``RUN/scan``).

    Args:
        dir (str or path): the folder.
    """

    @property
    def table(self) -> Path:
        """``scan.csv``: one row per (source, seed, block, channel)."""
        return self.dir / SCAN_TABLE

    @property
    def parquet(self) -> Path:
        """``scan.parquet``: the same rows with the table's attributes (with pyarrow)."""
        return self.dir / SCAN_PARQUET

    @property
    def channels(self) -> Path:
        """``scan_channels.csv``: one row per channel over the seeds."""
        return self.dir / SCAN_CHANNELS

    @property
    def summary(self) -> Path:
        """``summary.csv``: one row per block."""
        return self.dir / SCAN_SUMMARY

    @property
    def settings(self) -> Path:
        """``scan_settings.json``: the settings the tables were scanned with
        (:func:`~rsi_plugin.criteria.channel_scan.write_scan` merges a scan of other blocks only
        when they are the same)."""
        return self.dir / SCAN_SETTINGS

    @property
    def comparison(self) -> Path:
        """``paper_comparison.csv`` (resnet18 only)."""
        return self.dir / PAPER_COMPARISON

    @property
    def fz_cache(self) -> Path:
        """``fz/``: the feature-visualisation cache."""
        return self.dir / FZ_CACHE_DIR

    @property
    def controls(self) -> Path:
        """``scan_controls.csv``: the rows of the untrained control copies (``control`` column first)."""
        return self.dir / SCAN_CONTROLS

    @property
    def sensitivity(self) -> Path:
        """``sensitivity.csv``: per (block, channel, seed, analysis choice) the verdict re-evaluated."""
        return self.dir / SENSITIVITY

    @property
    def sensitivity_summary(self) -> Path:
        """``sensitivity_summary.csv``: per (block, analysis choice) the flips."""
        return self.dir / SENSITIVITY_SUMMARY


@dataclass(frozen=True)
class SweepFiles(_Folder):
    r"""The files of one sweep folder (``rsi ablate --out DIR``, or ``RUN/ablation/<block>``).

    Args:
        dir (str or path): the folder.
    """

    @property
    def manifest(self) -> Path:
        """``sweep.json``: what the sweep measures."""
        return self.dir / SWEEP_MANIFEST

    @property
    def means(self) -> Path:
        """``means.csv``: the ablation value of every channel."""
        return self.dir / MEANS

    @property
    def cells(self) -> Path:
        """``ablation.csv``: finished cells, one row per (condition, trial, scale)."""
        return self.dir / ABLATION_CELLS

    @property
    def draws(self) -> Path:
        """``draws.csv``: the screened random sets."""
        return self.dir / DRAWS

    @property
    def eq3(self) -> Path:
        """``eq3.csv``: Eq. 3 per scale with its tests."""
        return self.dir / EQ3_TABLE

    @property
    def eq3_plot(self) -> Path:
        """``eq3.png``: Fig. 2."""
        return self.dir / EQ3_PLOT

    @property
    def accuracy_plot(self) -> Path:
        """``accuracy.png``: accuracy against scale per condition."""
        return self.dir / ACCURACY_PLOT

    @property
    def skipped(self) -> Path:
        """``skipped.csv``: data files that could not be read."""
        return self.dir / SKIPPED

    @property
    def partial(self) -> Path:
        """``.partial/``: per-process counts of the pass in progress."""
        return self.dir / PARTIAL_DIR

    @property
    def results(self) -> tuple[Path, ...]:
        """The files whose presence means the folder holds sweep work (``sweep.json`` aside)."""
        return (self.cells, self.draws, self.means)


@dataclass(frozen=True)
class RunLayout:
    r"""A run folder as ``rsi demo`` lays it out (see the module docstring).

    Args:
        root (str or path): the run folder.

    Example::

        run = RunLayout("rsi-demo")
        run.scan.table            # rsi-demo/scan/scan.csv
        run.sweep("2.1").eq3      # rsi-demo/ablation/2.1/eq3.csv
        run.grid("2.1", 15)       # rsi-demo/figures/grid_2.1_15.png
    """

    root: Path

    def __post_init__(self) -> None:
        if not isinstance(self.root, (str, os.PathLike)):
            raise InputTypeError(f"root must be a str or path, got {type(self.root).__name__}")
        object.__setattr__(self, "root", Path(self.root))

    @property
    def settings(self) -> Path:
        """``settings.json``: the run's settings and wall times."""
        return self.root / SETTINGS

    @property
    def report(self) -> Path:
        """``report.html``."""
        return self.root / REPORT

    @property
    def results_summary(self) -> Path:
        """``results-summary.json``: the headline numbers."""
        return self.root / RESULTS_SUMMARY

    @property
    def scan(self) -> ScanFiles:
        """The scan folder ``scan/``."""
        return ScanFiles(self.root / SCAN_DIR)

    @property
    def figures(self) -> Path:
        """``figures/``: the Fig.-1 grids and the summary chart."""
        return self.root / FIGURES_DIR

    @property
    def summary_plot(self) -> Path:
        """``figures/summary.png``: the share of passing channels per block."""
        return self.figures / SUMMARY_PLOT

    def grid(self, block: str, channel: int) -> Path:
        """``figures/grid_<block>_<channel>.png``."""
        return self.figures / grid_filename(block, channel)

    @property
    def ablation(self) -> Path:
        """``ablation/``: one sweep folder per block."""
        return self.root / ABLATION_DIR

    def sweep(self, block: str) -> SweepFiles:
        """The sweep folder of a block, ``ablation/<block>``."""
        return SweepFiles(self.ablation / str(block))

    @property
    def planted(self) -> "PlantedFiles":
        """The planted positive control's folder ``planted/``."""
        return PlantedFiles(self.root / PLANTED_DIR)


@dataclass(frozen=True)
class PlantedFiles:
    """The planted positive control's files (``RUN/planted/``), named so that
    :func:`rsi_plugin.outputs.contents.discover` never takes them for the run's own scan or sweeps.

    Args:
        dir (path): the folder.
    """

    dir: Path

    @property
    def summary(self) -> Path:
        """``planted.json``: recall, false positives, untrained copies, Eq. 3 positive control."""
        return self.dir / PLANTED_SUMMARY

    @property
    def scan(self) -> Path:
        """``planted_scan.csv``: the planted model's scan rows."""
        return self.dir / PLANTED_SCAN

    @property
    def controls(self) -> Path:
        """``planted_controls.csv``: the rows of its untrained copies."""
        return self.dir / PLANTED_CONTROLS

    @property
    def eq3(self) -> Path:
        """``planted_eq3.csv``: Eq. 3 of the planted classifier with the planted channels ablated."""
        return self.dir / PLANTED_EQ3

    @property
    def fz_cache(self) -> Path:
        """``fz/``: its feature-visualisation cache."""
        return self.dir / FZ_CACHE_DIR
