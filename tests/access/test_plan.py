"""The read plan: sites from the spec, Sum expanded to In and Pre, execution order, one read each."""

from __future__ import annotations

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.access.plan import block_reads, plan_reads
from rsi_plugin.testing.models import small_resnet


@pytest.fixture(scope="module")
def blocks():
    return {b.name: b for b in rsi.residual_blocks(small_resnet(width=4))}


def test_a_downsample_block_reads_pre_before_in(blocks):
    plan = plan_reads([(blocks["2.0"], "post"), (blocks["2.0"], "sum"), (blocks["2.0"], "in")])
    assert [(r.node, r.path, r.attr, r.clone) for r in plan.reads] == [
        ("pre", "layer2.0.bn2", "output", True), ("in", "layer2.0.downsample", "output", False),
        ("post", "layer2.0", "output", False)]
    assert plan.keys == (("2.0", "in"), ("2.0", "sum"), ("2.0", "post"))
    assert plan.last.node == "post"


def test_sum_is_in_plus_pre_and_sites_are_read_once(blocks):
    block = blocks["1.1"]
    plan = plan_reads([(block, "sum"), (block, "pre"), (block, "sum")])
    assert [(r.node, r.attr) for r in plan.reads] == [("in", "input"), ("pre", "output")]
    got = {("1.1", "in"): torch.tensor([1.0, -2.0]), ("1.1", "pre"): torch.tensor([0.5, 0.5])}
    values = plan.values(got)
    assert list(values) == [("1.1", "pre"), ("1.1", "sum")]
    assert torch.equal(values[("1.1", "sum")], torch.tensor([1.5, -1.5]))
    assert values[("1.1", "pre")] is got[("1.1", "pre")]


def test_blocks_in_execution_order_and_clone_only_pre(blocks):
    plan = plan_reads([(blocks["3.1"], "in"), (blocks["1.0"], "post"), (blocks["2.1"], "pre")])
    assert [r.key for r in plan.reads] == [("1.0", "post"), ("2.1", "pre"), ("3.1", "in")]
    assert [r.clone for r in plan.reads] == [False, True, False]
    assert not any(r.clone for r in block_reads(blocks["2.1"], clone_pre=False).values())
    value = torch.ones(2)
    assert plan.reads[1].take(value) is not value and plan.reads[0].take(value) is value


def test_bad_sites_are_clear_errors(blocks):
    with pytest.raises(ValueError, match="valid nodes: in, pre, sum, post"):
        plan_reads([(blocks["1.0"], "mid")])
    with pytest.raises(ValueError, match="no \\(block, node\\) site"):
        plan_reads([])
