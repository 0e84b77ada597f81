"""A scan's agreement with the paper's published channels (:func:`compare_to_paper`).

The published lists themselves are facts of the paper and live in :mod:`rsi_plugin.paper`
(:func:`~rsi_plugin.paper.paper_channels`); comparing a scan with them reads its per-seed
verdicts (:func:`rsi_plugin.criteria.seeds.channel_table`), so the comparison lives here.
"""

from __future__ import annotations

import logging

import pandas as pd

from rsi_plugin.criteria.seeds import channel_table
from rsi_plugin.errors import RSIError
from rsi_plugin.paper import PAPER_BLOCKS, PAPER_MODEL, PAPER_WEIGHTS, paper_channels

__all__ = ["compare_to_paper"]

logger = logging.getLogger(__name__)


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
