"""The FZ cache key is pinned: these hashes name the on-disk record folders
(``<fingerprint>/<block>/<node>/<config hash>/``) of every existing cache. They were computed
with the code before the split of ``featureviz/optimize.py`` (issue 23); a change here makes
every cached FZ stale, so it needs ``FORMAT_VERSION`` bumped on purpose, not by accident."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.featureviz.cache import config_hash
from rsi_plugin.featureviz.optimize import FeatureVizConfig


@pytest.fixture()
def fixed_torch(monkeypatch):
    """The key records torch's version and thread count; fix both so the hash is the same here
    and on any machine."""
    monkeypatch.setattr(torch, "__version__", "2.14.1")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)


def test_cache_key_of_the_default_config_is_pinned(fixed_torch):
    # pins the on-disk cache format: an unresolved default config, and resolved for the bundled model
    assert config_hash(FeatureVizConfig().cache_key()) == "91c30706d90c8a08"
    resolved = FeatureVizConfig().resolved(rsi.load_model("tiny"), "2.1", "pre")
    key = resolved.cache_key()
    assert (key["image_size"], key["jitter"], key["format"]) == (64, 1, 2)
    assert config_hash(key) == "b29166bba7ec6dda"


def test_cache_key_of_a_non_default_config_is_pinned(fixed_torch):
    # pins the on-disk cache format of a config that sets most fields (variant "code": Lucent's
    # Pre reading, no pre-activation); channels_per_batch is not part of the key
    cfg = FeatureVizConfig(steps=100, variant="code", seed=3, objective="channel", plateau_window=8, image_size=48,
                           channels_per_batch=5, scales=(1.0, 1.1), angles=(-2, 2), pad_mode="constant")
    resolved = cfg.resolved(rsi.load_model("tiny"), "3.1", "in")
    assert resolved.paper_compat is True and resolved.pre_activation is False
    assert config_hash(resolved.cache_key()) == "be0672d54c698c01"
    other = dataclasses.replace(cfg, channels_per_batch=7).resolved(rsi.load_model("tiny"), "3.1", "in")
    assert config_hash(other.cache_key()) == "be0672d54c698c01"
