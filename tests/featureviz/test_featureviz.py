"""Feature visualisation: Lucent's parameterisation and transforms, the node probe against
nnsight's capture and Lucent's hook, batch invariance, seeds, the cache and resume, and the
comparison with Lucent's render_vis. Small random-init models, 32-64 px, few steps."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rsi_plugin.testing.state import assert_same_state, model_state
from rsi_plugin.testing.lucent_reference import lucent_render_vis
from rsi_plugin.testing.models import randomise_batchnorm, random_norm_tiny as make_tiny
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

import rsi_plugin as rsi
from rsi_plugin.featureviz import param as fp
from rsi_plugin.featureviz.optimize import (
    FLAT_STD,
    FeatureVizConfig,
    NodeProbe,
    channel_seed,
    model_fingerprint,
    paper_jitter,
    render,
    visualize,
)

SIZE = 64


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return make_tiny(0)


def fast(**kw) -> FeatureVizConfig:
    base = dict(image_size=SIZE, steps=6, jitter=0, channels_per_batch=8)
    base.update(kw)
    return FeatureVizConfig(**base)


def centre(model, images, block, node):
    return rsi.capture(model, rsi.normalize(images, model), blocks=[block], nodes=(node,))[(block, node)]


# ----------------------------------------------------------------------------- parameterisation


@pytest.mark.parametrize("fft,decorrelate", [(True, True), (False, True), (True, False)])
def test_image_param_equals_lucent(fft, decorrelate):
    from lucent.optvis import param

    for size in (32, 33):
        params = fp.init_params([torch.Generator().manual_seed(i) for i in range(2)], size, fft=fft) * 50
        ours = fp.ImageParam(size, fft=fft, decorrelate=decorrelate)(params)
        assert ours.shape == (2, 3, size, size)
        for k in range(2):
            lucent_params, image_f = param.image(size, fft=fft, decorrelate=decorrelate)
            assert tuple(lucent_params[0].shape[1:]) == tuple(params.shape[1:])
            with torch.no_grad():
                lucent_params[0].copy_(params[k:k + 1])
            torch.testing.assert_close(ours[k:k + 1], image_f().detach(), atol=1e-6, rtol=1e-5)


def test_init_params_per_generator_and_lucent_scale():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    both = fp.init_params(gens, 16)
    alone = fp.init_params([torch.Generator().manual_seed(4)], 16)
    assert torch.equal(both[1], alone[0])
    assert not torch.equal(both[0], both[1])
    big = fp.init_params([torch.Generator().manual_seed(0)], 64)
    assert 0.008 < big.std().item() < 0.012  # Lucent's sd = 0.01


def test_affine_grid_equals_torch():
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    for h, w in ((7, 9), (32, 32)):
        torch.testing.assert_close(fp.affine_grid(theta, h, w),
                                   F.affine_grid(theta, [5, 3, h, w], align_corners=True), atol=1e-6, rtol=0)


def test_draws_follow_the_spec_and_the_generator():
    spec = fp.TransformSpec(jitter=16)
    draws = fp.draw_transforms(torch.Generator().manual_seed(1), 4000, spec)
    assert draws.shape == (4000, 6)
    assert set(draws[:, 0].tolist()) == set(range(16)) == set(draws[:, 1].tolist())
    assert set(draws[:, 4].tolist()) == set(range(8))
    assert set(draws[:, 2].tolist()) == set(fp.PAPER_SCALES)
    assert set(draws[:, 3].tolist()) == set(fp.PAPER_ANGLES)
    again = fp.draw_transforms(torch.Generator().manual_seed(1), 4000, spec)
    assert torch.equal(draws, again)
    small = fp.draw_transforms(torch.Generator().manual_seed(1), 100, fp.TransformSpec(jitter=2))
    assert (small[:, [0, 1, 4, 5]] == 0).all()


def _lucent_chain(img, jitter, values, monkeypatch):
    """Lucent's transforms as the paper's code composes them, fed fixed draws."""
    import lucent.optvis.transform as lt

    draws = iter(values)
    monkeypatch.setattr(lt.np.random, "choice", lambda options: next(draws))
    if jitter >= 4:
        chain = [lt.pad(jitter), lt.jitter(jitter), lt.random_scale(list(fp.PAPER_SCALES)),
                 lt.random_rotate(list(fp.PAPER_ANGLES)), lt.jitter(jitter // 2)]
    else:
        chain = [lt.random_scale(list(fp.PAPER_SCALES)), lt.random_rotate(list(fp.PAPER_ANGLES))]
    out = lt.compose(chain)(img)
    size = img.shape[-1]
    o = (out.shape[-1] - size) // 2  # the paper's crop(size), centred
    return out[..., o:o + size, o:o + size]


@pytest.mark.parametrize("jitter", [0, 8])
def test_transforms_equal_lucents_up_to_interpolation(jitter, monkeypatch):
    size = 48
    img = fp.ImageParam(size)(fp.init_params([torch.Generator().manual_seed(0)], size) * 20)
    spec = fp.TransformSpec(jitter=jitter)
    cases = [(0, 0, 1.0, 0.0, 0, 0), (0, 0, 0.95, 0.0, 0, 0), (0, 0, 1.05, 0.0, 0, 0), (0, 0, 1.0, 5.0, 0, 0),
             (0, 0, 1.0, -3.0, 0, 0), (5, 2, 1.025, -4.0, 3, 1), (1, 6, 0.975, 3.0, 2, 0)]
    for dx, dy, s, a, ex, ey in cases:
        if jitter < 4:
            dx = dy = ex = ey = 0
        draws = torch.tensor([[dx, dy, s, a, ex, ey]], dtype=torch.float64)
        ours = fp.transform_images(img, fp.transform_thetas(draws, size, spec), spec)
        values = [dx, dy, np.float64(s), a, ex, ey] if jitter >= 4 else [np.float64(s), a]
        ref = _lucent_chain(img, jitter, values, monkeypatch)
        diff = (ours - ref).abs()
        if (dx, dy, ex, ey) == (0, 0, 0, 0) and (s == 1.0 or a == 0.0):
            assert diff.max() < 1e-4, (dx, dy, s, a)  # one resample on both sides: identical
        else:
            assert diff.mean() < 0.012, (dx, dy, s, a, ex, ey)  # Lucent resamples 2-3 times
            assert diff.mean() < 0.25 * (ours - img).abs().mean()


# ----------------------------------------------------------------------------- reading nodes


def _bottleneck_model() -> nn.Module:
    torch.manual_seed(0)
    return randomise_batchnorm(ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10), 1).eval()


@pytest.mark.parametrize("which", ["basic", "bottleneck"])
def test_probe_equals_capture(which, tiny):
    model = tiny if which == "basic" else _bottleneck_model()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    names = [b.name for b in rsi.residual_blocks(model)][:3]
    ref = rsi.capture(model, x, blocks=names, nodes=("in", "pre", "sum", "post"), center=False)
    before = model_state(model)
    for name in names:
        for node in ("in", "pre", "sum", "post"):
            with NodeProbe(model, name, node) as probe:
                torch.testing.assert_close(probe(x), ref[(name, node)], atol=1e-5, rtol=1e-5)
    assert_same_state(before, model_state(model))


def test_pre_is_not_post_and_paper_compat_reads_like_lucent(tiny):
    from lucent.optvis.render import ModuleHook

    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    ref = rsi.capture(tiny, x, blocks=["2.1"], nodes=("pre", "post"), center=False)
    assert (ref[("2.1", "pre")] - ref[("2.1", "post")]).abs().max() > 0.1
    lucent_hook = ModuleHook(tiny.layer2[1].bn2)  # what Lucent records as layer2_1_bn2
    try:
        with torch.no_grad():
            tiny(x)
        lucent_value = lucent_hook.features.clone()
    finally:
        lucent_hook.close()
    torch.testing.assert_close(lucent_value, ref[("2.1", "post")])  # Lucent's "Pre" is Post
    with NodeProbe(tiny, "2.1", "pre", paper_compat=True) as probe:
        torch.testing.assert_close(probe(x), lucent_value)
    with NodeProbe(tiny, "2.1", "pre") as probe:
        torch.testing.assert_close(probe(x), ref[("2.1", "pre")])


def test_pre_fz_maximises_pre_and_paper_compat_optimises_post(tiny):
    chans = list(range(8))
    cfg = fast(steps=30, jitter=4)
    pre = visualize(tiny, "2.1", "pre", chans, cfg)
    compat = visualize(tiny, "2.1", "pre", chans, replace(cfg, paper_compat=True))
    post = visualize(tiny, "2.1", "post", chans, replace(cfg, pre_activation=False))  # Lucent's Post: no substitution
    idx = torch.arange(len(chans)), torch.tensor(chans)
    # reported activations are the node read by nnsight's capture on the returned images
    torch.testing.assert_close(pre.activations, centre(tiny, pre.images, "2.1", "pre")[idx], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compat.activations, centre(tiny, compat.images, "2.1", "post")[idx],
                               atol=1e-4, rtol=1e-4)
    # paper_compat's "Pre" FZ is exactly the Post FZ (same seed, same draws), the true Pre FZ is not
    assert torch.equal(compat.images, post.images)
    assert (pre.images - post.images).abs().max() > 0.05
    # on average the Pre FZ excites Pre more than the (Lucent) Post FZ does
    assert pre.activations.mean() > centre(tiny, compat.images, "2.1", "pre")[idx].mean() + 1.0


# ----------------------------------------------------------------------------- optimisation


def test_objective_rises_and_beats_noise(tiny):
    chans = [0, 3, 5, 7]
    vis = visualize(tiny, "2.1", "pre", chans, fast(steps=40))
    assert vis.images.shape == (4, 3, SIZE, SIZE) and vis.history.shape == (40, 4)
    assert vis.images.min() >= 0 and vis.images.max() <= 1
    assert (vis.history[-8:].mean(0) > vis.history[:8].mean(0) + 1.0).all()
    noise = torch.rand(32, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    noise_acts = centre(tiny, noise, "2.1", "pre")[:, chans]
    margin = noise_acts.max(0).values + 3 * noise_acts.std(0)
    assert (vis.activations > margin).all(), (vis.activations, margin)


def test_channel_objective_reports_the_channel_mean(tiny):
    vis = visualize(tiny, "2.0", "in", [1, 2], fast(objective="channel", steps=4))
    maps = rsi.capture(tiny, rsi.normalize(vis.images, tiny), blocks=["2.0"], nodes=("in",), center=False)[("2.0", "in")]
    torch.testing.assert_close(vis.activations, maps[[0, 1], [1, 2]].mean((1, 2)), atol=1e-5, rtol=1e-5)


def test_batch_invariance(tiny):
    cfg = fast(steps=5, jitter=8)
    together = visualize(tiny, "1.1", "post", [4, 1, 6], cfg)
    alone = visualize(tiny, "1.1", "post", [1], cfg)
    split = visualize(tiny, "1.1", "post", [4, 1, 6], replace(cfg, channels_per_batch=1))
    torch.testing.assert_close(alone.images[0], together.images[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(split.images, together.images, atol=1e-4, rtol=0)
    torch.testing.assert_close(alone.activations[0], together.activations[1], atol=1e-3, rtol=1e-4)
    assert (together.images[0] - together.images[1]).abs().max() > 0.01  # the tolerance means something


def test_seeds(tiny):
    cfg = fast(steps=4, jitter=8)
    a = visualize(tiny, "1.1", "pre", [0, 1], cfg)
    b = visualize(tiny, "1.1", "pre", [0, 1], cfg)
    c = visualize(tiny, "1.1", "pre", [0, 1], replace(cfg, seed=1))
    assert torch.equal(a.images, b.images) and torch.equal(a.activations, b.activations)
    images, activations = a  # unpacks like a pair
    assert images is a.images and activations is a.activations
    assert (a.images - c.images).abs().max() > 0.01
    assert channel_seed(0, 1) == channel_seed(0, 1) != channel_seed(0, 2) != channel_seed(1, 1)


def test_model_state_restored_and_user_hooks_kept():
    model = make_tiny(3)
    model.train()
    model.layer1[0].conv1.weight.requires_grad_(False)
    seen = []
    handle = model.layer1[0].register_forward_hook(lambda m, a, o: seen.append(1))
    before = model_state(model)
    visualize(model, "1.1", "pre", [0], fast(steps=2))
    assert_same_state(before, model_state(model))
    assert seen  # the user's hook ran and is still there

    def stop(*args):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        render(model, "1.1", "pre", [0, 1], fast(steps=2, channels_per_batch=1), progress=False, callback=stop)
    assert_same_state(before, model_state(model))
    handle.remove()


# ----------------------------------------------------------------------------- against Lucent


def _lucent_render(model, layer, channel, cfg, steps, monkeypatch):
    """Lucent's render_vis of ``neuron(layer, channel)`` (rsi_plugin/testing/lucent_reference.py)."""
    from lucent.optvis import objectives

    return lucent_render_vis(model, objectives.neuron(layer, channel), channel, cfg, steps, SIZE, monkeypatch)


def test_same_draws_as_lucent_give_lucents_images(monkeypatch):
    """With one resample per step (scale only) our optimisation is Lucent's, step for step."""
    model = make_tiny(5)
    lucent_model = copy.deepcopy(model)  # Lucent leaves a hook on every module
    cfg = fast(steps=8, jitter=0, angles=(0.0,))
    ours = visualize(model, "2.0", "in", [0, 1], cfg)
    theirs = torch.cat([_lucent_render(lucent_model, "layer2_0_downsample_1", c, cfg.resolved(model, "2.0", "in"),
                                       8, monkeypatch) for c in (0, 1)])
    torch.testing.assert_close(ours.images, theirs, atol=1e-4, rtol=0)


def test_activation_at_least_90_percent_of_lucent_render_vis(monkeypatch):
    """Block 2.0 In at the paper's jitter (0): random scale and rotation, 24 steps, 12 channels."""
    model = make_tiny(6)
    lucent_model = copy.deepcopy(model)
    chans, steps = list(range(12)), 24
    cfg = fast(steps=steps).resolved(model, "2.0", "in")
    assert cfg.jitter == paper_jitter("2.0", "in") == 0
    ours = visualize(model, "2.0", "in", chans, cfg)
    theirs = torch.cat([_lucent_render(lucent_model, "layer2_0_downsample_1", c, cfg, steps, monkeypatch)
                        for c in chans])
    idx = torch.arange(len(chans)), torch.tensor(chans)
    ours_act = centre(model, ours.images, "2.0", "in")[idx]
    lucent_act = centre(model, theirs, "2.0", "in")[idx]
    torch.testing.assert_close(ours.activations, ours_act, atol=1e-4, rtol=1e-4)
    assert lucent_act.mean() > 5.0  # Lucent's optimisation did something
    assert ours_act.mean() >= 0.9 * lucent_act.mean(), (ours_act, lucent_act)


# ----------------------------------------------------------------------------- cache and resume


def test_resume_after_interruption_equals_uninterrupted_run(tiny, tmp_path):
    cfg = fast(steps=4, channels_per_batch=2, jitter=4)
    chans = [0, 1, 2, 3, 4, 5]
    full = render(tiny, "2.1", "pre", chans, cfg, cache_dir=tmp_path / "a", progress=False)
    assert full.computed == chans and all(p.is_file() for p in full.paths)

    done = []

    def stop_after_two(batch, images, acts):
        done.append(batch)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render(tiny, "2.1", "pre", chans, cfg, cache_dir=tmp_path / "b", progress=False, callback=stop_after_two)
    assert done == [[0, 1], [2, 3]]
    again = render(tiny, "2.1", "pre", chans, cfg, cache_dir=tmp_path / "b", progress=False,
                   callback=lambda batch, *a: done.append(batch))
    assert again.computed == [4, 5] and done[2:] == [[4, 5]]
    assert torch.equal(again.images, full.images) and torch.equal(again.activations, full.activations)
    assert [p.name for p in again.paths] == [p.name for p in full.paths]
    assert not list((tmp_path / "b").rglob("*.tmp"))

    # a different batch size hits the same records; force recomputes; another config misses
    cached = render(tiny, "2.1", "pre", chans, replace(cfg, channels_per_batch=6),
                    cache_dir=tmp_path / "b", progress=False)
    assert cached.computed == [] and torch.equal(cached.images, full.images)
    assert render(tiny, "2.1", "pre", [1], cfg, cache_dir=tmp_path / "b", force=True,
                  progress=False).computed == [1]
    other = render(tiny, "2.1", "pre", [1], replace(cfg, steps=3),
                   cache_dir=tmp_path / "b", progress=False)
    assert other.computed == [1] and other.paths[0] != again.paths[1]
    # a damaged record is recomputed, not trusted
    again.paths[2].with_suffix(".pt").write_bytes(b"not a record")
    repaired = render(tiny, "2.1", "pre", chans, cfg, cache_dir=tmp_path / "b", progress=False)
    assert repaired.computed == [2]  # alone now, so equal up to batch-size rounding
    torch.testing.assert_close(repaired.images, full.images, atol=1e-4, rtol=0)


def test_render_all_channels_without_cache(tiny):
    result = render(tiny, "1.0", "in", None, fast(steps=1), progress=False)
    assert result.channels == list(range(8)) and result.images.shape == (8, 3, SIZE, SIZE)
    assert result.paths == [None] * 8 and result.config.image_size == SIZE and result.config.jitter == 0


def test_model_fingerprint():
    a, b = make_tiny(0), make_tiny(0)
    assert model_fingerprint(a) == model_fingerprint(b) == model_fingerprint(rsi.wrap(b))
    with torch.no_grad():
        b.layer3[0].bn2.running_var[0] += 1e-3
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(make_tiny(1))


# ----------------------------------------------------------------------------- jitter, config, errors


def test_paper_jitter_schedules():
    text = {b: {n: paper_jitter(b, n) for n in ("in", "pre", "post")}
            for b in ("1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1")}
    assert text["1.1"] == text["2.0"] == {"in": 0, "pre": 0, "post": 0}
    assert text["2.1"] == {"in": 16, "pre": 4, "post": 16}
    assert text["3.0"] == {"in": 4, "pre": 4, "post": 4}
    assert text["3.1"] == text["4.0"] == text["4.1"] == {"in": 16, "pre": 16, "post": 16}
    code = {(b, n): paper_jitter(b, n, "code") for b in text for n in ("in", "pre", "post")}
    assert code[("2.1", "in")] == 0 and code[("2.1", "post")] == 4 and code[("3.1", "in")] == 4
    assert code[("1.1", "in")] == code[("1.0", "post")] == 0 and code[("4.1", "in")] == 16
    assert paper_jitter("2.1", "sum") == paper_jitter("2.1", "post")
    with pytest.raises(ValueError, match="schedule"):
        paper_jitter("2.1", "pre", "paper")


def test_default_config_is_the_papers(tiny):
    cfg = FeatureVizConfig()
    assert (cfg.steps, cfg.lr, cfg.objective, cfg.fft, cfg.decorrelate) == (2560, 0.05, "neuron", True, True)
    resolved = cfg.resolved(tiny, "2.1", "pre")
    assert resolved.image_size == 224 and resolved.jitter == 4  # a model without rsi_info is an ImageNet model


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps"), (dict(lr=0), "lr"), (dict(objective="mean"), "neuron, channel"),
    (dict(jitter=-1), "jitter"), (dict(channels_per_batch=0), "channels_per_batch"),
    (dict(image_size=8), "image_size"), (dict(pad_mode="wrap"), "reflect"), (dict(scales=()), "scales"),
    (dict(jitter_schedule="paper"), "text, code"), (dict(seed=-1), "seed"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureVizConfig(**kwargs)


def test_call_errors(tiny):
    with pytest.raises(ValueError, match="valid blocks: 1.0, 1.1"):
        visualize(tiny, "9.9", "pre", [0], fast())
    with pytest.raises(ValueError, match="valid nodes"):
        visualize(tiny, "2.1", "bn2", [0], fast())
    with pytest.raises(IndexError, match=r"0\.\.15"):
        visualize(tiny, "2.1", "pre", [16], fast())
    with pytest.raises(ValueError, match="duplicates"):
        render(tiny, "2.1", "pre", [1, 1], fast(), progress=False)
    with pytest.raises(TypeError, match="integers"):
        render(tiny, "2.1", "pre", [1.5], fast(), progress=False)
    with pytest.raises(ValueError, match="larger than 16"):
        visualize(tiny, "2.1", "pre", [0], fast(image_size=16, jitter=16))
    with pytest.raises(RuntimeError, match="not active"):
        NodeProbe(tiny, "2.1", "pre")(torch.zeros(1, 3, 32, 32))


def test_cli_featureviz(tmp_path, capsys):
    from rsi_plugin.cli import main

    argv = ["featureviz", "--model", "resnet18", "--block", "1.1", "--node", "pre", "--channels", "0", "3",
            "--steps", "2", "--size", "32", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 computed" in out and len(list(tmp_path.rglob("*.png"))) == 2
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 computed, 2 from cache" in out and "unconverged" in out  # 2 steps: status shown per channel
    assert main(argv + ["--no-early-stop", "--no-scale-jitter", "--no-pre-activation"]) == 0
    assert "2 computed" in capsys.readouterr().out  # another config: another cache entry
    assert main(argv[:4] + ["7.7"] + argv[5:]) == 2
    assert "valid blocks" in capsys.readouterr().err


# ----------------------------------------------------------------------------- validity (issue 12)


def _kill_channel(model: nn.Module, block: str, channel: int, bias: float = -50.0) -> nn.Module:
    """Make ``Pre`` of a channel a constant ``bias`` (bn2 weight 0): no gradient reaches the image."""
    stage, index = (int(p) for p in block.split("."))
    bn = getattr(model, f"layer{stage}")[index].bn2
    bn.weight.data[channel] = 0.0
    bn.bias.data[channel] = bias
    return model


def test_fz_status_rules_on_constructed_cases():
    from rsi_plugin.featureviz.optimize import DEAD_ACTIVATION, FLAT_STD, fz_status

    g = torch.Generator().manual_seed(0)
    textured = torch.rand(1, 3, 16, 16, generator=g)
    flat = 0.5 + (FLAT_STD / 4) * torch.randn(1, 3, 16, 16, generator=g)
    images = torch.cat([textured, textured, flat, textured, textured, flat])
    acts = torch.tensor([1.0, DEAD_ACTIVATION, 2.0, 3.0, float("nan"), -1.0])
    converged = torch.tensor([True, True, True, False, True, True])
    assert fz_status(acts, images, converged) == ["ok", "dead", "flat", "unconverged", "dead", "dead"]


def test_plateau_rule_on_constructed_histories():
    from rsi_plugin.featureviz.optimize import plateaued

    steps = torch.arange(40, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    history = torch.stack([
        steps,                                                  # still rising: no plateau
        torch.full((40,), 3.0),                                 # flat: plateau
        5.0 + 0.01 * torch.randn(40, generator=g),              # noise about a level: plateau
        torch.zeros(40),                                        # dead: flat at 0
        10.0 * (1 - torch.exp(-steps / 3)),                     # saturated exponential: plateau
    ], dim=1)
    assert plateaued(history, 10, 0.01).tolist() == [False, True, True, True, True]
    # a window longer than half the history cannot tell
    assert not plateaued(history, 21, 0.01).any()


def test_dead_fz_detected_and_verdict_undetermined():
    model = _kill_channel(make_tiny(0), "2.1", 3)
    vis = visualize(model, "2.1", "pre", [2, 3], fast(steps=8))
    assert vis.status[1] == "dead"
    assert float(vis.activations[1]) == pytest.approx(-50.0)
    # the dead channel's image never moved from its initial noise: flat as well (dead wins)
    assert float(vis.images[1].std()) < FLAT_STD
    assert vis.status[0] != "dead"


def test_unconverged_on_a_truncated_run_and_ok_when_run_to_a_plateau(tiny):
    chans = [0, 1, 2, 3]
    short = visualize(tiny, "1.0", "pre", chans, fast(steps=6, lr=0.2))
    assert short.status == ["unconverged"] * 4 and short.steps_used.tolist() == [6] * 4
    long = visualize(tiny, "1.0", "pre", chans, fast(steps=400, lr=0.2, plateau_window=20, plateau_rtol=0.02))
    assert all(s == "ok" for s in long.status), long.status
    assert (long.steps_used < 400).all()
    # the plateau reached: the last window gained at most rtol over the one before
    for k, used in enumerate(long.steps_used.tolist()):
        h = long.history[:used, k]
        assert float(h[-20:].mean() - h[-40:-20].mean()) <= 0.02 * float(h[-40:].abs().max())
        assert torch.isnan(long.history[used:, k]).all()


def test_early_stop_image_equals_a_fixed_run_of_that_many_steps(tiny):
    chans = [0, 1, 2, 3, 4, 5]
    cfg = fast(steps=120, lr=0.2, plateau_window=8, plateau_rtol=0.05, channels_per_batch=6)
    stopped = visualize(tiny, "1.0", "pre", chans, cfg)
    used = stopped.steps_used.tolist()
    assert min(used) < 120 and len(set(used)) > 1, used  # channels stopped at different steps
    for k, c in enumerate(chans):
        alone = visualize(tiny, "1.0", "pre", [c], replace(cfg, steps=used[k], early_stop=False))
        torch.testing.assert_close(stopped.images[k], alone.images[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(stopped.activations[k], alone.activations[0], atol=1e-4, rtol=1e-4)


def test_continuous_batching_refills_and_keeps_each_channel_its_own(tiny, monkeypatch):
    """Two rows for six channels: a plateaued channel leaves, the next joins at a window
    boundary; each channel's image, objective and steps equal its run alone."""
    import rsi_plugin.featureviz.engine as fv  # the running batch calls plateaued there

    chans = [0, 1, 2, 3, 4, 5]
    cfg = fast(steps=120, lr=0.2, plateau_window=8, plateau_rtol=0.05)
    tests = []
    real = fv.plateaued
    monkeypatch.setattr(fv, "plateaued", lambda *a: tests.append(1) or real(*a))
    streamed = visualize(tiny, "1.0", "pre", chans, replace(cfg, channels_per_batch=2))
    # the device is read at most once per window (plus once per finished group)
    assert len(tests) <= 120 // 8 + len(chans), len(tests)
    used = streamed.steps_used.tolist()
    assert min(used) < 120 and len(set(used)) > 1, used
    for k, c in enumerate(chans):
        alone = visualize(tiny, "1.0", "pre", [c], cfg)
        assert alone.steps_used.tolist() == [used[k]] and alone.status == [streamed.status[k]]
        torch.testing.assert_close(streamed.images[k], alone.images[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(streamed.activations[k], alone.activations[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(streamed.history[:used[k], k], alone.history[:, 0], atol=1e-4, rtol=1e-4)
        assert torch.isnan(streamed.history[used[k]:, k]).all()


def test_row_adam_equals_torch_adam_per_row():
    """Rows that joined at different steps each get exactly torch.optim.Adam's update."""
    from rsi_plugin.featureviz.engine import _RowAdam

    g = torch.Generator().manual_seed(0)
    target = torch.randn(3, 5, generator=g)
    start = [0, 3, 7]  # the step at which each row joins
    adam = _RowAdam(0.05, 20, torch.device("cpu"))
    params, m, v = torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(3, 5)
    for step in range(20):
        t = torch.tensor([max(step - s, 0) for s in start])
        active = torch.tensor([step >= s for s in start])
        grad = (params - target) * params.abs().add(1)
        new = params.clone(), m.clone(), v.clone()
        adam.step(*new[:1], grad, *new[1:], t)
        for a, b in zip((params, m, v), new):
            a[active] = b[active]
    for row, s in enumerate(start):
        p = torch.zeros(5, requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.05)
        for _ in range(20 - s):
            p.grad = ((p - target[row]) * p.abs().add(1)).detach()
            opt.step()
        assert torch.equal(params[row], p.detach()), (row, params[row] - p.detach())


def test_fixed_count_without_early_stop(tiny):
    vis = visualize(tiny, "1.0", "pre", [0, 1], fast(steps=40, lr=0.2, plateau_window=4, plateau_rtol=0.5,
                                                      early_stop=False))
    assert vis.steps_used.tolist() == [40, 40] and vis.history.shape == (40, 2)
    assert torch.isfinite(vis.history).all()


def test_pre_activation_reads_the_sum_behind_the_relu(tiny):
    from rsi_plugin.featureviz.optimize import relu_source

    blocks = rsi.residual_blocks(tiny)
    names = {b.name: b for b in blocks}
    assert relu_source(blocks, names["2.1"], "post").name == "2.1"
    assert relu_source(blocks, names["2.1"], "in").name == "2.0"
    assert relu_source(blocks, names["2.0"], "in") is None  # a downsample: In is a BatchNorm output
    assert relu_source(blocks, names["1.0"], "in") is None  # the stem's pooled ReLU: not read
    assert relu_source(blocks, names["2.1"], "pre") is None
    x = torch.randn(3, 3, SIZE, SIZE)
    for block, node, source in (("2.1", "post", "2.1"), ("2.1", "in", "2.0")):
        ref = rsi.capture(tiny, x, blocks=[block, source], nodes=(node, "sum"), center=False)
        with NodeProbe(tiny, block, node, pre_activation=True) as probe:
            value = probe(x)
            torch.testing.assert_close(value, ref[(block, node)])
            torch.testing.assert_close(probe.pre_activation, ref[(source, "sum")])
            torch.testing.assert_close(value, torch.relu(probe.pre_activation))


def test_pre_activation_revives_a_post_fz_that_starts_dead():
    model = make_tiny(0)
    # Post of channel 1 of 2.1 starts at 0 everywhere: Pre is pushed far below In's range
    _kill_channel(model, "2.1", 1, bias=-3.0)
    model.layer2[1].bn2.weight.data[1] = 0.5
    x = torch.rand(4, 3, SIZE, SIZE)
    assert float(rsi.capture(model, rsi.normalize(x, model), blocks=["2.1"], nodes=("post",))[("2.1", "post")][:, 1].max()) == 0
    cfg = fast(steps=60, lr=0.1)
    lucent = visualize(model, "2.1", "post", [1], replace(cfg, pre_activation=False))
    ours = visualize(model, "2.1", "post", [1], cfg)
    assert lucent.status == ["dead"] and float(lucent.history.abs().max()) == 0  # no gradient: the noise stays
    assert ours.status[0] != "dead" and float(ours.activations[0]) > 0
    assert float(ours.history[-1, 0]) > float(ours.history[0, 0])  # the pre-activation climbed
    # paper_compat keeps Lucent's behaviour
    assert replace(cfg, paper_compat=True).resolved(model, "2.1", "post").pre_activation is False


def test_jitter_scaled_to_the_image_and_recorded(tiny):
    from rsi_plugin.featureviz.optimize import scaled_jitter

    assert scaled_jitter(16, 224) == 16 and scaled_jitter(16, 64) == 5 and scaled_jitter(4, 64) == 1
    cfg = FeatureVizConfig(image_size=64)
    assert cfg.resolved(tiny, "3.1", "pre").jitter == 5
    assert cfg.resolved(tiny, "2.1", "pre").jitter == 1
    assert replace(cfg, scale_jitter=False).resolved(tiny, "3.1", "pre").jitter == 16
    assert replace(cfg, jitter=16).resolved(tiny, "3.1", "pre").jitter == 16  # explicit: not scaled
    keys = [c.resolved(tiny, "3.1", "pre").cache_key() for c in (cfg, replace(cfg, scale_jitter=False))]
    assert keys[0]["scale_jitter"] is True and keys[0] != keys[1]


def test_cache_key_records_torch_version_and_threads(tiny):
    from rsi_plugin.featureviz.cache import config_hash

    cfg = fast().resolved(tiny, "2.1", "pre")
    before = torch.get_num_threads()
    key = cfg.cache_key()
    assert key["torch"] == torch.__version__ and key["threads"] == before
    try:
        torch.set_num_threads(before + 1)
        assert config_hash(cfg.cache_key()) != config_hash(key)
    finally:
        torch.set_num_threads(before)


def test_render_records_status_and_steps_used(tiny, tmp_path):
    model = _kill_channel(copy.deepcopy(tiny), "2.1", 2)
    cfg = fast(steps=6)
    first = render(model, "2.1", "pre", [1, 2], cfg, cache_dir=tmp_path, progress=False)
    again = render(model, "2.1", "pre", [1, 2], cfg, cache_dir=tmp_path, progress=False)
    assert again.computed == [] and first.computed == [1, 2]
    assert first.status == again.status and first.status[1] == "dead"
    assert first.steps_used == again.steps_used == [6, 6]
    record = torch.load(str(first.paths[1]).replace(".png", ".pt"), weights_only=True)
    assert record["status"] == "dead" and record["steps_used"] == 6 and record["history"].shape == (6,)


def test_undetermined_verdict_never_passes():
    import pandas as pd

    from rsi_plugin.criteria.equations import add_fz_verdict, summarize

    table = pd.DataFrame({"block": ["2.1"] * 4, "channel": [0, 1, 2, 3], "passes": [True, True, False, True],
                          "eq1": [True] * 4, "eq2": [True, True, False, True]})
    add_fz_verdict(table, ["ok", "dead", "ok", "ok"], ["ok", "ok", "ok", "unconverged"])
    assert table["verdict"].tolist() == ["pass", "undetermined", "fail", "undetermined"]
    assert table["passes"].tolist() == [True, False, False, False]
    assert table["post_status"].tolist() == ["n/a"] * 4
    row = summarize(table).iloc[0]
    assert (row["passing"], row["undetermined"], row["channels"]) == (1, 2, 4)
    with pytest.raises(ValueError, match="in_status"):
        add_fz_verdict(table, ["ok"], ["ok"] * 4)


# geometry (issue 12): tests/criteria/test_geometry.py


def test_fig1_grid_marks_a_non_ok_fz_in_red(tmp_path):
    from PIL import Image

    from rsi_plugin.outputs.grids import STATUS_COLOR, GridLayout, save_channel_grids

    grey = torch.full((3, 32, 32), 0.5)
    grid = {"neuron": {"in": grey, "pre": grey, "post": grey},
            "status": {"neuron": {"in": "dead", "pre": "ok", "post": "ok"}}}
    layout = GridLayout(cell=64)
    [path] = save_channel_grids({3: grid}, "2.1", tmp_path, layout)
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)

    def red(column):
        left, top, right, bottom = layout.box(0, column)
        return int((picture[top:bottom, left:right] == np.array(STATUS_COLOR)).all(-1).sum())

    assert red(0) > 4 * 64  # the dead In FZ: outlined and labelled
    assert red(1) == 0 and red(2) == 0  # the ok ones untouched
