r"""The paper's scale-invariance criteria (§3) as pure functions of the activations.

For channel ``c`` of a residual block, with ``x_in[c]`` an image that drives In's centre
neuron (its feature visualisation, FZ) and ``x_pre[c]`` one that drives Pre's, and every
activation read at the centre neuron ``(H // 2, W // 2)``:

* Eq. (1): ``ReLU(Pre_c(x_in[c])) < Pre_c(S(x_in[c]))`` — zooming In's preferred image
  raises Pre into the positive domain;
* Eq. (2): ``1/t < Post_c(x_in[c]) / Post_c(x_pre[c]) < t`` with ``t = 3/2`` in the paper
  (``tolerance``) — Post answers alike to both summands' images. A denominator
  ``Post_c(x_pre[c]) <= 0`` fails Eq. (2) (the ratio is recorded as NaN and the reason as
  ``"zero denominator"`` / ``"negative denominator"``): such a channel does not respond to
  Pre's image at all, so it cannot be invariant to it. A zero numerator gives a ratio of 0,
  which fails too.

A channel *passes* when both hold. The functions here take tensors and return tensors
(:func:`node_sites` says which node of which block each activation is read at); they run no
model. :class:`rsi_plugin.criteria.captum.ScaleInvariance` runs the model (through
:func:`rsi_plugin.capture`) to get the activations and applies them.

Node variants: ``"text"`` (default) reads the nodes as the paper's text defines them (Post
is ``relu(In + Pre)``, the block output). ``"code"`` follows the paper's code, which reads
Post at the pre-ReLU sum and, in a block without a downsample, In at the previous block's
pre-ReLU sum (see :func:`node_sites`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from rsi_plugin.core.blocks import ResidualBlock, get_block, residual_blocks
from rsi_plugin.errors import InputTypeError, RSIError, ShapeError
from rsi_plugin.paper import TOLERANCE as PAPER_TOLERANCE
from rsi_plugin.paper import VARIANTS, Variant, check_variant

__all__ = [
    "TOLERANCE",
    "NODE_VARIANTS",
    "Criteria",
    "check_tolerance",
    "eq1",
    "eq1_margin",
    "post_ratio",
    "eq2",
    "eq2_margin",
    "eq2_status",
    "invariance_criteria",
    "node_sites",
    "summarize",
    "TABLE_COLUMNS",
    "VERDICTS",
    "fz_verdict",
    "add_fz_verdict",
]

logger = logging.getLogger(__name__)

#: the paper's tolerance of Eq. (2): 2/3 < ratio < 3/2 (:data:`rsi_plugin.paper.TOLERANCE`)
TOLERANCE: float = PAPER_TOLERANCE
NODE_VARIANTS: tuple[str, ...] = VARIANTS
NodeVariant = Variant

#: columns of :meth:`rsi_plugin.criteria.captum.CriteriaResult.table`, in order
TABLE_COLUMNS: tuple[str, ...] = (
    "block", "channel", "pre_in", "pre_scaled", "post_in", "post_pre", "ratio", "eq1", "eq2", "passes",
    "in_in", "pre_pre", "eq1_margin", "log_ratio", "eq2_margin", "eq2_status",
    "transform", "tolerance", "node_variant", "images_per_channel",
)


def check_tolerance(tolerance: float) -> float:
    """Validate the tolerance ``t`` of Eq. (2) (the bounds are ``1/t`` and ``t``).

    Raises:
        ValueError: unless ``t`` is a finite number > 1.
    """
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        raise InputTypeError(f"tolerance must be a number > 1 (the paper's is 1.5), got {tolerance!r}") from None
    if not math.isfinite(value) or value <= 1.0:
        raise RSIError(f"tolerance must be a finite number > 1 (Eq. (2) checks 1/t < ratio < t; "
                         f"the paper's is 1.5), got {tolerance!r}")
    return value


def _same_shape(*tensors: Tensor) -> None:
    for t in tensors:
        if not isinstance(t, Tensor):
            raise InputTypeError(f"expected tensors, got {type(t).__name__}")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ShapeError(f"activations must have the same shape, got {sorted(shapes)}")


def eq1_margin(pre_in: Tensor, pre_scaled: Tensor) -> Tensor:
    r"""Margin of Eq. (1): ``Pre_c(S(x_in[c])) - ReLU(Pre_c(x_in[c]))``; Eq. (1) holds
    when it is > 0.

    Args:
        pre_in (Tensor): ``Pre_c(x_in[c])``, any shape (one value per channel).
        pre_scaled (Tensor): ``Pre_c(S(x_in[c]))``, the same shape.

    Returns:
        Tensor of the same shape.
    """
    _same_shape(pre_in, pre_scaled)
    return pre_scaled - torch.relu(pre_in)


def eq1(pre_in: Tensor, pre_scaled: Tensor) -> Tensor:
    r"""Eq. (1): ``ReLU(Pre_c(x_in[c])) < Pre_c(S(x_in[c]))``.

    A negative ``pre_in`` counts as 0, so Eq. (1) then asks only that the scaled image
    drives Pre above 0.

    Args:
        pre_in (Tensor): ``Pre_c(x_in[c])``, any shape.
        pre_scaled (Tensor): ``Pre_c(S(x_in[c]))``, the same shape.

    Returns:
        bool Tensor of the same shape.
    """
    return eq1_margin(pre_in, pre_scaled) > 0


def post_ratio(post_in: Tensor, post_pre: Tensor) -> Tensor:
    r"""The ratio of Eq. (2), ``Post_c(x_in[c]) / Post_c(x_pre[c])``, NaN where the
    denominator is zero or negative.

    Args:
        post_in (Tensor): ``Post_c(x_in[c])``, any shape.
        post_pre (Tensor): ``Post_c(x_pre[c])``, the same shape.

    Returns:
        float Tensor of the same shape.
    """
    _same_shape(post_in, post_pre)
    positive = post_pre > 0
    safe = torch.where(positive, post_pre, torch.ones_like(post_pre))
    return torch.where(positive, post_in / safe, torch.full_like(post_in, float("nan")))


def eq2(post_in: Tensor, post_pre: Tensor, tolerance: float = TOLERANCE) -> Tensor:
    r"""Eq. (2): ``1/t < Post_c(x_in[c]) / Post_c(x_pre[c]) < t`` (``t = 3/2`` in the paper).

    A zero or negative denominator fails (see the module notes); so does a zero or
    negative numerator.

    Args:
        post_in (Tensor): ``Post_c(x_in[c])``, any shape.
        post_pre (Tensor): ``Post_c(x_pre[c])``, the same shape.
        tolerance (float): ``t`` > 1.

    Returns:
        bool Tensor of the same shape.
    """
    t = check_tolerance(tolerance)
    ratio = post_ratio(post_in, post_pre)
    return (ratio > 1.0 / t) & (ratio < t)  # NaN compares False


def eq2_margin(post_in: Tensor, post_pre: Tensor, tolerance: float = TOLERANCE) -> Tensor:
    r"""A continuous margin of Eq. (2): ``log(t) - |log(ratio)|``, > 0 exactly when Eq. (2)
    holds; ``-inf`` where the ratio is not positive (zero or negative numerator or
    denominator).

    Args:
        post_in (Tensor): ``Post_c(x_in[c])``, any shape.
        post_pre (Tensor): ``Post_c(x_pre[c])``, the same shape.
        tolerance (float): ``t`` > 1.

    Returns:
        float Tensor of the same shape.
    """
    t = check_tolerance(tolerance)
    ratio = post_ratio(post_in, post_pre)
    valid = ratio > 0
    log_ratio = torch.log(torch.where(valid, ratio, torch.ones_like(ratio))).abs()
    return torch.where(valid, math.log(t) - log_ratio, torch.full_like(ratio, float("-inf")))


def eq2_status(post_in: Tensor, post_pre: Tensor, tolerance: float = TOLERANCE) -> list[str]:
    r"""Why Eq. (2) holds or fails, one word per element (flattened): ``"ok"``,
    ``"low"`` (ratio <= 1/t), ``"high"`` (ratio >= t), ``"zero denominator"``,
    ``"negative denominator"`` or ``"nan"`` (an activation is NaN).

    Args:
        post_in, post_pre (Tensor): as in :func:`eq2`.
        tolerance (float): ``t`` > 1.

    Returns:
        list of str, one per element in ``post_in.flatten()`` order.
    """
    t = check_tolerance(tolerance)
    ratio = post_ratio(post_in, post_pre).flatten().tolist()
    den = post_pre.flatten().tolist()
    num = post_in.flatten().tolist()
    out = []
    for n, d, r in zip(num, den, ratio):
        if math.isnan(n) or math.isnan(d):
            out.append("nan")
        elif d == 0:
            out.append("zero denominator")
        elif d < 0:
            out.append("negative denominator")
        elif r <= 1.0 / t:
            out.append("low")
        elif r >= t:
            out.append("high")
        else:
            out.append("ok")
    return out


@dataclass(frozen=True)
class Criteria:
    """Both criteria of §3 for a set of channels (all tensors share one shape).

    Attributes:
        eq1 (Tensor): bool, Eq. (1) holds.
        eq2 (Tensor): bool, Eq. (2) holds.
        passes (Tensor): bool, both hold.
        ratio (Tensor): ``Post_c(x_in[c]) / Post_c(x_pre[c])``, NaN for a denominator <= 0.
        eq1_margin (Tensor): ``Pre_c(S(x_in[c])) - ReLU(Pre_c(x_in[c]))``.
        eq2_margin (Tensor): ``log(t) - |log ratio|`` (``-inf`` for a ratio <= 0 or NaN).
        log_ratio (Tensor): ``|log ratio|`` (0: Post answers equally to both images;
            ``inf`` where the ratio is not positive).
    """

    eq1: Tensor
    eq2: Tensor
    passes: Tensor
    ratio: Tensor
    eq1_margin: Tensor
    eq2_margin: Tensor
    log_ratio: Tensor


def invariance_criteria(pre_in: Tensor, pre_scaled: Tensor, post_in: Tensor, post_pre: Tensor,
                        tolerance: float = TOLERANCE) -> Criteria:
    r"""Eq. (1) and Eq. (2) from the four centre-neuron activations.

    Args:
        pre_in (Tensor): ``Pre_c(x_in[c])``, shape ``[K]`` (any shape, shared by all four).
        pre_scaled (Tensor): ``Pre_c(S(x_in[c]))``.
        post_in (Tensor): ``Post_c(x_in[c])``.
        post_pre (Tensor): ``Post_c(x_pre[c])``.
        tolerance (float): ``t`` of Eq. (2), > 1 (the paper's 1.5).

    Returns:
        :class:`Criteria`.
    """
    _same_shape(pre_in, pre_scaled, post_in, post_pre)
    t = check_tolerance(tolerance)
    margin1 = eq1_margin(pre_in, pre_scaled)
    ratio = post_ratio(post_in, post_pre)
    margin2 = eq2_margin(post_in, post_pre, t)
    first, second = margin1 > 0, eq2(post_in, post_pre, t)
    positive = ratio > 0
    log_ratio = torch.where(positive, torch.log(torch.where(positive, ratio, torch.ones_like(ratio))).abs(),
                            torch.full_like(ratio, float("inf")))
    return Criteria(eq1=first, eq2=second, passes=first & second, ratio=ratio,
                    eq1_margin=margin1, eq2_margin=margin2, log_ratio=log_ratio)


def _check_variant(node_variant: str) -> str:
    return check_variant(node_variant, "node_variant")


def node_sites(model: nn.Module, block: str | ResidualBlock,
               node_variant: NodeVariant = "text") -> dict[str, tuple[str, str]]:
    r"""Where the criteria read In, Pre and Post of a block, as ``(block_name, node)``.

    ``"text"``: ``in`` → ``(block, "in")``, ``pre`` → ``(block, "pre")``, ``post`` →
    ``(block, "post")``. ``"code"`` (the paper's code): ``post`` → ``(block, "sum")``, and
    for a block without a downsample that follows another block, ``in`` → ``(previous
    block, "sum")`` (its input before the previous block's final ReLU); a block with a
    downsample, or the first block, keeps ``(block, "in")``.

    Args:
        model (nn.Module): the model.
        block (str or ResidualBlock): the block, e.g. ``"2.1"``.
        node_variant (str): ``"text"`` or ``"code"``.

    Returns:
        dict with keys ``"in"``, ``"pre"``, ``"post"``.
    """
    _check_variant(node_variant)
    blocks = residual_blocks(model)
    target = get_block(blocks, block)
    sites = {"in": (target.name, "in"), "pre": (target.name, "pre"), "post": (target.name, "post")}
    if node_variant == "code":
        sites["post"] = (target.name, "sum")
        if target.downsample_path is None and target.index > 0:
            sites["in"] = (blocks[target.index - 1].name, "sum")
    return sites


#: a channel's verdict: both criteria hold on valid FZs, one fails on valid FZs, or an FZ
#: it was judged on is not ``"ok"`` (see :func:`rsi_plugin.featureviz.optimize.fz_status`)
VERDICTS: tuple[str, ...] = ("pass", "fail", "undetermined")


def fz_verdict(passes: bool, in_status: str, pre_status: str) -> str:
    """``"undetermined"`` unless both In's and Pre's FZ are ``"ok"``; else ``"pass"`` or
    ``"fail"`` as ``passes`` says. An undetermined channel never counts as passing."""
    if in_status != "ok" or pre_status != "ok":
        return "undetermined"
    return "pass" if bool(passes) else "fail"


def add_fz_verdict(table: pd.DataFrame, in_status: Sequence[str], pre_status: Sequence[str],
                   post_status: Sequence[str] | None = None) -> pd.DataFrame:
    r"""Add the FZ statuses and the verdict to a criteria table (in place, and returned).

    Columns ``in_status``, ``pre_status`` (the FZs the criteria used), ``post_status``
    (Post's FZ, for information; ``"n/a"`` when it was not rendered), ``verdict``
    (:func:`fz_verdict`), and ``passes`` set to False where the verdict is
    ``"undetermined"``.

    Args:
        table (DataFrame): one row per channel (``passes``), e.g. :meth:`~rsi_plugin.criteria.captum.CriteriaResult.table`.
        in_status, pre_status (sequence of str): per row.
        post_status (sequence of str, optional): per row.

    Returns:
        the table.

    Raises:
        ValueError: lengths that do not match the table.
    """
    n = len(table)
    post_status = ["n/a"] * n if post_status is None else list(post_status)
    for name, values in (("in_status", in_status), ("pre_status", pre_status), ("post_status", post_status)):
        if len(values) != n:
            raise RSIError(f"{name} has {len(values)} entries for a table of {n} rows")
    table["in_status"] = list(in_status)
    table["pre_status"] = list(pre_status)
    table["post_status"] = post_status
    table["verdict"] = [fz_verdict(p, i, q) for p, i, q in zip(table["passes"], in_status, pre_status)]
    table["passes"] = table["verdict"] == "pass"
    return table


def _per_channel(table: pd.DataFrame, keys: list[str], counts: list[str]) -> pd.DataFrame:
    """One row per channel of a multi-seed table: ``passes`` / ``eq1`` / ``eq2`` hold when they
    hold in every seed; ``verdict`` is ``"pass"``, ``"fail"`` (fails in some seed) or
    ``"undetermined"`` (fails in none, undetermined in some)."""
    frame = table.assign(passes=table["passes"].astype(bool),
                         **{c: table[c].astype(bool) for c in counts})
    agg: dict[str, str] = {"passes": "all", **{c: "all" for c in counts}}
    groups = frame.groupby(keys + ["channel"], sort=False)
    out = groups.agg(agg)
    if "verdict" in table.columns:
        verdict = frame["verdict"].astype(str)
        failed = frame.assign(_fail=verdict.eq("fail") | (~frame["passes"] & verdict.ne("undetermined")),
                              _undetermined=verdict.eq("undetermined"))
        flags = failed.groupby(keys + ["channel"], sort=False)[["_fail", "_undetermined"]].any()
        out["verdict"] = [
            "pass" if p else "undetermined" if (u and not f) else "fail"
            for p, f, u in zip(out["passes"], flags["_fail"], flags["_undetermined"])]
    return out.reset_index()


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    r"""Per block: how many channels were analysed and how many pass (the numbers of the
    paper's §3, e.g. "2.1 with 23 (~18%)").

    Counts channels, not rows: a table with a ``seed`` column (one row per channel and seed,
    as ``rsi.scan`` with several seeds writes it) is first reduced to one row per channel.
    A channel passes when it is robust: it passes in every seed it was rendered in (the
    adaptive rule may have stopped it after fewer seeds), as
    :func:`rsi_plugin.criteria.seeds.channel_table` defines it with ``share=1``; likewise
    ``eq1`` / ``eq2`` hold for a channel when they hold in each of its seeds, and a channel
    is undetermined when it fails in no seed but is undetermined in some.

    Args:
        table (DataFrame): rows with ``block``, ``passes`` (and ``eq1``, ``eq2``); grouped
            also by ``source`` and ``transform`` when present; one row per seed of a channel
            when it has ``seed`` and ``channel``.

    Returns:
        DataFrame with the group keys, ``channels`` (distinct channels), ``passing``
        (channels that pass), ``share = passing / channels``, ``eq1`` / ``eq2`` (channels
        where each holds) when the table has those columns, and ``undetermined`` (channels
        whose verdict is ``"undetermined"``: an FZ that is not ``"ok"``) when it has
        ``verdict``.

    Raises:
        ValueError: if ``block`` or ``passes`` is missing.
    """
    missing = [c for c in ("block", "passes") if c not in table.columns]
    if missing:
        raise RSIError(f"table lacks column(s) {missing}; it needs block and passes "
                         "(the output of rsi.scan or ScaleInvariance(...).evaluate(...).table())")
    keys = [c for c in ("source", "transform") if c in table.columns] + ["block"]
    counts = [c for c in ("eq1", "eq2") if c in table.columns]
    if {"seed", "channel"} <= set(table.columns):
        table = _per_channel(table, keys, counts)
    rows = []
    for group, part in table.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        row = dict(zip(keys, group))
        passing = int(part["passes"].astype(bool).sum())
        row.update({"channels": len(part), "passing": passing, "share": passing / len(part) if len(part) else float("nan")})
        for column in counts:
            row[column] = int(part[column].astype(bool).sum())
        if "verdict" in part.columns:
            row["undetermined"] = int((part["verdict"].astype(str) == "undetermined").sum())
        rows.append(row)
    extra = ["undetermined"] if "verdict" in table.columns else []
    return pd.DataFrame(rows, columns=keys + ["channels", "passing", "share"] + counts + extra)


def __getattr__(name: str) -> object:
    # ScaleInvariance moved to rsi_plugin.criteria.captum (it runs the model; this module does not)
    if name == "ScaleInvariance":
        import warnings

        from rsi_plugin._lazy import deprecation_message
        from rsi_plugin.criteria.captum import ScaleInvariance

        warnings.warn(deprecation_message(f"{__name__}.ScaleInvariance", "rsi_plugin.criteria.captum",
                                          "ScaleInvariance"), DeprecationWarning, stacklevel=2)
        return ScaleInvariance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
