"""paper.py: the paper's constants defined once, and one text/code Variant behind the five switches."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

import rsi_plugin
from rsi_plugin import paper
from rsi_plugin.ablation.experiment import SweepConfig
from rsi_plugin.criteria.channel_scan import ScanConfig, scan
from rsi_plugin.featureviz.optimize import FeatureVizConfig, paper_jitter

PACKAGE = Path(rsi_plugin.__file__).parent
BLOCKS = ("1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1", "4.2", "5.3", "stem")
NODES = ("in", "pre", "sum", "post")


def _jitter_before(block_name: str, node: str, schedule: str = "text") -> int:
    """``paper_jitter`` as it was written before the tables moved to paper.py (the reference)."""
    node = "post" if node == "sum" else node
    name = str(block_name)
    if schedule == "code":
        parts = name.split(".")
        split = (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(p.isdigit() for p in parts) else None
        if split is not None and node == "in" and split[1] > 0:
            return _jitter_before(f"{split[0]}.{split[1] - 1}", "post", "code")
        code = {("1.0", "post"): 0, ("1.1", "pre"): 0, ("1.1", "post"): 0, ("2.1", "pre"): 4, ("2.1", "post"): 4}
        if (name, node) in code:
            return code[(name, node)]
        if name == "2.0":
            return 0
        if name == "3.0":
            return 4
        return _jitter_before(name, node, "text")
    if name in ("1.1", "2.0"):
        return 0
    if name == "3.0" or (name == "2.1" and node == "pre"):
        return 4
    return 16


@pytest.mark.parametrize("schedule", ["text", "code"])
def test_jitter_tables_give_the_jitters_of_before(schedule):
    for block in BLOCKS:
        for node in NODES:
            assert paper.jitter_table(block, node, schedule) == _jitter_before(block, node, schedule), (block, node)
            assert paper_jitter(block, node, schedule) == _jitter_before(block, node, schedule)


def test_resolve_gives_the_five_switches():
    text, code = paper.resolve("text"), paper.resolve("code")
    assert (text.node_variant, text.jitter_schedule, text.fz_paper_compat, text.sweep_node, text.crop) == (
        "text", "text", False, "post", "text")
    assert (code.node_variant, code.jitter_schedule, code.fz_paper_compat, code.sweep_node, code.crop) == (
        "code", "code", True, "sum", "code")
    assert paper.resolve() == text
    for bad in ("paper", "Text", None, 1):
        with pytest.raises(ValueError, match="text, code"):
            paper.resolve(bad)


def test_constants_are_the_papers_and_used_everywhere():
    from rsi_plugin.ablation import PAPER_SCALES as ablation_scales
    from rsi_plugin.ablation.attacks import DEFAULT_ATTACK_SCALES
    from rsi_plugin.apps.demo import DemoConfig
    from rsi_plugin.cli import build_parser
    from rsi_plugin.criteria.equations import TOLERANCE
    from rsi_plugin.featureviz import param
    from rsi_plugin.zoo.evaluate import SWEEP_PS

    assert paper.SWEEP_SCALES == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # §4: no scale, then 10 % .. 50 %
    assert paper.FZ_ZOOMS == (1.0, 0.975, 1.025, 0.95, 1.05) and paper.FZ_ANGLES == tuple(range(-5, 6))
    assert paper.TOLERANCE == 1.5 and TOLERANCE == paper.TOLERANCE
    for scales in (ablation_scales, SWEEP_PS, SweepConfig().scales, DemoConfig().scales):
        assert tuple(scales) == paper.SWEEP_SCALES
    assert DEFAULT_ATTACK_SCALES == paper.SWEEP_SCALES[1:]
    assert param.PAPER_SCALES == FeatureVizConfig().scales == paper.FZ_ZOOMS
    assert param.PAPER_ANGLES == FeatureVizConfig().angles == paper.FZ_ANGLES
    assert (FeatureVizConfig().steps, FeatureVizConfig().lr) == (paper.FZ_STEPS, paper.FZ_LR)
    args = build_parser(["ablate"]).parse_args(["ablate", "--block", "3.1", "--channels", "1", "--out", "x"])
    assert tuple(args.scales) == paper.SWEEP_SCALES and args.variant == "text" and args.node is None
    args = build_parser(["scan"]).parse_args(["scan", "--out", "x"])
    assert args.tolerance == paper.TOLERANCE and args.steps == paper.FZ_STEPS
    assert (args.variant, args.node_variant, args.jitter_schedule, args.paper_compat) == ("text", None, None, None)


def test_no_module_spells_the_papers_numbers_again():
    spelled = {"sweep scales": re.compile(r"[(\[]\s*(0\.0,\s*)?0\.1,\s*0\.2,\s*0\.3,\s*0\.4,\s*0\.5"),
               "FZ zooms": re.compile(r"[(\[]\s*1\.0,\s*0\.975,\s*1\.025"),
               "the text's switch check": re.compile(r"""not in \(["']text["'], ["']code["']\)""")}
    found = [(str(path.relative_to(PACKAGE)), what) for path in sorted(PACKAGE.rglob("*.py")) if path.name != "paper.py"
             for what, pattern in spelled.items() if pattern.search(path.read_text())]
    assert found == []


def test_featureviz_config_variant_and_overrides(resnet18):
    code = FeatureVizConfig(variant="code")
    assert code.paper_compat is None and code.jitter_schedule is None  # "follow the variant" until resolved
    resolved = code.resolved(resnet18, "2.1", "in")
    assert (resolved.jitter_schedule, resolved.paper_compat, resolved.pre_activation) == ("code", True, False)
    assert resolved.jitter == paper_jitter("2.1", "in", "code") == 0  # 2.1 In is layer2.0 in the script
    text = FeatureVizConfig().resolved(resnet18, "2.1", "in")
    assert (text.jitter_schedule, text.paper_compat, text.jitter) == ("text", False, 16)
    # an explicit switch wins over the variant, and replace() switches the variant of a config
    mixed = FeatureVizConfig(variant="code", paper_compat=False).resolved(resnet18, "2.1", "in")
    assert (mixed.jitter_schedule, mixed.paper_compat) == ("code", False)
    assert dataclasses.replace(FeatureVizConfig(), variant="code").resolved(resnet18, "2.1", "in") == resolved
    # the variant is not part of the cache key: the explicit switches give the same records
    explicit = FeatureVizConfig(jitter_schedule="code", paper_compat=True).resolved(resnet18, "2.1", "in")
    assert explicit.cache_key() == resolved.cache_key() != text.cache_key()
    for kwargs in (dict(variant="paper"), dict(jitter_schedule="paper")):
        with pytest.raises(ValueError, match="text, code"):
            FeatureVizConfig(**kwargs)
    with pytest.raises(TypeError, match="paper_compat"):
        FeatureVizConfig(paper_compat="yes")


def test_scan_config_variant_and_overrides():
    assert ScanConfig().resolved().node_variant == "text"
    code = ScanConfig(variant="code").resolved()
    assert (code.variant, code.node_variant, code.paper_compat) == ("code", "code", True)
    assert (code.featureviz.variant, code.featureviz.jitter_schedule, code.featureviz.paper_compat) == (
        "code", "code", True)
    own = ScanConfig(variant="code", node_variant="text", paper_compat=False).resolved()
    assert (own.node_variant, own.paper_compat, own.featureviz.jitter_schedule) == ("text", False, "code")
    # the FZ config's variant is the scan's when the scan gives none; a scan's variant wins
    assert ScanConfig(featureviz=FeatureVizConfig(variant="code")).resolved().node_variant == "code"
    assert ScanConfig(variant="text", featureviz=FeatureVizConfig(variant="code")).resolved().node_variant == "text"
    assert dataclasses.replace(ScanConfig(variant="code"), variant="text").resolved().node_variant == "text"
    for kwargs in (dict(variant="paper"), dict(node_variant="paper")):
        with pytest.raises(ValueError, match="text, code"):
            ScanConfig(**kwargs)


def test_sweep_config_variant_and_overrides():
    text, code = SweepConfig().resolved(), SweepConfig(variant="code").resolved()
    assert (text.node, text.crop, code.node, code.crop) == ("post", "text", "sum", "code")
    assert SweepConfig(variant="code", node="post").resolved().node == "post"
    assert SweepConfig(variant="code", crop="text").resolved().crop == "text"
    # sweep.json keeps its keys: the crop is recorded as "variant", so older folders resume
    assert SweepConfig().manifest() == {"scales": paper.SWEEP_SCALES, "trials": 10, "seed": 0, "tolerance": 0.0,
                                        "max_draws": 100, "null_sets": 200, "node": "post", "variant": "text",
                                        "set_draws": "distinct"}
    assert SweepConfig(crop="code").manifest()["variant"] == "code"
    with pytest.raises(ValueError, match="text, code"):
        SweepConfig(variant="paper").resolved()
    with pytest.raises(ValueError, match="text, code"):
        SweepConfig(crop="paper").resolved()
    with pytest.raises(ValueError, match="post, sum"):
        SweepConfig(node="pre").resolved()


def test_code_variant_scan_is_the_explicit_switches(tmp_path):
    torch.manual_seed(0)
    model: nn.Module = ResNet(BasicBlock, [2, 1, 1, 1], num_classes=10).eval()
    fz = dict(image_size=32, steps=2, channels_per_batch=4)  # jitter from the schedule
    by_variant = scan(model, ["1.1"], ScanConfig(featureviz=FeatureVizConfig(**fz), variant="code", channels=[0, 1],
                                                 cache_dir=tmp_path), progress=False)
    explicit = scan(model, ["1.1"], ScanConfig(featureviz=FeatureVizConfig(jitter_schedule="code", **fz),
                                               node_variant="code", paper_compat=True, channels=[0, 1],
                                               cache_dir=tmp_path), progress=False)
    assert not explicit["fz_computed"].any()  # same FZ settings: every FZ came from the first scan's cache
    columns = ["block", "channel", "pre_in", "pre_scaled", "post_in", "post_pre", "passes", "node_variant"]
    assert by_variant[columns].equals(explicit[columns])
    assert (by_variant["node_variant"] == "code").all() and by_variant.attrs["variant"] == "code"
    text = scan(model, ["1.1"], ScanConfig(featureviz=FeatureVizConfig(**fz), channels=[0, 1], cache_dir=tmp_path),
                progress=False)
    assert text["fz_computed"].all() and (text["node_variant"] == "text").all()
