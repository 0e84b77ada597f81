"""Where a sweep keeps what it has finished, so a killed sweep picks up where it stopped.

Files in the output folder (every write goes to a temporary file first, then ``os.replace``):

``sweep.json``      what the sweep measures (block, channels, config, model, data size),
                    written once work has begun (the channel means are computed); a rerun
                    with different settings refuses a folder holding results instead of
                    mixing tables, and a ``sweep.json`` beside no result (a run that failed
                    before any work) is replaced
``means.csv``       the ablation value of every channel (``channel, mean``), exact float32
``ablation.csv``    finished cells, one row per (condition, trial, scale), appended as passes end
``draws.csv``       screened random sets, kept or rejected, appended as they are decided
``.partial/``       per-process counts of the pass in progress, every few batches

Only the main process writes the shared files; each process writes its own partial file.
Without a folder everything stays in memory.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from rsi_plugin.core.atomic import atomic_write_csv, atomic_write_text
from rsi_plugin.core.runfolder import SweepFiles
from rsi_plugin.ablation.eq3 import RESULT_COLUMNS
from rsi_plugin.ablation.screening import Draw
from rsi_plugin.errors import RSIError

__all__ = ["SweepStore", "CellKey", "cell_key"]

logger = logging.getLogger(__name__)

CellKey = tuple[str, int, float]


def cell_key(condition: str, trial: int, scale: float) -> CellKey:
    """Canonical key of a cell (scale rounded to 6 decimals)."""
    return (str(condition), int(trial), round(float(scale), 6))


class SweepStore:
    """The sweep's files in ``out_dir`` (or memory when ``out_dir`` is None).

    Args:
        out_dir (str or path, optional): output folder.
        writer (bool): whether this process writes the shared files (the main process).
        rank (int): this process's rank (names its partial file).
    """

    def __init__(self, out_dir: str | os.PathLike | None, writer: bool = True, rank: int = 0) -> None:
        self.dir = Path(out_dir) if out_dir is not None else None
        #: the folder's file names (:class:`~rsi_plugin.core.runfolder.SweepFiles`), None in memory
        self.files = SweepFiles(self.dir) if self.dir is not None else None
        self.writer = writer
        self.rank = rank
        self._cells = pd.DataFrame(columns=list(RESULT_COLUMNS))
        self._draws: list[Draw] = []
        self._means: torch.Tensor | None = None
        self._pending: dict[str, Any] | None = None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _load(self) -> None:
        self._cells = self._read_cells()
        self._draws = self._read_draws()
        self._means = self._read_means()

    def path(self, name: str) -> Path | None:
        """Path of a file in the output folder (None in memory)."""
        return None if self.dir is None else self.dir / name

    # -- the manifest ---------------------------------------------------------------------
    def _has_work(self) -> bool:
        return any(path.exists() for path in (*self.files.results, self.files.partial))

    def check_manifest(self, manifest: dict[str, Any]) -> None:
        """Refuse a folder holding another sweep, or load what a resumed one has finished.
        A new folder's ``manifest`` is written by :meth:`begin`, once work has begun; a
        ``sweep.json`` beside no result (left by a run that failed before any work) is
        replaced then.

        Raises:
            ValueError: the folder's ``sweep.json`` differs (the differing keys are named),
                or the folder holds sweep results without a ``sweep.json``.
        """
        if self.dir is None:
            return
        path = self.files.manifest
        manifest = json.loads(json.dumps(manifest))  # the form it takes on disk
        if path.is_file() and not self._has_work():
            logger.info("%s has no results; its sweep.json (from a run that failed before any work) is replaced",
                        self.dir)
        elif path.is_file():
            old = json.loads(path.read_text())
            diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            if diff:
                details = "; ".join(f"{k}: {old.get(k)!r} in the folder, {manifest.get(k)!r} now" for k in diff)
                if "set_draws" in diff and "set_draws" not in old:
                    details += (" -- the folder was written before random and null sets were drawn distinct "
                                "(its sets may repeat and its null may hold the invariant set)")
                raise RSIError(f"{self.dir} holds a sweep with other settings ({details}); "
                                 "use another output folder or remove it")
            self._load()
            return
        if any(path.exists() for path in self.files.results):
            raise RSIError(f"{self.dir} holds sweep files but no sweep.json; use an empty output folder")
        self._pending = manifest

    def begin(self) -> None:
        """Write the ``sweep.json`` that :meth:`check_manifest` accepted for a new folder."""
        if self.dir is not None and self.writer and self._pending is not None:
            atomic_write_text(self.files.manifest, json.dumps(self._pending, indent=2) + "\n")
        self._pending = None

    # -- means --------------------------------------------------------------------------
    def _read_means(self) -> torch.Tensor | None:
        path = self.files.means
        if not path.is_file():
            return None
        frame = pd.read_csv(path)
        return torch.tensor(frame.sort_values("channel")["mean"].to_numpy(), dtype=torch.float64).float()

    @property
    def means(self) -> torch.Tensor | None:
        """The stored channel means ``[C]`` (float32), or None."""
        return self._means

    def save_means(self, means: torch.Tensor) -> None:
        """Keep the channel means; float32 values are written exactly (as float64 text)."""
        self._means = means.detach().float().cpu()
        if self.dir is not None and self.writer:
            frame = pd.DataFrame({"channel": range(len(self._means)), "mean": self._means.double().numpy()})
            atomic_write_csv(self.files.means, frame)

    # -- cells --------------------------------------------------------------------------
    def _read_cells(self) -> pd.DataFrame:
        path = self.files.cells
        if not path.is_file():
            return pd.DataFrame(columns=list(RESULT_COLUMNS))
        frame = pd.read_csv(path, dtype={"condition": str})
        missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
        if missing:
            raise RSIError(f"{path} lacks column(s) {missing}: not a table this sweep wrote")
        frame["scale"] = frame["scale"].astype(float).round(6)
        return frame

    @property
    def cells(self) -> pd.DataFrame:
        """Finished cells, one row each (columns :data:`~rsi_plugin.ablation.eq3.RESULT_COLUMNS`)."""
        return self._cells.copy()

    def done(self) -> dict[CellKey, tuple[int, int]]:
        """Finished cells: key -> ``(correct, n_images)``."""
        return {cell_key(r.condition, r.trial, r.scale): (int(r.correct), int(r.n_images))
                for r in self._cells.itertuples()}

    def add_cells(self, counts: dict[CellKey, tuple[int, int]]) -> None:
        """Append finished cells (rewriting ``ablation.csv`` atomically)."""
        if not counts:
            return
        rows = [{"condition": c, "trial": t, "scale": s, "accuracy": (k / n if n else float("nan")),
                 "n_images": n, "correct": k} for (c, t, s), (k, n) in counts.items()]
        new = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        frames = [f for f in (self._cells, new) if len(f)]
        self._cells = pd.concat(frames, ignore_index=True) if frames else new
        if self.dir is not None and self.writer:
            atomic_write_csv(self.files.cells, self._cells)

    # -- draws --------------------------------------------------------------------------
    def _read_draws(self) -> list[Draw]:
        path = self.files.draws
        if not path.is_file():
            return []
        frame = pd.read_csv(path, dtype={"channels": str}, keep_default_na=False)
        return [Draw(int(r.draw), tuple(int(c) for c in str(r.channels).split()), int(r.correct), int(r.n_images),
                     float(r.accuracy), float(r.invariant_accuracy), str(r.kept) == "True", int(r.trial))
                for r in frame.itertuples()]

    @property
    def draws(self) -> list[Draw]:
        """Screened draws so far, in draw order."""
        return list(self._draws)

    def add_draws(self, draws: list[Draw]) -> None:
        """Append decided draws (rewriting ``draws.csv`` atomically)."""
        from rsi_plugin.ablation.screening import draws_frame

        self._draws.extend(draws)
        if self.dir is not None and self.writer and draws:
            atomic_write_csv(self.files.draws, draws_frame(self._draws))

    def replace_draws(self, draws: list[Draw]) -> None:
        """Replace the recorded draws (a screening decided again, e.g. ``tolerance="auto"``)."""
        self._draws = list(draws)
        if self.dir is not None and self.writer:
            from rsi_plugin.ablation.screening import draws_frame

            atomic_write_csv(self.files.draws, draws_frame(self._draws))

    # -- partial passes -------------------------------------------------------------------
    def _partial_path(self, pass_id: str) -> Path | None:
        if self.dir is None:
            return None
        return self.files.partial / f"{pass_id}.rank{self.rank}.json"

    def load_partial(self, pass_id: str, signature: dict[str, Any]) -> dict[str, Any] | None:
        """The saved state of a pass in progress, if it was saved with the same ``signature``."""
        path = self._partial_path(pass_id)
        if path is None or not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            logger.warning("ignoring unreadable checkpoint %s", path)
            return None
        if state.get("signature") != json.loads(json.dumps(signature)):
            logger.info("checkpoint %s is for another pass plan; starting the pass over", path)
            return None
        return state

    def save_partial(self, pass_id: str, signature: dict[str, Any], state: dict[str, Any]) -> None:
        """Save this process's state of a pass in progress."""
        path = self._partial_path(pass_id)
        if path is not None:
            atomic_write_text(path, json.dumps({"signature": signature, **state}))

    def clear_partial(self, pass_id: str) -> None:
        """Remove this process's checkpoint of a finished pass."""
        path = self._partial_path(pass_id)
        if path is not None and path.is_file():
            path.unlink()

    def write_frame(self, path: Path, frame: pd.DataFrame) -> Path | None:
        """Write a final table (main process only), e.g. ``store.files.eq3``."""
        if self.dir is None or not self.writer:
            return None
        return atomic_write_csv(path, frame)
