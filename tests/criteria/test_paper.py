"""The paper's published channel lists (rsi_plugin.paper) and a scan's agreement with them
(rsi_plugin.criteria.paper_comparison.compare_to_paper)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rsi_plugin.criteria.paper_comparison import compare_to_paper
from rsi_plugin.paper import PAPER_BLOCKS, paper_channels


# --------------------------------------------------------------------------- the paper's channels


def test_paper_channel_lists_match_the_counts_of_section_3():
    table = paper_channels()
    assert table.groupby("block").size().to_dict() == {"1.1": 6, "2.0": 2, "2.1": 23, "3.1": 46}
    # the shares the paper quotes: ~9.4 % of 1.1's 64 channels, ~18 % of 2.1's 128 and 3.1's 256
    assert round(100 * 6 / 64, 1) == 9.4
    assert round(100 * 23 / 128) == 18 and round(100 * 46 / 256) == 18
    assert not table.duplicated(["block", "channel"]).any()
    fig1 = table[table.source == "Fig. 1"]
    assert fig1.loc[fig1.block == "2.1", "channel"].tolist() == [15, 21, 48, 68, 88, 108]
    assert fig1.loc[fig1.block == "3.1", "channel"].tolist() == [22, 29, 80, 113, 178, 215]
    assert set(table.loc[table.block == "3.1", "source"]) == {"Fig. 1", "Fig. 4"}
    assert paper_channels("2.0")["channel"].tolist() == [50, 53]
    with pytest.raises(ValueError, match="probed"):
        paper_channels("1.0")


def test_compare_to_paper_counts():
    channels = list(range(128))
    found_21 = {15, 21, 48, 0, 1}  # three of the paper's 23, two others
    table = pd.DataFrame({
        "block": ["2.1"] * 128 + ["3.0"] * 4 + ["1.0"] * 2,
        "channel": channels + [0, 1, 2, 3] + [0, 1],
        "passes": [c in found_21 for c in channels] + [False] * 4 + [True, False],
    })
    result = compare_to_paper(table).set_index("block")
    row = result.loc["2.1"]
    assert (row.found, row.paper, row.overlap) == (5, 23, 3)
    assert row.precision == pytest.approx(3 / 5) and row.recall == pytest.approx(3 / 23)
    assert row.jaccard == pytest.approx(3 / 25)
    empty = result.loc["3.0"]  # probed, nothing found on either side: ratios undefined
    assert empty.probed and empty.found == 0 and math.isnan(empty.precision) and math.isnan(empty.jaccard)
    assert not result.loc["1.0"].probed and math.isnan(result.loc["1.0"].recall)
    assert set(PAPER_BLOCKS) == {"1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1"}
    # a scan of a few channels is compared on those only
    some = compare_to_paper(table[table.channel.isin([15, 21, 29])]).set_index("block").loc["2.1"]
    assert (some.scanned, some.paper, some.found) == (3, 2, 2)
    with pytest.raises(ValueError, match="passes"):
        compare_to_paper(table.drop(columns="passes"))
