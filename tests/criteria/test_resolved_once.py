"""A scan settles its configuration once (issue 23 item 2): the text/code variant is resolved
once on the way through ``scan``, the receptive-field centre and the criteria of a block are
built once per block (not per seed), and every config has one verb, ``resolved``."""

from __future__ import annotations

import dataclasses

import pytest

from rsi_plugin.ablation.experiment import SweepConfig
from rsi_plugin.criteria import channel_scan
from rsi_plugin.criteria.channel_scan import ScanConfig, scan
from rsi_plugin.featureviz import config as fz_config
from rsi_plugin.featureviz.config import FeatureVizConfig

FAST = FeatureVizConfig(image_size=32, steps=2, jitter=0, channels_per_batch=4)


@pytest.fixture(scope="module")
def tiny():
    from rsi_plugin import load_model

    return load_model("tiny")


def _count(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


@pytest.mark.parametrize("variant", ["text", "code"])
def test_a_two_seed_scan_of_two_blocks_resolves_the_variant_once(tiny, monkeypatch, variant):
    variants = _count(monkeypatch, channel_scan, "resolve_variant")
    fz_variants = _count(monkeypatch, fz_config, "resolve_variant")
    centres = _count(monkeypatch, channel_scan, "receptive_field_center")
    criteria = _count(monkeypatch, channel_scan, "ScaleInvariance")
    config = ScanConfig(featureviz=FAST, variant=variant, seeds=(0, 1), channels=[0, 1])
    table = scan(tiny, ["1.0", "1.1"], config, progress=False)
    assert len(table) == 2 * 2 * 2
    assert len(variants) + len(fz_variants) == 1, (variants, fz_variants)
    assert len(centres) == 2 and len(criteria) == 2  # per block, not per (block, seed)


def test_the_resolved_config_is_what_it_was_and_idempotent():
    config = ScanConfig(featureviz=FAST, variant="code", paper_compat=False)
    assert config.featureviz.variant == "text"  # __post_init__ validates only
    once = config.resolved()
    assert once.featureviz.variant == "code" and once.node_variant == "code"
    assert once.featureviz.jitter_schedule == "code" and once.paper_compat is False is once.featureviz.paper_compat
    assert once.resolved() is once
    text = ScanConfig(featureviz=dataclasses.replace(FAST, paper_compat=True)).resolved()
    assert text.paper_compat is True and text.node_variant == "text"  # either level's paper_compat holds


def test_one_verb_the_old_one_warns():
    with pytest.warns(DeprecationWarning, match="SweepConfig.resolved"):
        old = SweepConfig(variant="code").validated()
    assert old == SweepConfig(variant="code").resolved()
