"""The paper's published criteria-passing channels, and a comparison of a scan against them.

The lists are facts read off the paper (arXiv 2504.16290): Fig. 1 (exemplary channels of
blocks 2.1 and 3.1), Fig. 3 (the rest of blocks 1.1, 2.0 and 2.1) and Fig. 4 (the rest of
block 3.1), for torchvision ResNet18 with ``IMAGENET1K_V1`` weights. They agree with the
counts of §3: 6 channels in 1.1, 2 in 2.0, 23 in 2.1 and 46 in 3.1. They are stored in
``rsi_plugin/data/paper_channels.csv`` with a ``source`` column naming the figure. The
paper probed blocks 1.1 to 4.1 (not 1.0); the others had no passing channel.

The paper notes its results "may vary due to the stochastic nature of feature
visualization": a comparison measures agreement, it is not a pass/fail test.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Sequence

import pandas as pd

from rsi_plugin.errors import RSIError, UnknownNameError

__all__ = ["PAPER_MODEL", "PAPER_WEIGHTS", "PAPER_BLOCKS", "paper_channels", "compare_to_paper"]

logger = logging.getLogger(__name__)

PAPER_MODEL = "resnet18"
PAPER_WEIGHTS = "IMAGENET1K_V1"
#: the blocks the paper probed ("all the channels from blocks 1.1 to 4.1")
PAPER_BLOCKS: tuple[str, ...] = ("1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1")


def paper_channels(blocks: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's criteria-passing channels of ResNet18 (``IMAGENET1K_V1``).

    Args:
        blocks (str or list of str, optional): keep only these blocks (``"2.1"``);
            all by default.

    Returns:
        DataFrame with columns ``block`` (str), ``channel`` (int, zero-indexed as in the
        paper) and ``source`` (the figure: ``"Fig. 1"``, ``"Fig. 3"`` or ``"Fig. 4"``),
        in the paper's order.

    Raises:
        ValueError: for a block the paper did not probe, listing the probed ones.
    """
    with resources.files("rsi_plugin").joinpath("data", "paper_channels.csv").open("r") as handle:
        table = pd.read_csv(handle, dtype={"block": str, "channel": int, "source": str})
    if blocks is None:
        return table
    if isinstance(blocks, str):
        blocks = [blocks]
    unknown = [b for b in blocks if b not in PAPER_BLOCKS]
    if unknown:
        raise UnknownNameError(f"the paper did not probe block(s) {unknown}; probed: {', '.join(PAPER_BLOCKS)}")
    return table[table["block"].isin(list(blocks))].reset_index(drop=True)


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def compare_to_paper(table: pd.DataFrame, share: float = 1.0) -> pd.DataFrame:
    r"""Agreement between the channels a scan found and the paper's, block by block.

    Only meaningful for ResNet18 with ``IMAGENET1K_V1`` weights (a warning is logged when
    ``table.attrs`` says otherwise). Rows are grouped by ``block`` and, when the table has
    them, by ``source`` and ``transform`` as well. A scan with several seeds is compared
    through its robust set (:func:`rsi_plugin.criteria.seeds.channel_table`: channels passing in
    at least ``ceil(share * seeds)`` of their seeds; every seed by default); undetermined
    channels (an FZ that is not valid) never count as found and are counted on their own.

    Args:
        table (DataFrame): a scan or :meth:`~rsi_plugin.criteria.captum.CriteriaResult.table` with columns
            ``block``, ``channel`` and ``passes`` (and ``seed``, ``verdict`` when present).
        share (float): the robust share.

    Returns:
        DataFrame with one row per group: the group keys, ``probed`` (whether the paper
        probed the block), ``scanned`` (channels in ``table``), ``found`` (robust
        channels: with one seed, the passing ones), ``paper`` (the paper's passing
        channels among those scanned: a scan of some channels is compared on those only),
        ``overlap`` (of ``found`` with ``paper``), ``precision = overlap / found``,
        ``recall = overlap / paper``, ``jaccard = overlap / |found ∪ paper|``, then
        ``seeds`` (FZ seeds in the scan), ``any_seed`` (channels passing in at least one
        seed) and ``undetermined`` (channels whose verdict invalid FZs leave open). A
        ratio with a zero denominator is NaN, and every ratio is NaN for a block the paper
        did not probe.

    Raises:
        ValueError: if a required column is missing.
    """
    from rsi_plugin.criteria.seeds import channel_table

    missing = [c for c in ("block", "channel", "passes") if c not in table.columns]
    if missing:
        raise RSIError(f"table lacks column(s) {missing}; it needs block, channel and passes "
                         "(the output of rsi.scan or ScaleInvariance(...).evaluate(...).table())")
    model, weights = table.attrs.get("model"), table.attrs.get("weights")
    if (model is not None and model != PAPER_MODEL) or (weights is not None and weights != PAPER_WEIGHTS):
        logger.warning("comparing a scan of %s (%s weights) with the paper's channels of %s (%s)",
                       model, weights, PAPER_MODEL, PAPER_WEIGHTS)
    reference = paper_channels()
    sets = {b: set(g["channel"]) for b, g in reference.groupby("block")}
    table = table.assign(block=table["block"].astype(str))
    keys = [c for c in ("source", "transform") if c in table.columns] + ["block"]
    rows = []
    for group, part in table.groupby(keys, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        row = dict(zip(keys, group))
        block = str(row["block"])
        channels = channel_table(part, share)
        scanned = set(int(c) for c in channels["channel"])
        found = set(int(c) for c in channels.loc[channels["robust"], "channel"])
        probed = block in PAPER_BLOCKS
        paper = sets.get(block, set()) & scanned  # a scan of some channels is compared on those
        overlap = len(found & paper)
        union = len(found | paper)
        nan = float("nan")
        row.update({
            "probed": probed,
            "seeds": int(part["seed"].nunique()) if "seed" in part.columns else 1,
            "scanned": len(scanned),
            "found": len(found),
            "any_seed": int(channels["any_seed"].sum()),
            "undetermined": int((channels["status"] == "undetermined").sum()),
            "paper": len(paper) if probed else pd.NA,
            "overlap": overlap if probed else pd.NA,
            "precision": _ratio(overlap, len(found)) if probed else nan,
            "recall": _ratio(overlap, len(paper)) if probed else nan,
            "jaccard": _ratio(overlap, union) if probed else nan,
        })
        rows.append(row)
    columns = keys + ["probed", "scanned", "found", "paper", "overlap", "precision", "recall", "jaccard", "seeds",
                      "any_seed", "undetermined"]
    return pd.DataFrame(rows, columns=columns)
