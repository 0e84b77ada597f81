r"""The scan's FZ work in units, shared among the processes of ``torchrun``, and one progress bar.

**Units.** The FZ engine runs a continuous batch: a channel that plateaus leaves it and the
next one of the list joins, so a channel's image is equal to about 1e-4 whatever its
batch-mates, but bitwise equal only for the same channel list
(``tests/featureviz/test_featureviz.py::test_batch_invariance``). The scan therefore always
renders in **units**: (block, node, seed, a fixed chunk of the block's channel list), the
chunks ``unit_channels`` channels long (:data:`UNIT_BATCHES` × ``channels_per_batch`` by
default) in the order of the list (:func:`plan_units`). One process renders the same units
as K processes, so the records, and the tables, are the same bytes.

**Sharding** (:func:`rsi_plugin.criteria.channel_scan.scan` under a process group of K > 1
processes, e.g. ``torchrun --nproc_per_node K -m rsi_plugin.cli scan ...``): for each seed
every rank renders its units (:func:`assign_units`: round robin over the plan) into the
shared FZ cache (:func:`render_share`), waits for the others, then runs the one-process
path, which finds every record cached; the channels rendered by any rank are gathered so
that ``fz_computed`` means "rendered in this run". A killed run keeps every finished
record; a rerun renders what is missing (a unit cut short renders its missing channels, a
different batch: equal to ~1e-4, as after any interrupted one-process run). Several nodes
work the same way when the cache is on a filesystem they share.

**Progress** (:class:`RunProgress`): one bar for the whole run, over the planned FZ records
(channels × 2 nodes × seeds, with the control copies; an upper bound with ``adaptive``,
lowered as the rule stops channels), counting the records present in the cache (polled by
rank 0 at its own unit boundaries and every few seconds from a background thread) or, without
a cache, the channels rendered here; the channel-steps of the finished blocks as a postfix.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from rsi_plugin.core.blocks import ResidualBlock
from rsi_plugin.criteria.equations import node_sites
from rsi_plugin.errors import ConfigError
from rsi_plugin.featureviz.cache import config_hash, model_fingerprint, record_path
from rsi_plugin.featureviz.optimize import FeatureVizConfig, FeatureVizResult, render

__all__ = ["UNIT_BATCHES", "ROLES", "Unit", "unit_size", "chunks", "plan_units", "assign_units", "render_unit",
           "render_share", "join_results", "record_paths", "RunProgress"]

logger = logging.getLogger(__name__)

#: a unit is this many batches of channels (``unit_channels = UNIT_BATCHES * channels_per_batch``):
#: enough for the running batch to stay full most of the time, small enough to share
UNIT_BATCHES: int = 4
#: the nodes whose FZs the criteria need, in the order they are rendered
ROLES: tuple[str, ...] = ("in", "pre")


@dataclass(frozen=True)
class Unit:
    """One piece of FZ work: the channels of a block's node (``role``: ``"in"`` or ``"pre"``,
    rendered at the site :func:`rsi_plugin.criteria.equations.node_sites` gives) for one seed."""

    block: str
    role: str
    seed: int
    channels: tuple[int, ...]


def unit_size(featureviz: FeatureVizConfig, unit_channels: int | None = None) -> int:
    """Channels per unit: ``unit_channels``, or :data:`UNIT_BATCHES` × ``channels_per_batch``.

    Raises:
        ConfigError: ``unit_channels`` below 1.
    """
    if unit_channels is None:
        return UNIT_BATCHES * int(featureviz.channels_per_batch)
    if isinstance(unit_channels, bool) or not isinstance(unit_channels, int) or unit_channels < 1:
        raise ConfigError(f"unit_channels must be a positive integer or None, got {unit_channels!r}")
    return unit_channels


def chunks(channels: Sequence[int], size: int) -> list[list[int]]:
    """``channels`` cut into consecutive pieces of ``size`` (the last one shorter)."""
    channels = list(channels)
    return [channels[i:i + size] for i in range(0, len(channels), size)]


def plan_units(channels: Mapping[str, Sequence[int]], seed: int, size: int) -> list[Unit]:
    """Every unit of one seed: per block (in the mapping's order), In then Pre, the channel
    list in consecutive chunks of ``size``. Each (block, role, channel) is in exactly one unit.

    Args:
        channels (mapping): block name -> the channels to render (in the scan's order).
        seed (int): the FZ seed.
        size (int): channels per unit (:func:`unit_size`).

    Returns:
        list of :class:`Unit`.
    """
    return [Unit(block, role, int(seed), tuple(int(c) for c in part))
            for block, wanted in channels.items() for role in ROLES for part in chunks(wanted, size)]


def assign_units(units: Sequence[Unit], rank: int, world: int) -> list[Unit]:
    """Rank ``rank``'s share of ``units`` among ``world`` processes: every ``world``-th unit,
    from the ``rank``-th (deterministic, disjoint, together all of them).

    Raises:
        ConfigError: ``rank`` not in ``0 .. world - 1``.
    """
    if not 0 <= rank < world:
        raise ConfigError(f"rank must be in 0..{world - 1}, got {rank}")
    return list(units[rank::world])


def _config(featureviz: FeatureVizConfig, seed: int) -> FeatureVizConfig:
    return dataclasses.replace(featureviz, seed=int(seed))


def render_unit(module: nn.Module, block: ResidualBlock, unit: Unit, featureviz: FeatureVizConfig,
                node_variant: str, cache_dir: str | Path | None, force: bool = False, progress: bool = False,
                callback: Callable | None = None) -> FeatureVizResult:
    """Render one unit (:func:`rsi_plugin.featureviz.optimize.render` of its channels, its seed).

    Args:
        module (nn.Module): the scanned model.
        block (ResidualBlock): the unit's block.
        unit (Unit): what to render.
        featureviz (FeatureVizConfig): the scan's FZ settings (the unit's seed replaces its seed).
        node_variant (str): where In and Pre are read (``"text"`` or ``"code"``).
        cache_dir, force, progress, callback: as :func:`~rsi_plugin.featureviz.optimize.render`.

    Returns:
        :class:`~rsi_plugin.featureviz.optimize.FeatureVizResult`.
    """
    where, node = node_sites(module, block, node_variant)[unit.role]
    return render(module, where, node, channels=list(unit.channels), config=_config(featureviz, unit.seed),
                  cache_dir=cache_dir, force=force, progress=progress, callback=callback)


def join_results(parts: Sequence[FeatureVizResult]) -> FeatureVizResult:
    """The units of one node as one result, channels in order."""
    if len(parts) == 1:
        return parts[0]
    return dataclasses.replace(
        parts[0], channels=[c for p in parts for c in p.channels], images=torch.cat([p.images for p in parts]),
        activations=torch.cat([p.activations for p in parts]), paths=[x for p in parts for x in p.paths],
        computed=[c for p in parts for c in p.computed], histories=[x for p in parts for x in p.histories],
        status=[x for p in parts for x in p.status], steps_used=[x for p in parts for x in p.steps_used])


def render_share(module: nn.Module, blocks: Mapping[str, ResidualBlock], units: Sequence[Unit],
                 featureviz: FeatureVizConfig, node_variant: str, cache_dir: str | Path, rank: int, world: int,
                 force: bool = False, callback: Callable | None = None,
                 on_unit: Callable[[Unit, FeatureVizResult], None] | None = None) -> set[tuple[str, str, int]]:
    """Render rank ``rank``'s share (:func:`assign_units`) of ``units`` into the cache.

    Args:
        module (nn.Module): the scanned model.
        blocks (mapping): block name -> :class:`~rsi_plugin.core.blocks.ResidualBlock`.
        units (sequence of Unit): the whole plan (:func:`plan_units`).
        featureviz (FeatureVizConfig): the FZ settings.
        node_variant (str): ``"text"`` or ``"code"``.
        cache_dir (path): the shared FZ cache.
        rank (int), world (int): this process and the number of processes.
        force (bool): render cached records again.
        callback (callable, optional): passed to each render (progress).
        on_unit (callable, optional): ``on_unit(unit, result)`` after each unit is cached.

    Returns:
        set of ``(block, role, channel)`` rendered here (the rest was cached).
    """
    computed: set[tuple[str, str, int]] = set()
    mine = assign_units(units, rank, world)
    logger.info("rank %d of %d: %d of %d FZ units (%d channels)", rank, world, len(mine), len(units),
                sum(len(u.channels) for u in mine))
    for unit in mine:
        result = render_unit(module, blocks[unit.block], unit, featureviz, node_variant, cache_dir, force,
                             callback=callback)
        computed.update((unit.block, unit.role, int(c)) for c in result.computed)
        if on_unit is not None:
            on_unit(unit, result)
    return computed


def record_paths(module: nn.Module, blocks: Mapping[str, ResidualBlock], units: Iterable[Unit],
                 featureviz: FeatureVizConfig, node_variant: str, cache_dir: str | Path) -> list[Path]:
    """The cache record of every channel of ``units`` (where :func:`render_unit` writes it)."""
    fingerprint = model_fingerprint(module)
    hashes: dict[tuple[str, str, int], tuple[str, str, str]] = {}
    paths = []
    for unit in units:
        key = (unit.block, unit.role, unit.seed)
        if key not in hashes:
            where, node = node_sites(module, blocks[unit.block], node_variant)[unit.role]
            cfg = _config(featureviz, unit.seed).resolved(module, where, node)
            hashes[key] = (where, node, config_hash(cfg.cache_key()))
        where, node, chash = hashes[key]
        paths.extend(record_path(cache_dir, fingerprint, where, node, chash, c) for c in unit.channels)
    return paths


class RunProgress:
    """One tqdm bar over the FZ records of a whole run (all seeds, all control copies, all ranks).

    A run is a sequence of phases (one seed of one model): :meth:`start_phase` with the
    phase's number of records and, with a cache, their paths; the bar shows the records of
    the finished phases plus those of the current one present in the cache (counted at
    :meth:`poll` and every ``poll_seconds`` by a background thread) or, without paths, the
    channels rendered here (:meth:`callback`).

    Args:
        total (int): planned records (an upper bound; :meth:`shrink` lowers it).
        enabled (bool): show the bar (rank 0); disabled, every method is cheap and silent.
        poll_seconds (float): how often the background thread counts the records; 0: never.
    """

    def __init__(self, total: int, enabled: bool = True, poll_seconds: float = 3.0) -> None:
        self.enabled = bool(enabled)
        self.bar = tqdm(total=int(total), disable=not self.enabled, desc="scan: FZ records", unit="FZ",
                        smoothing=0.05)
        self.steps = 0
        self._base = 0
        self._size = 0
        self._paths: list[Path] = []
        self._local = 0
        self._seen = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled and poll_seconds > 0:
            self._thread = threading.Thread(target=self._run, args=(float(poll_seconds),), daemon=True,
                                            name="rsi-scan-progress")
            self._thread.start()

    @property
    def done(self) -> int:
        """Records done: the finished phases' and the current phase's."""
        with self._lock:
            return self._base + min(self._size, max(self._local, self._seen))

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.poll()

    def _show(self) -> None:
        if not self.enabled:
            return
        done = self.done
        with self._lock:
            self.bar.n = done
            self.bar.set_postfix_str(f"{self.steps:,} channel-steps", refresh=False)
            self.bar.refresh()

    def start_phase(self, size: int, paths: Sequence[Path] | None = None) -> None:
        """A phase of ``size`` records begins (``paths``: where they will be, with a cache)."""
        with self._lock:
            self._size, self._paths, self._local, self._seen = int(size), list(paths or ()), 0, 0
        self.poll()

    def poll(self) -> None:
        """Count the current phase's records present in the cache and redraw."""
        if not self.enabled:
            return
        with self._lock:
            paths = self._paths
        if paths:
            seen = sum(1 for p in paths if p.exists())
            with self._lock:
                if paths is self._paths:
                    self._seen = seen
        self._show()

    def callback(self, channels: Sequence[int], *_ignored) -> None:
        """A render's ``callback``: ``channels`` finished here."""
        with self._lock:
            self._local += len(channels)
        self._show()

    def end_phase(self) -> None:
        """The current phase is complete."""
        with self._lock:
            self._base += self._size
            self._size, self._paths, self._local, self._seen = 0, [], 0, 0
        self._show()

    def add_steps(self, steps: int) -> None:
        """Channel-steps of records just judged (the postfix)."""
        self.steps += int(steps)
        self._show()

    def shrink(self, records: int) -> None:
        """``records`` fewer planned (the adaptive rule stopped their channels)."""
        if records and self.enabled:
            with self._lock:
                self.bar.total = max(0, int(self.bar.total) - int(records))
        self._show()

    def close(self) -> None:
        """Stop the background thread and close the bar."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._show()
        self.bar.close()

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
