"""The FZ speed options of :class:`FeatureVizConfig` (issue 22 item 4): ``autocast="bfloat16"``
and ``memory_format="channels_last"`` change the computation, enter the cache key only when
set, are validated, and leave the model as it was."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import rsi_plugin as rsi
from rsi_plugin.errors import ConfigError
from rsi_plugin.featureviz.cache import config_hash
from rsi_plugin.featureviz.optimize import FeatureVizConfig, visualize

CHANNELS = [0, 1, 2, 3]


def _run(model, **options):
    torch.set_num_threads(1)
    return visualize(model, "2.1", "post", CHANNELS, FeatureVizConfig(steps=24, early_stop=False, **options))


def test_bfloat16_autocast_changes_the_images_but_stays_close():
    model = rsi.load_model("tiny")
    fp32, bf16 = _run(model), _run(model, autocast="bfloat16")
    assert torch.isfinite(bf16.images).all() and torch.isfinite(bf16.activations).all()
    assert bf16.images.dtype == torch.float32 and bf16.activations.dtype == torch.float32
    assert not torch.equal(fp32.images, bf16.images)  # another computation, not a no-op
    assert torch.allclose(bf16.activations, fp32.activations, rtol=0.5, atol=1.0)
    assert (bf16.images - fp32.images).abs().mean() < 0.15  # images in [0, 1]


def test_channels_last_runs_and_restores_the_models_memory_format():
    model = rsi.load_model("tiny")
    weights = [p for p in model.parameters() if p.dim() == 4]
    before = [(p.data_ptr(), p.stride()) for p in weights]
    fp32, last = _run(model), _run(model, memory_format="channels_last")
    assert [(p.data_ptr(), p.stride()) for p in weights] == before  # the model's own tensors, as they were
    assert all(p.is_contiguous() for p in weights)
    assert not any(p.is_contiguous(memory_format=torch.channels_last) for p in weights if p.shape[-1] > 1)
    assert torch.isfinite(last.images).all()
    assert torch.allclose(last.activations, fp32.activations, rtol=0.2, atol=0.5)


def test_default_key_has_no_option_fields_and_a_set_option_gives_another_key():
    base = FeatureVizConfig()
    assert "autocast" not in base.cache_key() and "memory_format" not in base.cache_key()
    hashes = {config_hash(base.cache_key())}
    for options in ({"autocast": "bfloat16"}, {"memory_format": "channels_last"},
                    {"autocast": "bfloat16", "memory_format": "channels_last"}):
        key = dataclasses.replace(base, **options).cache_key()
        assert all(key[name] == value for name, value in options.items())
        hashes.add(config_hash(key))
    assert len(hashes) == 4


@pytest.mark.parametrize("options, valid", [({"autocast": "float16"}, "bfloat16"),
                                            ({"autocast": True}, "bfloat16"),
                                            ({"memory_format": "nhwc"}, "channels_last")])
def test_bad_option_values_are_rejected_naming_the_valid_ones(options, valid):
    with pytest.raises(ConfigError, match=valid):
        FeatureVizConfig(**options)


def test_rsi_scan_autocast_flag_reaches_the_fz_config(monkeypatch, tmp_path, capsys):
    import rsi_plugin.apps.estimate as estimate
    from rsi_plugin.cli import main

    seen = []
    monkeypatch.setattr(estimate, "estimate_scan", lambda model, blocks, config, progress: seen.append(config))
    monkeypatch.setattr(estimate, "format_estimate", lambda e: "estimated")
    argv = ["scan", "--model", "tiny", "--blocks", "2.1", "--estimate", "--out", str(tmp_path / "s")]
    assert main(argv + ["--autocast", "bfloat16"]) == 0 and main(argv) == 0
    assert [c.featureviz.autocast for c in seen] == ["bfloat16", None]
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--autocast", "float16"])
    assert exit_info.value.code == 2 and "bfloat16" in capsys.readouterr().err
