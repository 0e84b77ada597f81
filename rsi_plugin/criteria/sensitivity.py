r"""Sensitivity of a finished scan's verdicts to analysis choices that only change evaluation.

A scan (:func:`rsi_plugin.criteria.channel_scan.scan`) judges each channel on its cached
feature visualisations (FZs). Some of its choices change only how those FZs are *evaluated*,
not the FZs themselves; this module re-evaluates Eq. (1), Eq. (2) and the verdict on the
**same cached FZs** under each alternative and counts, per block, what flips. Nothing is
rendered: the FZs are read from the records the scan table names (``in_fz_path``,
``pre_fz_path``); a missing or damaged record is an error that says how many are missing and
that the scan must be rerun.

The alternatives (:data:`CHOICES`):

* ``"zoom_center"``: ``S`` zoomed about the other centre than the scan's
  (:attr:`~rsi_plugin.criteria.channel_scan.ScanConfig.zoom_center` ``"rf"``, the receptive-field
  centre of the block's centre neuron, vs ``"image"``, the image centre as the paper's ``S``).
  On even-sized maps the two differ (see :mod:`rsi_plugin.criteria.geometry`). Only Eq. (1)
  reads ``S``; Eq. (2) cannot flip. Applies to a ``"scale"`` transform only (skipped, with a
  warning, otherwise).
* ``"png"``: the 8-bit PNG the cache stores beside each record (``cNNNNN.png``, read back and
  divided by 255) instead of the record's float image.

Each alternative differs from the baseline in that one choice only: the baseline is the scan's
own evaluation, redone here by the code path the scan uses (the scan's ``_block_transform``,
:class:`~rsi_plugin.criteria.captum.ScaleInvariance` ``.evaluate`` with the scan's tolerance,
node variant and batch size, per (block, seed) on the channels the scan evaluated together,
then :func:`~rsi_plugin.criteria.equations.add_fz_verdict` with the records' FZ statuses). A
row whose re-evaluated verdict, Eq. (1) or Eq. (2) differs from the scan table's is marked
``reproduced = False`` and counted in the summary's ``not_reproduced`` (CPU results can differ
in the last bits between thread counts): flips are always counted against the re-evaluated
baseline, so that only the one choice differs. A channel whose In or Pre FZ is not ``"ok"``
stays ``"undetermined"`` under every alternative.

Why the records the table names and not :func:`rsi_plugin.featureviz.optimize.render`: the
cache key of a record includes torch's version and intra-op thread count, so ``render`` in a
process with another thread count would find no record and render every FZ again. The table
names exactly the records the scan judged; each is checked as ``render`` checks it
(:func:`rsi_plugin.featureviz.cache.read_record`: checksum, plausibility) and must belong to the
model given (its fingerprint), to the row's block, node, channel and (from the record folder's
``config.json``) seed.

Files (:func:`write_sensitivity`, atomically, in the scan folder): ``sensitivity.csv``
(:func:`choice_sensitivity`, one row per (block, channel, seed, choice)) and
``sensitivity_summary.csv`` (:func:`sensitivity_summary`, one row per (block, choice) and an
``"all"`` row per choice).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from rsi_plugin.core.blocks import ResidualBlock, get_block, residual_blocks, split_name
from rsi_plugin.core.evalmode import runs_in_eval_mode
from rsi_plugin.core.images import normalize
from rsi_plugin.core.runfolder import ScanFiles
from rsi_plugin.core.tensors import model_device
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.criteria.captum import ScaleInvariance
from rsi_plugin.criteria.channel_scan import ScanConfig, _block_transform
from rsi_plugin.criteria.equations import add_fz_verdict, node_sites
from rsi_plugin.core.choices import SENSITIVITY_CHOICES
from rsi_plugin.errors import ConfigError, DataError, InputTypeError, MissingFileError, UnknownNameError
from rsi_plugin.featureviz.cache import model_fingerprint, read_record

__all__ = ["CHOICES", "SENSITIVITY_COLUMNS", "SUMMARY_COLUMNS", "CachedFZs", "read_cached_fzs", "config_from_table",
           "choice_sensitivity", "sensitivity_summary", "write_sensitivity"]

logger = logging.getLogger(__name__)

#: the analysis choices :func:`choice_sensitivity` can switch
CHOICES: tuple[str, ...] = SENSITIVITY_CHOICES  # defined in rsi_plugin.core.choices (read by the CLI)
#: what each FZ-side alternative is called in the ``baseline`` / ``alternative`` columns
FLOAT_IMAGE = "float"
PNG_IMAGE = "png (8-bit)"
#: the per-evaluation values, each as ``<name>_base`` and ``<name>_alt``
VALUES: tuple[str, ...] = ("pre_in", "pre_scaled", "post_in", "post_pre", "eq1_margin", "eq2_margin", "eq1", "eq2",
                           "verdict")
#: columns of :func:`choice_sensitivity`, in order
SENSITIVITY_COLUMNS: tuple[str, ...] = (
    "block", "channel", "seed", "choice", "baseline", "alternative", "in_status", "pre_status",
    "scan_verdict", "reproduced",
    *(f"{v}_base" for v in VALUES), *(f"{v}_alt" for v in VALUES),
    "eq1_flipped", "eq2_flipped", "flipped", "flip",
)
#: columns of :func:`sensitivity_summary`, in order
SUMMARY_COLUMNS: tuple[str, ...] = ("block", "choice", "rows", "determined", "verdict_flips", "pass_to_fail",
                                    "fail_to_pass", "eq1_flips", "eq2_flips", "passing_base", "passing_alt",
                                    "not_reproduced")
#: the block id of the summary's total rows
ALL_BLOCKS = "all"
_ROLES: tuple[str, ...] = ("in", "pre")
_PATH_COLUMNS = {"in": "in_fz_path", "pre": "pre_fz_path"}
#: a record path ends in <fingerprint>/<block>/<node>/<config hash>/cNNNNN.png
_PATH_PARTS = 5


@dataclass(frozen=True)
class CachedFZs:
    r"""The cached FZs of one role (In or Pre) of one block, for the channels of one scan seed.

    Attributes:
        block (str): the block whose criteria read them, e.g. ``"2.1"``.
        role (str): ``"in"`` or ``"pre"``.
        seed (int): the FZ seed.
        channels (list of int): the channels, in the scan table's order.
        images (Tensor): ``[K, 3, H, W]`` float in [0, 1], the records' images (what the
            scan judged).
        png (Tensor): ``[K, 3, H, W]`` float, the 8-bit PNGs beside the records divided by 255.
        status (list of str): each FZ's status (``"ok"``, ``"dead"``, ``"flat"``, ``"unconverged"``).
        paths (list of Path): the ``.pt`` records.
    """

    block: str
    role: str
    seed: int
    channels: list[int]
    images: Tensor
    png: Tensor
    status: list[str]
    paths: list[Path]


def _bools(values: pd.Series) -> pd.Series:
    """A column of booleans, also when a CSV gave strings."""
    if values.dtype == bool:
        return values
    return values.map(lambda v: v if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() == "true").astype(bool)


def _fz_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The FZ rows of a scan table, checked for the columns this module reads."""
    if not isinstance(table, pd.DataFrame):
        raise InputTypeError("table must be a DataFrame (what rsi.scan returns, or scan.csv), "
                             f"got {type(table).__name__}")
    rows = table[table["source"].astype(str) == "fz"] if "source" in table.columns else table
    if rows.empty:
        raise DataError("the scan table has no feature-visualisation rows (source 'fz'); the sensitivity to "
                        "analysis choices re-evaluates cached FZs only")
    needed = ["block", "channel", "verdict", "eq1", "eq2", "zoom_center", *_PATH_COLUMNS.values()]
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise DataError(f"the scan table lacks column(s) {missing}; give the table rsi.scan returned or its scan.csv")
    rows = rows.copy()
    rows["block"] = rows["block"].astype(str)
    rows["channel"] = rows["channel"].astype(int)
    rows["seed"] = rows["seed"].astype(int) if "seed" in rows.columns else 0
    if rows.duplicated(["block", "seed", "channel"]).any():
        raise DataError("the scan table holds a (block, seed, channel) more than once")
    return rows


def _record_path(value: Any, cache_dir: str | os.PathLike | None) -> Path | None:
    """The ``.pt`` record of a PNG path in the table, re-rooted under ``cache_dir`` when given."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("", "None", "nan"):
        return None
    path = Path(str(value))
    if cache_dir is not None:
        if len(path.parts) < _PATH_PARTS:
            raise DataError(f"FZ path {value!r} is not a cache path (<fingerprint>/<block>/<node>/<hash>/cNNNNN.png)")
        path = Path(cache_dir).joinpath(*path.parts[-_PATH_PARTS:])
    return path.with_suffix(".pt")


def _read_png(path: Path) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as handle:
            array = np.asarray(handle.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"cannot read the FZ image {path}: {error}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def _record_seed(folder: Path, memo: dict[Path, int | None]) -> int | None:
    """The FZ seed of a record folder, from its ``config.json`` (``None`` when it has none)."""
    if folder not in memo:
        meta = folder / "config.json"
        seed = None
        if meta.is_file():
            try:
                value = json.loads(meta.read_text()).get("seed")
                seed = None if value is None else int(value)
            except (ValueError, AttributeError, TypeError):
                logger.warning("cannot read the seed from %s", meta)
        memo[folder] = seed
    return memo[folder]


def read_cached_fzs(model: nn.Module, table: pd.DataFrame, cache_dir: str | os.PathLike | None = None,
                    node_variant: str | None = None) -> dict[tuple[str, int], dict[str, CachedFZs]]:
    r"""The cached In and Pre FZs a scan judged, read from the records its table names; renders nothing.

    Args:
        model (nn.Module): the model the scan ran on (its fingerprint must be the records').
        table (DataFrame): the scan's rows (:func:`rsi_plugin.criteria.channel_scan.scan`, or
            ``scan.csv``); its FZ rows are used.
        cache_dir (path, optional): the FZ cache; the table's paths are re-rooted under it
            (for a moved run folder). ``None``: the paths as the table gives them.
        node_variant (str, optional): which nodes the criteria read
            (:func:`~rsi_plugin.criteria.equations.node_sites`); ``None``: the table's
            ``node_variant`` column, else ``"text"``.

    Returns:
        dict ``(block, seed) -> {"in": CachedFZs, "pre": CachedFZs}``, in the table's order,
        channels in the table's order within each.

    Raises:
        MissingFileError: the table names no FZ records (the scan ran without a cache), or
            records are missing or damaged (the message says how many; rerun the scan).
        ConfigError: the records belong to another model (fingerprint).
        DataError: a record that holds another block, node, channel or seed than its row.
    """
    module = unwrap(model, check=True)
    rows = _fz_rows(table)
    fingerprint = model_fingerprint(module)
    blocks = residual_blocks(module)
    no_path, foreign, unusable, checked = 0, set(), [], 0
    located: list[tuple[Any, str, int, int, str, Path]] = []
    for index, row in rows.iterrows():
        for role in _ROLES:
            path = _record_path(row[_PATH_COLUMNS[role]], cache_dir)
            if path is None:
                no_path += 1
                continue
            if len(path.parts) >= _PATH_PARTS and path.parts[-_PATH_PARTS] != fingerprint:
                foreign.add(path.parts[-_PATH_PARTS])
            located.append((index, row["block"], int(row["channel"]), int(row["seed"]), role, path))
    if no_path:
        raise MissingFileError(f"{no_path} of {2 * len(rows)} FZs in the scan table have no cached record (the scan "
                               "ran without a cache, cache_dir=None); the sensitivity re-evaluates cached FZs only: "
                               "rerun the scan with a cache")
    if foreign:
        raise ConfigError(f"the scan's FZs were rendered for a model with fingerprint {', '.join(sorted(foreign))}, "
                          f"but this model's is {fingerprint}: load the model (name, weights, seed) the scan used")
    records: dict[tuple[Any, str], dict[str, Any]] = {}
    seeds: dict[Path, int | None] = {}
    for index, block, channel, seed, role, path in located:
        checked += 1
        record = read_record(path, {"fingerprint": fingerprint})
        if record is None:
            unusable.append(path)
            continue
        variant = node_variant or (str(rows.at[index, "node_variant"]) if "node_variant" in rows.columns else "text")
        where, node = node_sites(module, get_block(blocks, block), variant)[role]
        held = (str(record.get("block")), str(record.get("node")), int(record.get("channel", -1)))
        if held != (where, node, channel):
            raise DataError(f"record {path} holds block {record.get('block')} node {record.get('node')} channel "
                            f"{record.get('channel')}, but the row is block {block} ({role}: {where} {node}) "
                            f"channel {channel}")
        stored = _record_seed(path.parent, seeds)
        if stored is not None and stored != seed:
            raise DataError(f"record {path} was rendered with seed {stored}, but its row is seed {seed}")
        records[(index, role)] = record
    if unusable:
        where = cache_dir if cache_dir is not None else unusable[0].parent
        raise MissingFileError(f"{len(unusable)} of {checked} FZ records the scan used are missing or damaged under "
                               f"{where} (first: {unusable[0]}); the sensitivity never renders FZs: rerun the scan "
                               "with the same settings (it renders only the missing ones), then this")
    groups: dict[tuple[str, int], dict[str, CachedFZs]] = {}
    for (block, seed), part in rows.groupby(["block", "seed"], sort=False):
        groups[(str(block), int(seed))] = {}
        for role in _ROLES:
            chosen = [records[(index, role)] for index in part.index]
            paths = [_record_path(v, cache_dir) for v in part[_PATH_COLUMNS[role]]]
            groups[(str(block), int(seed))][role] = CachedFZs(
                block=str(block), role=role, seed=int(seed), channels=[int(c) for c in part["channel"]],
                images=torch.stack([r["image"].float() for r in chosen]),
                png=torch.stack([_read_png(p.with_suffix(".png")) for p in paths]),
                status=[str(r.get("status", "unconverged")) for r in chosen], paths=paths)
    return groups


def _single(rows: pd.DataFrame, column: str) -> Any:
    values = rows[column].dropna().unique() if column in rows.columns else []
    if len(values) > 1:
        raise DataError(f"the scan table's FZ rows hold several {column} values {sorted(map(str, values))}; "
                        "give the rows of one scan setting")
    return values[0] if len(values) else None


def config_from_table(table: pd.DataFrame, batch_size: int | None = 64) -> ScanConfig:
    r"""The evaluation settings of a scan, read back from its table: ``transform``,
    ``tolerance``, ``node_variant`` and ``zoom_center`` (``"image"`` where the table's
    ``zoom_center`` is ``"image"``, else ``"rf"``); the FZ settings are not needed (the FZs
    are read from the cache).

    Args:
        table (DataFrame): the scan's rows (``scan.csv``).
        batch_size (int, optional): images per forward pass (``rsi scan`` / ``rsi demo``: 64).

    Returns:
        ScanConfig.

    Raises:
        DataError: the FZ rows mix settings; a transform that is not a name.
    """
    rows = _fz_rows(table)
    transform = _single(rows, "transform")
    tolerance = _single(rows, "tolerance")
    variant = _single(rows, "node_variant")
    zooms = rows["zoom_center"].astype(str)
    kinds = set(zooms == "image")
    if len(kinds) > 1 and str(transform or "scale").partition(":")[0] == "scale":
        raise DataError("the scan table's FZ rows mix S about the image centre and about the receptive-field centre")
    settings: dict[str, Any] = {"batch_size": batch_size,
                                "zoom_center": "image" if kinds == {True} else "rf"}
    if transform is not None:
        settings["transform"] = str(transform)
    if tolerance is not None:
        settings["tolerance"] = float(tolerance)
    if variant is not None:
        settings["node_variant"] = str(variant)
    try:
        return ScanConfig(**settings)
    except (UnknownNameError, ConfigError) as error:
        raise DataError(f"the scan table's settings cannot be evaluated again ({error}); a scan with a "
                        "transform function instead of a name needs choice_sensitivity(config=...)") from None


def _check_config(rows: pd.DataFrame, config: ScanConfig) -> None:
    """The table was scanned with ``config``'s evaluation settings."""
    from rsi_plugin.core.transforms import transform_name

    recorded = {"tolerance": _single(rows, "tolerance"), "node_variant": _single(rows, "node_variant"),
                "transform": _single(rows, "transform")}
    given = {"tolerance": config.tolerance, "node_variant": config.node_variant,
             "transform": transform_name(config.transform)}
    for name, value in recorded.items():
        if value is None:
            continue
        same = math.isclose(float(value), float(given[name])) if name == "tolerance" else str(value) == str(given[name])
        if not same:
            raise ConfigError(f"the scan table was evaluated with {name} {value!r} but the config has "
                              f"{given[name]!r}; pass the scan's config (or config_from_table(table))")


def _evaluate(module: nn.Module, block: ResidualBlock, fzs: Mapping[str, CachedFZs], images: str,
              config: ScanConfig, transforms: dict[tuple[str, str], tuple[Any, str]]) -> tuple[pd.DataFrame, str]:
    """The scan's FZ evaluation (as ``channel_scan._fz_table``) of one (block, seed) on the
    float or PNG images; the criteria table with the verdict, and how ``S`` was recorded."""
    key = (block.name, config.zoom_center)
    if key not in transforms:
        transforms[key] = _block_transform(module, block, config)
    transform, zoom = transforms[key]
    device = model_device(module)
    x_in = normalize(getattr(fzs["in"], images).to(device), module)
    x_pre = normalize(getattr(fzs["pre"], images).to(device), module)
    si = ScaleInvariance(module, block, node_variant=config.node_variant)
    result = si.evaluate((x_in, x_pre), channels=fzs["in"].channels, transform=transform,
                         tolerance=config.tolerance, batch_size=config.batch_size)
    table = add_fz_verdict(result.table(), fzs["in"].status, fzs["pre"].status)
    return table, zoom


def _describe_zoom(zoom: str) -> str:
    return "image" if zoom == "image" else f"rf ({zoom})"


def _check_choices(choices: Iterable[str]) -> tuple[str, ...]:
    if isinstance(choices, str):
        choices = (choices,)
    chosen = tuple(dict.fromkeys(str(c) for c in choices))
    unknown = [c for c in chosen if c not in CHOICES]
    if unknown or not chosen:
        raise UnknownNameError(f"unknown analysis choice(s) {unknown or list(chosen)}; valid: {', '.join(CHOICES)}")
    return chosen


@runs_in_eval_mode
def choice_sensitivity(model: nn.Module, table: pd.DataFrame, config: ScanConfig | None = None,
                       choices: Sequence[str] = CHOICES, cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    r"""Re-evaluate a finished scan's criteria on its cached FZs under each analysis choice.

    Args:
        model (nn.Module): the model the scan ran on (eval mode is used; the caller's mode
            is restored).
        table (DataFrame): what :func:`~rsi_plugin.criteria.channel_scan.scan` returned, or its
            ``scan.csv`` (:func:`~rsi_plugin.criteria.channel_scan.read_table`); FZ rows only
            are used (natural-image rows are skipped).
        config (ScanConfig, optional): the scan's config (its ``transform``, ``tolerance``,
            ``node_variant``, ``zoom_center`` and ``batch_size`` are used; the table must
            agree). ``None``: :func:`config_from_table`.
        choices (sequence of str): of :data:`CHOICES`: ``"zoom_center"`` (``S`` about the
            other centre), ``"png"`` (the 8-bit PNGs instead of the float images).
        cache_dir (path, optional): the FZ cache the table's paths are re-rooted under;
            ``None``: the paths as the table gives them (``config.cache_dir`` when set).

    Returns:
        DataFrame with :data:`SENSITIVITY_COLUMNS`, one row per (block, channel, seed,
        choice): ``baseline`` / ``alternative`` (what the choice is in each: ``"rf (y,x)"`` or
        ``"image"``; ``"float"`` or ``"png (8-bit)"``), ``in_status``, ``pre_status`` (the
        records'), ``scan_verdict`` (the table's), ``reproduced`` (the re-evaluated baseline's
        verdict, Eq. 1 and Eq. 2 equal the table's), ``<value>_base`` and ``<value>_alt`` for
        ``pre_in, pre_scaled, post_in, post_pre, eq1_margin, eq2_margin, eq1, eq2, verdict``,
        ``eq1_flipped``, ``eq2_flipped``, ``flipped`` (the verdict) and ``flip``
        (``"pass->fail"``, ``"fail->pass"`` or ``""``). ``attrs`` holds ``choices`` and
        ``skipped`` (choices that do not apply, with the reason).

    Raises:
        MissingFileError: FZ records missing (rerun the scan; nothing is rendered here).
        ConfigError: the config disagrees with the table, or the model is not the scan's.
        UnknownNameError: an unknown choice.
    """
    chosen = _check_choices(choices)
    module = unwrap(model, check=True)
    rows = _fz_rows(table)
    config = (config or config_from_table(rows)).resolved()
    _check_config(rows, config)
    if cache_dir is None and config.cache_dir is not None:
        cache_dir = config.cache_dir
    groups = read_cached_fzs(module, rows, cache_dir, node_variant=config.node_variant)
    family = config.transform.partition(":")[0] if isinstance(config.transform, str) else ""
    skipped: dict[str, str] = {}
    if "zoom_center" in chosen and family != "scale":
        skipped["zoom_center"] = f"the transform {config.transform!r} is not S (scale): it has no zoom centre"
        logger.warning("analysis choice zoom_center skipped: %s", skipped["zoom_center"])
    other_zoom = {"rf": "image", "image": "rf"}[config.zoom_center]
    blocks = residual_blocks(module)
    transforms: dict[tuple[str, str], tuple[Any, str]] = {}
    parts: list[pd.DataFrame] = []
    for (name, seed), fzs in groups.items():
        block = get_block(blocks, name)
        side = int(fzs["in"].images.shape[-1])
        # the side the scan's S (and receptive-field centre) used: its FZs' (render resolves
        # image_size=None to the model's input size, which the FZs then have)
        base_config = dataclasses.replace(config, featureviz=dataclasses.replace(config.featureviz, image_size=side))
        part = rows[(rows["block"] == name) & (rows["seed"] == seed)]
        base, zoom = _evaluate(module, block, fzs, "images", base_config, transforms)
        recorded = set(part["zoom_center"].astype(str))
        if (zoom == "image") != (recorded == {"image"}):
            raise ConfigError(f"block {name}: the scan zoomed S about {sorted(recorded)}, the config about "
                              f"{_describe_zoom(zoom)}; pass the scan's zoom_center")
        if recorded != {zoom}:
            logger.warning("block %s seed %d: the receptive-field centre is %s here, the scan recorded %s",
                           name, seed, zoom, ", ".join(sorted(recorded)))
        alternatives = []
        if "zoom_center" in chosen and "zoom_center" not in skipped:
            alt_config = dataclasses.replace(base_config, zoom_center=other_zoom)
            alt, alt_zoom = _evaluate(module, block, fzs, "images", alt_config, transforms)
            alternatives.append(("zoom_center", _describe_zoom(zoom), _describe_zoom(alt_zoom), alt))
        if "png" in chosen:
            alt, _ = _evaluate(module, block, fzs, "png", base_config, transforms)
            alternatives.append(("png", FLOAT_IMAGE, PNG_IMAGE, alt))
        for choice, described_base, described_alt, alt in alternatives:
            parts.append(_rows(part, base, alt, choice, described_base, described_alt, fzs))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(SENSITIVITY_COLUMNS))
    frame.attrs.update({"choices": [c for c in chosen if c not in skipped], "skipped": skipped})
    not_reproduced = int((~frame["reproduced"].astype(bool)).sum()) if len(frame) else 0
    if not_reproduced:
        logger.warning("%d row(s): the re-evaluated baseline differs from the scan table's verdict or criteria "
                       "(see the reproduced column); flips are counted against the re-evaluation", not_reproduced)
    return frame


def _rows(part: pd.DataFrame, base: pd.DataFrame, alt: pd.DataFrame, choice: str, described_base: str,
          described_alt: str, fzs: Mapping[str, CachedFZs]) -> pd.DataFrame:
    n = len(part)
    scan_verdict = part["verdict"].astype(str).to_numpy()
    frame = pd.DataFrame({
        "block": part["block"].to_numpy(), "channel": part["channel"].to_numpy(), "seed": part["seed"].to_numpy(),
        "choice": [choice] * n, "baseline": [described_base] * n, "alternative": [described_alt] * n,
        "in_status": fzs["in"].status, "pre_status": fzs["pre"].status, "scan_verdict": scan_verdict,
    })
    frame["reproduced"] = ((base["verdict"].to_numpy() == scan_verdict)
                           & (base["eq1"].to_numpy(dtype=bool) == _bools(part["eq1"]).to_numpy())
                           & (base["eq2"].to_numpy(dtype=bool) == _bools(part["eq2"]).to_numpy()))
    for suffix, source in (("base", base), ("alt", alt)):
        for value in VALUES:
            frame[f"{value}_{suffix}"] = source[value].to_numpy()
    frame["eq1_flipped"] = frame["eq1_base"].astype(bool) != frame["eq1_alt"].astype(bool)
    frame["eq2_flipped"] = frame["eq2_base"].astype(bool) != frame["eq2_alt"].astype(bool)
    frame["flipped"] = frame["verdict_base"] != frame["verdict_alt"]
    frame["flip"] = [f"{b}->{a}" if b != a else "" for b, a in zip(frame["verdict_base"], frame["verdict_alt"])]
    return frame[list(SENSITIVITY_COLUMNS)]


def sensitivity_summary(frame: pd.DataFrame) -> pd.DataFrame:
    r"""Per (block, choice): how many verdicts and Eq. (1) / Eq. (2) outcomes an analysis choice flips.

    Args:
        frame (DataFrame): :func:`choice_sensitivity`'s rows (or ``sensitivity.csv``).

    Returns:
        DataFrame with :data:`SUMMARY_COLUMNS`, one row per (block, choice) in the frame's
        order, then one ``block == "all"`` row per choice: ``rows`` (channels x seeds),
        ``determined`` (rows whose baseline verdict is not ``"undetermined"``),
        ``verdict_flips`` (rows whose verdict differs), ``pass_to_fail``, ``fail_to_pass``,
        ``eq1_flips`` / ``eq2_flips`` (determined rows whose Eq. (1) / Eq. (2) outcome
        differs: an undetermined row's criteria are read on an FZ that is not valid),
        ``passing_base``, ``passing_alt`` (rows that pass), ``not_reproduced`` (rows whose
        re-evaluated baseline differs from the scan table).

    Raises:
        DataError: columns missing.
    """
    needed = ["block", "choice", "verdict_base", "verdict_alt", "eq1_base", "eq1_alt", "eq2_base", "eq2_alt",
              "reproduced"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"the sensitivity rows lack column(s) {missing}; give what choice_sensitivity returned")

    def counts(block: str, choice: str, part: pd.DataFrame) -> dict[str, Any]:
        base, alt = part["verdict_base"].astype(str), part["verdict_alt"].astype(str)
        determined = base != "undetermined"
        return {"block": block, "choice": choice, "rows": len(part), "determined": int(determined.sum()),
                "verdict_flips": int((base != alt).sum()),
                "pass_to_fail": int(((base == "pass") & (alt == "fail")).sum()),
                "fail_to_pass": int(((base == "fail") & (alt == "pass")).sum()),
                "eq1_flips": int((determined & (_bools(part["eq1_base"]) != _bools(part["eq1_alt"]))).sum()),
                "eq2_flips": int((determined & (_bools(part["eq2_base"]) != _bools(part["eq2_alt"]))).sum()),
                "passing_base": int((base == "pass").sum()), "passing_alt": int((alt == "pass").sum()),
                "not_reproduced": int((~_bools(part["reproduced"])).sum())}

    data = frame.assign(block=frame["block"].astype(str), choice=frame["choice"].astype(str))
    out = [counts(block, choice, part) for (block, choice), part in data.groupby(["block", "choice"], sort=False)]
    out += [counts(ALL_BLOCKS, choice, part) for choice, part in data.groupby("choice", sort=False)]
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def write_sensitivity(model: nn.Module, table: pd.DataFrame, config: ScanConfig | None, out_dir: str | os.PathLike,
                      choices: Sequence[str] = CHOICES, cache_dir: str | os.PathLike | None = None,
                      existing: str = "merge") -> list[Path]:
    r""":func:`choice_sensitivity` and :func:`sensitivity_summary`, written atomically as
    ``sensitivity.csv`` and ``sensitivity_summary.csv`` in a scan folder.

    **A folder that already holds** ``sensitivity.csv`` (``existing="merge"``, the default, as
    :func:`~rsi_plugin.criteria.channel_scan.write_scan` merges ``scan.csv``): the rows of the
    blocks in ``table`` replace that file's rows of those blocks and its other blocks' rows are
    kept, in block order; the summary is recomputed from the merged rows. So a second
    ``rsi demo`` into one folder with other blocks keeps the sensitivity of the first. ``existing="replace"``: the files hold ``table``'s blocks alone.

    Args:
        model (nn.Module): the scanned model.
        table (DataFrame): the scan's rows.
        config (ScanConfig, optional): the scan's config (``None``: :func:`config_from_table`).
        out_dir (path): the scan folder (created); e.g. ``RunLayout(run).scan.dir``.
        choices (sequence of str): of :data:`CHOICES`.
        cache_dir (path, optional): the FZ cache (see :func:`choice_sensitivity`).
        existing (str): ``"merge"`` (default) or ``"replace"``.

    Returns:
        list of the two paths written.

    Raises:
        ConfigError: ``existing`` is neither.
    """
    from rsi_plugin.core.atomic import atomic_write_csv

    if existing not in ("merge", "replace"):
        raise ConfigError(f"existing must be 'merge' or 'replace', got {existing!r}")
    frame = choice_sensitivity(model, table, config, choices, cache_dir)
    files = ScanFiles(Path(out_dir))
    files.dir.mkdir(parents=True, exist_ok=True)
    if existing == "merge" and files.sensitivity.is_file():
        frame = _merged_by_block(pd.read_csv(files.sensitivity, dtype={"block": str}), frame)
    return [atomic_write_csv(files.sensitivity, frame),
            atomic_write_csv(files.sensitivity_summary, sensitivity_summary(frame))]


def _merged_by_block(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old``'s rows of the blocks ``new`` lacks, and ``new``'s, in block order (stage, then
    index, as ``scan.csv``; stable, so a block's own row order stays)."""
    fresh = set(new["block"].astype(str))
    kept = old[~old["block"].astype(str).isin(fresh)]
    if kept.empty:
        return new
    merged = pd.concat([kept, new.assign(block=new["block"].astype(str))], ignore_index=True)
    keys = [(0, *split_name(b)) if split_name(b) else (1, 0, 0) for b in merged["block"]]  # other names last
    merged = merged.iloc[sorted(range(len(merged)), key=keys.__getitem__)].reset_index(drop=True)  # stable
    merged.attrs = dict(new.attrs)
    return merged
