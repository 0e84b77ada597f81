r"""Model randomisation as a control of the scan: does the trained network pass more channels
than untrained copies of itself?

A pass count is evidence about what a network *learned* only next to the same count on
networks that learned nothing (the model-randomisation check of Adebayo et al. 2018, "Sanity
Checks for Saliency Maps"). ``ScanConfig(controls=...)`` (``rsi scan --control``) runs the same
scan (same FZ settings, seeds, adaptive rule, zoom centre, cache) on copies of the network
re-initialised the way its constructor initialises it (:func:`rsi_plugin.core.randomize.randomized_copy`),
each from a recorded seed.

**Control specs** (:class:`ControlSpec`, :func:`parse_controls`):

* ``"random-init"`` / ``"random-init:K"``: ``K`` (default 1) copies of the whole network,
  re-initialised;
* ``"cascade:B"`` / ``"cascade:B:K"``: ``K`` copies randomised from the top of the network
  down to block ``B`` inclusive, everything below ``B`` kept trained (the cascading form).
  Blocks below ``B`` are not scanned in these copies (they are the trained blocks).

The copies are numbered in the order given, over all specs: copy ``k`` (from 0) is
initialised with seed ``control_seed + k`` (``control_seed`` 1000 by default) and named
``"<kind>@<seed>"`` (``"random-init@1000"``, ``"cascade:2.1@1002"``): the ``control`` column
of the control rows (:func:`plan_controls`).

**The comparison** (:func:`compare_to_controls`), per (source, transform, block), over the
controls that scanned the block. Each channel is counted once per model, with the same
per-channel indicator for the trained network and every copy: ``robust`` of
:func:`rsi_plugin.criteria.seeds.channel_table` (passes in every seed it was rendered in, or
the robust share). So FZ seeds never count as independent observations.

* Counts: ``trained`` (robust channels of the trained network) and ``trained_share``; per
  copy its robust count (``control_counts``, in the order of ``control_names``), their
  ``control_mean`` and ``control_max``.
* ``control_p``, a one-sided Fisher exact test (hypergeometric, computed exactly with
  :func:`math.comb`): are the trained network's robust channels more frequent than those
  of the ``K`` copies pooled? ``a`` robust of the trained network's ``n1`` determined
  channels against ``b`` of the copies' ``n2`` pooled determined channels;
  ``p = P(X >= a)`` for ``X ~ Hypergeometric(n1 + n2, a + b, n1)``. A channel counts as
  *determined* unless its ``status`` is ``"undetermined"`` (invalid FZs decide whether it
  is robust): such channels are left out of both sides, so a copy whose FZs fail more often
  does not look worse by that alone. The test treats channels as exchangeable units; it
  says whether the trained network passes more of its channels than the copies do, not
  which channels.
* ``control_rank_p = (1 + #{copies with a count >= trained}) / (K + 1)``: the model-level
  rank test, with the K copies as draws of "an untrained network". Its floor is
  ``1 / (K + 1)`` (0.33 with two copies, 0.048 needs K >= 20): with few copies it can never
  be small, which is why the verdict uses the channel-level test; it is reported so that
  the reader sees how many networks the comparison rests on.
* ``control_verdict``: ``"above the untrained network"`` only when the trained count
  exceeds *every* copy's count **and** ``control_p < alpha`` (0.05); ``"undetermined"``
  when no copy scanned the block or every channel of the trained network, or of all copies,
  is undetermined; otherwise ``"not above the untrained network"``. For cascade copies
  "untrained" means the blocks from ``B`` up.

Per channel (:func:`mark_control_channels`, added to ``scan_channels.csv``):
``controls_passing`` (copies in which the channel is robust) and ``passes_in_control``
(at least one), both empty (NA) for a block no copy scanned.

**Where the rows are.** :func:`rsi_plugin.criteria.channel_scan.scan` with controls returns
the trained network's rows as always; the copies' rows (a long table: ``control``,
``control_seed``, then the scan's columns) are :func:`rsi_plugin.criteria.channel_scan.scan_controls`'s
result, and a scan with controls also carries them in its ``attrs``
(:func:`control_rows` reads them back; they are kept there as CSV text, so that pandas
copies and compares the trained table's ``attrs`` cheaply and can write them to parquet).
``attrs["controls"]`` lists the copies (``name``, ``kind``, ``seed``, ``cascade_to``,
``weights``, ``init``). :func:`rsi_plugin.criteria.channel_scan.write_scan` writes the rows to
``scan_controls.csv`` and adds the comparison to ``summary.csv`` and the channel marks to
``scan_channels.csv``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from rsi_plugin.errors import ConfigError, RSIError
from rsi_plugin.core.choices import CONTROL_SEED as _CONTROL_SEED

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "CONTROL_KINDS",
    "CONTROL_SEED",
    "ALPHA",
    "ABOVE",
    "NOT_ABOVE",
    "UNDETERMINED",
    "COMPARISON_COLUMNS",
    "CHANNEL_COLUMNS",
    "ControlSpec",
    "Control",
    "parse_controls",
    "plan_controls",
    "fisher_greater",
    "rank_p",
    "compare_to_controls",
    "mark_control_channels",
    "control_rows",
    "attach_control_rows",
]

#: the kinds of control copies
CONTROL_KINDS: tuple[str, ...] = ("random-init", "cascade")
#: seed of the first control copy (copy ``k`` gets ``CONTROL_SEED + k``); defined in
#: :mod:`rsi_plugin.core.choices` so that the CLI reads it without importing this module
CONTROL_SEED: int = _CONTROL_SEED
#: level of the one-sided test in the verdict
ALPHA: float = 0.05
ABOVE = "above the untrained network"
NOT_ABOVE = "not above the untrained network"
UNDETERMINED = "undetermined"
#: the columns :func:`compare_to_controls` adds after the group keys (``summary.csv`` takes
#: those starting with ``control``)
COMPARISON_COLUMNS: tuple[str, ...] = (
    "channels", "trained", "trained_share", "determined", "controls", "control_names", "control_counts",
    "control_mean", "control_max", "control_determined", "control_passing", "control_p", "control_rank_p",
    "control_verdict")
#: the columns :func:`mark_control_channels` adds
CHANNEL_COLUMNS: tuple[str, ...] = ("controls_passing", "passes_in_control")

_VALID = ("random-init, random-init:K, cascade:BLOCK or cascade:BLOCK:K (K copies >= 1, BLOCK a block name "
          "such as 2.1)")
_SPEC = re.compile(r"^(?P<kind>random-init|cascade)(?::(?P<rest>.*))?$")
_ROWS_ATTR = "control_rows"


@dataclass(frozen=True)
class ControlSpec:
    r"""One control spec: ``copies`` untrained copies of one kind.

    Attributes:
        kind (str): ``"random-init"`` (the whole network) or ``"cascade"`` (from the top
            down to ``cascade_to``).
        copies (int): how many copies (>= 1), each with its own seed.
        cascade_to (str, optional): the lowest randomised block of a ``"cascade"``.
    """

    kind: str
    copies: int = 1
    cascade_to: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in CONTROL_KINDS:
            raise ConfigError(f"unknown control kind {self.kind!r}; valid: {_VALID}")
        if isinstance(self.copies, bool) or not isinstance(self.copies, (int, np.integer)) or self.copies < 1:
            raise ConfigError(f"a control needs copies >= 1, got {self.copies!r}; valid: {_VALID}")
        object.__setattr__(self, "copies", int(self.copies))
        if self.kind == "cascade":
            if not isinstance(self.cascade_to, str) or not self.cascade_to.strip():
                raise ConfigError(f"a cascade control needs a block (cascade:2.1), got {self.cascade_to!r}; "
                                  f"valid: {_VALID}")
        elif self.cascade_to is not None:
            raise ConfigError(f"random-init takes no block (got {self.cascade_to!r}); valid: {_VALID}")

    @classmethod
    def parse(cls, text: str | ControlSpec) -> ControlSpec:
        r"""A spec from its text: ``"random-init"``, ``"random-init:3"``, ``"cascade:2.1"``,
        ``"cascade:2.1:2"``.

        Raises:
            ConfigError: anything else (the message lists the valid forms).
        """
        if isinstance(text, ControlSpec):
            return text
        if not isinstance(text, str):
            raise ConfigError(f"a control spec must be a string, got {text!r}; valid: {_VALID}")
        match = _SPEC.match(text.strip())
        if not match:
            raise ConfigError(f"unknown control {text!r}; valid: {_VALID}")
        kind, rest = match.group("kind"), match.group("rest")
        if kind == "random-init":
            if rest is None:
                return cls(kind)
            if not re.fullmatch(r"\d+", rest):
                raise ConfigError(f"bad control {text!r}: K in random-init:K must be an integer >= 1; valid: {_VALID}")
            return cls(kind, int(rest))
        if not rest:
            raise ConfigError(f"bad control {text!r}: cascade needs a block, e.g. cascade:2.1; valid: {_VALID}")
        block, _, count = rest.partition(":")
        if not block or (count and not re.fullmatch(r"\d+", count)) or rest.endswith(":"):
            raise ConfigError(f"bad control {text!r}; valid: {_VALID}")
        return cls(kind, int(count) if count else 1, block)

    def __str__(self) -> str:
        base = self.kind if self.cascade_to is None else f"{self.kind}:{self.cascade_to}"
        return base if self.copies == 1 else f"{base}:{self.copies}"


@dataclass(frozen=True)
class Control:
    r"""One control copy of a scan.

    Attributes:
        name (str): ``"<kind>@<seed>"``, the ``control`` column of its rows.
        kind (str): ``"random-init"`` or ``"cascade:<block>"``.
        seed (int): seed of its initialisation.
        cascade_to (str, optional): the lowest randomised block of a cascade.
    """

    name: str
    kind: str
    seed: int
    cascade_to: str | None = None

    def build(self, model: nn.Module) -> nn.Module:
        """The copy: :func:`rsi_plugin.core.randomize.randomized_copy` of ``model``."""
        from rsi_plugin.core.randomize import randomized_copy

        return randomized_copy(model, self.seed, self.cascade_to)

    def as_dict(self) -> dict[str, Any]:
        """``name``, ``kind``, ``seed``, ``cascade_to`` (JSON-friendly)."""
        return {"name": self.name, "kind": self.kind, "seed": self.seed, "cascade_to": self.cascade_to}


def parse_controls(specs: str | ControlSpec | Iterable[str | ControlSpec] | None) -> tuple[ControlSpec, ...]:
    r"""Control specs from text (one string, or several).

    Args:
        specs: ``None`` / ``()`` (no control), ``"random-init:2"``, or a sequence of specs.

    Returns:
        tuple of :class:`ControlSpec`.

    Raises:
        ConfigError: a spec that is not one of the valid forms (listed in the message).
    """
    if specs is None:
        return ()
    if isinstance(specs, (str, ControlSpec)):
        specs = (specs,)
    if not isinstance(specs, Iterable):
        raise ConfigError(f"controls must be a spec or a sequence of specs, got {specs!r}; valid: {_VALID}")
    return tuple(ControlSpec.parse(s) for s in specs)


def plan_controls(specs: str | Iterable[str | ControlSpec] | None, seed: int = CONTROL_SEED) -> list[Control]:
    r"""The control copies of some specs, numbered over all of them: copy ``k`` gets seed
    ``seed + k``.

    Args:
        specs: as :func:`parse_controls`.
        seed (int): seed of the first copy (>= 0).

    Returns:
        list of :class:`Control`, in the order of the specs.

    Raises:
        ConfigError: a bad spec or seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"control seed must be an integer >= 0, got {seed!r}")
    out: list[Control] = []
    for spec in parse_controls(specs):
        kind = spec.kind if spec.cascade_to is None else f"cascade:{spec.cascade_to}"
        for _ in range(spec.copies):
            s = int(seed) + len(out)
            out.append(Control(f"{kind}@{s}", kind, s, spec.cascade_to))
    return out


def fisher_greater(a: int, n1: int, b: int, n2: int) -> float:
    r"""One-sided Fisher exact test: is ``a / n1`` larger than ``b / n2``?

    ``P(X >= a)`` for ``X ~ Hypergeometric(n1 + n2, a + b, n1)``: the chance that ``n1``
    channels drawn from the pooled ``n1 + n2`` hold ``a`` or more of the ``a + b`` passing
    ones. Exact (:func:`math.comb`).

    Args:
        a, n1 (int): passing and total units of the first group (``0 <= a <= n1``).
        b, n2 (int): the same of the second group.

    Returns:
        float in (0, 1]; 1 when nothing passes.

    Raises:
        RSIError: counts out of range.
    """
    a, n1, b, n2 = (int(v) for v in (a, n1, b, n2))
    if not (0 <= a <= n1 and 0 <= b <= n2):
        raise RSIError(f"fisher_greater needs 0 <= a <= n1 and 0 <= b <= n2, got a={a}, n1={n1}, b={b}, n2={n2}")
    k, n = a + b, n1 + n2
    total = math.comb(n, n1)
    tail = sum(math.comb(k, x) * math.comb(n - k, n1 - x) for x in range(a, min(k, n1) + 1))
    return min(1.0, tail / total)


def rank_p(trained: int, counts: Sequence[int]) -> float:
    r"""The model-level rank p-value ``(1 + #{c in counts: c >= trained}) / (K + 1)``
    (ties count against the trained network; floor ``1 / (K + 1)``). NaN without counts."""
    counts = list(counts)
    if not counts:
        return float("nan")
    return (1 + sum(int(c) >= int(trained) for c in counts)) / (len(counts) + 1)


def _keys(table: pd.DataFrame) -> list[str]:
    return [c for c in ("source", "transform") if c in table.columns] + ["block"]


def _key_tuple(row: pd.Series | dict, keys: list[str]) -> tuple:
    return tuple(str(row[k]) for k in keys)


def _control_channels(controls: pd.DataFrame, share: float) -> pd.DataFrame:
    """channel_table of every control, with its ``control`` column first."""
    from rsi_plugin.criteria.seeds import channel_table

    if "control" not in controls.columns:
        raise RSIError("the control rows have no 'control' column: pass scan_controls' result or control_rows(table)")
    parts = [channel_table(rows, share).assign(control=name)
             for name, rows in controls.groupby("control", sort=False)]
    if not parts:
        return pd.DataFrame(columns=["control", "block", "channel", "robust", "status"])
    return pd.concat(parts, ignore_index=True)


def compare_to_controls(trained: pd.DataFrame, controls: pd.DataFrame | None, share: float = 1.0,
                        alpha: float = ALPHA) -> pd.DataFrame:
    r"""Per block: the trained network's robust count against its untrained copies'.

    Args:
        trained (DataFrame): the trained network's scan rows (:func:`~rsi_plugin.criteria.channel_scan.scan`).
        controls (DataFrame or None): the copies' rows, with a ``control`` column
            (:func:`~rsi_plugin.criteria.channel_scan.scan_controls`, :func:`control_rows`);
            ``None`` or empty: no copy (every verdict ``"undetermined"``).
        share (float): the robust share (1: every seed).
        alpha (float): level of the one-sided test (0.05).

    The trained rows are restricted to the seeds the copies were rendered with (all of them
    unless ``ScanConfig.control_seeds`` rendered the copies with fewer), so that "robust" means
    the same on both sides.

    Returns:
        DataFrame, one row per (source, transform, block) of ``trained``: the group keys, then
        :data:`COMPARISON_COLUMNS`: ``channels``, ``trained`` (robust count), ``trained_share``,
        ``determined`` (channels whose status is not undetermined), ``controls`` (K, copies
        that scanned the block), ``control_names`` and ``control_counts`` (space-separated,
        in the same order), ``control_mean``, ``control_max``, ``control_determined`` and
        ``control_passing`` (pooled over the copies), ``control_p`` (one-sided Fisher exact),
        ``control_rank_p``, ``control_verdict`` (see the module docstring); then ``layer``, ``index``.

    Raises:
        RSIError: control rows without a ``control`` column; ``alpha`` not in (0, 1).
    """
    from rsi_plugin.criteria.seeds import block_parts, channel_table, check_share

    share = check_share(share)
    if not 0 < alpha < 1:
        raise RSIError(f"alpha must be in (0, 1), got {alpha!r}")
    if controls is not None and len(controls) and "seed" in controls.columns and "seed" in trained.columns:
        # both sides judged on the same seeds: copies rendered with fewer seeds
        # (ScanConfig.control_seeds) meet the trained model on those seeds only
        trained = trained[trained["seed"].isin(set(controls["seed"].astype(int)))]
    keys = _keys(trained)
    mine = channel_table(trained, share)
    theirs = _control_channels(controls, share) if controls is not None and len(controls) else None
    rows = []
    for group, part in mine.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        row: dict[str, Any] = dict(zip(keys, group))
        determined = part["status"] != "undetermined"
        a, n1 = int(part["robust"].sum()), int(determined.sum())
        names: list[str] = []
        counts: list[int] = []
        b = n2 = 0
        if theirs is not None:
            mask = np.ones(len(theirs), dtype=bool)
            for key, value in row.items():
                if key in theirs.columns:
                    mask &= (theirs[key].astype(str) == str(value)).to_numpy()
            for name, copy in theirs[mask].groupby("control", sort=False):
                names.append(str(name))
                counts.append(int(copy["robust"].sum()))
                b += int(copy["robust"].sum())
                n2 += int((copy["status"] != "undetermined").sum())
        if names and n1 and n2:
            p = fisher_greater(a, n1, b, n2)
            verdict = ABOVE if a > max(counts) and p < alpha else NOT_ABOVE
        else:
            p, verdict = float("nan"), UNDETERMINED
        row.update({
            "channels": len(part),
            "trained": a,
            "trained_share": a / len(part) if len(part) else float("nan"),
            "determined": n1,
            "controls": len(names),
            "control_names": " ".join(names),
            "control_counts": " ".join(map(str, counts)),
            "control_mean": float(np.mean(counts)) if counts else float("nan"),
            "control_max": max(counts) if counts else pd.NA,
            "control_determined": n2,
            "control_passing": b,
            "control_p": p,
            "control_rank_p": rank_p(a, counts),
            "control_verdict": verdict,
        })
        rows.append(row)
    out = pd.DataFrame(rows, columns=keys + list(COMPARISON_COLUMNS))
    out["control_max"] = pd.array(out["control_max"], dtype="Int64")
    layer, index = block_parts(out["block"])
    out["layer"] = pd.array(layer, dtype="Int64")
    out["index"] = pd.array(index, dtype="Int64")
    return out


def mark_control_channels(channels: pd.DataFrame, controls: pd.DataFrame | None, share: float = 1.0) -> pd.DataFrame:
    r"""The trained network's channel table with :data:`CHANNEL_COLUMNS` added at the end.

    Args:
        channels (DataFrame): :func:`rsi_plugin.criteria.seeds.channel_table` of the trained rows.
        controls (DataFrame or None): the copies' rows (with ``control``).
        share (float): the robust share.

    Returns:
        a copy of ``channels`` with ``controls_passing`` (Int64: copies that scanned the
        channel's block in which it is robust) and ``passes_in_control`` (boolean: at least
        one); NA where no copy scanned the block.
    """
    out = channels.copy()
    counts = pd.array([pd.NA] * len(out), dtype="Int64")
    if controls is not None and len(controls):
        theirs = _control_channels(controls, share)
        keys = [k for k in _keys(out) if k in theirs.columns]
        scanned = {_key_tuple(r, keys) for _, r in theirs[keys].drop_duplicates().iterrows()}
        robust = theirs[theirs["robust"].astype(bool)]
        passing: dict[tuple, int] = {}
        for key in (_key_tuple(r, keys + ["channel"]) for _, r in robust[keys + ["channel"]].iterrows()):
            passing[key] = passing.get(key, 0) + 1
        values = []
        for _, r in out[keys + ["channel"]].iterrows():
            values.append(passing.get(_key_tuple(r, keys + ["channel"]), 0)
                          if _key_tuple(r, keys) in scanned else pd.NA)
        counts = pd.array(values, dtype="Int64")
    out["controls_passing"] = counts
    out["passes_in_control"] = pd.array(counts > 0, dtype="boolean")
    return out


def attach_control_rows(table: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    r"""Keep the copies' rows in ``table.attrs`` (as CSV text; :func:`control_rows` reads them),
    with ``attrs["controls"]`` (the copies' descriptions) from ``rows.attrs``. Returns ``table``."""
    table.attrs[_ROWS_ATTR] = rows.to_csv(index=False)
    if "controls" in rows.attrs:
        table.attrs["controls"] = list(rows.attrs["controls"])
    return table


def control_rows(table: pd.DataFrame) -> pd.DataFrame | None:
    r"""The control copies' rows a scan with controls carries (``None`` when it has none).

    Args:
        table (DataFrame): what :func:`~rsi_plugin.criteria.channel_scan.scan` returned.

    Returns:
        DataFrame (``control``, ``control_seed``, then the scan's columns; block ids as str),
        or ``None``.
    """
    text = table.attrs.get(_ROWS_ATTR)
    if not text:
        return None
    rows = pd.read_csv(io.StringIO(text), dtype={"block": str, "control": str})
    if "controls" in table.attrs:
        rows.attrs["controls"] = list(table.attrs["controls"])
    return rows
