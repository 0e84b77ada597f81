"""The sweep through Captum's AttackComparator gives the sweep's accuracies."""

from __future__ import annotations

import inspect

import pytest
import torch
from captum.robust import AttackComparator
from rsi_plugin.testing.models import INPUT_SIZE, random_data, small_resnet  # noqa: F401

from rsi_plugin.ablation import (SweepConfig, ablated_forward, scale_attacks, scale_comparator, sweep,
                                 sweep_preprocessor, top1, validation_loader)
from rsi_plugin.core.transforms import scale_crop

SCALES = (0.2, 0.4)
CHANNELS = [1, 5, 11]


@pytest.fixture(scope="module")
def setup():
    model = small_resnet(seed=2)
    data = random_data(24, seed=9)
    result = sweep(model, data, "3.1", CHANNELS, SweepConfig(scales=(0.0,) + SCALES, trials=0, null_sets=0, batch_size=8),
                   progress=False)
    table = result.results.set_index(["condition", "scale"])["accuracy"]
    return model, data, result.means, table


def test_scale_attacks_are_add_attack_arguments():
    attacks = scale_attacks(small_resnet(), scales=(0.1, 0.5), variant="code")
    names = set(inspect.signature(AttackComparator.add_attack).parameters) - {"self"}
    assert all(set(a) == names for a in attacks)
    assert [a["name"] for a in attacks] == ["scale 10%", "scale 50%"]
    assert attacks[0]["attack_kwargs"] == {"p": 0.1, "output_size": INPUT_SIZE, "variant": "code"}
    images = torch.rand(2, 3, 37, 37)
    a = attacks[1]
    assert torch.equal(a["attack"](images, **a["attack_kwargs"]), scale_crop(images, 0.5, INPUT_SIZE, "code"))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        scale_attacks(scales=(1.5,))
    with pytest.raises(ValueError, match="variant"):
        scale_attacks(variant="paper")


@pytest.mark.parametrize("per_eval", [1, 3])
def test_attack_comparator_reports_the_sweep_accuracies(setup, per_eval):
    model, data, means, table = setup
    loader = validation_loader(data, model, batch_size=8)  # equal batches: Captum's mean of means is exact
    forwards = {"none": ablated_forward(model, "3.1", [], 0.0),
                "invariant": ablated_forward(model, "3.1", CHANNELS, means[CHANNELS])}
    for condition, forward in forwards.items():
        comparator = AttackComparator(forward, top1, preproc_fn=sweep_preprocessor(model))
        for attack in scale_attacks(model, SCALES):
            comparator.add_attack(**attack)
        for images, labels in loader:
            comparator.evaluate(images, perturbations_per_eval=per_eval, targets=labels)
        summary = comparator.summary()
        assert float(summary["Original"]["mean"]) == pytest.approx(table[(condition, 0.0)], abs=1e-6)
        for p in SCALES:
            assert float(summary[f"scale {100 * p:g}%"]["mean"]) == pytest.approx(table[(condition, p)], abs=1e-6)


def test_scale_comparator_shortcut(setup):
    model, data, means, table = setup
    plain = scale_comparator(model, scales=SCALES)
    ablated = scale_comparator(model, "3.1", CHANNELS, means[CHANNELS], scales=SCALES)
    for images, labels in validation_loader(data, model, batch_size=12):
        plain.evaluate(images, targets=labels)
        ablated.evaluate(images, targets=labels)
    assert float(plain.summary()["scale 40%"]["mean"]) == pytest.approx(table[("none", 0.4)], abs=1e-6)
    assert float(ablated.summary()["scale 20%"]["mean"]) == pytest.approx(table[("invariant", 0.2)], abs=1e-6)


def test_preprocessor_gives_the_no_scale_input(setup):
    model, data, _, _ = setup
    pre = sweep_preprocessor(model)
    from rsi_plugin.ablation.means import prepare_batch

    assert torch.equal(pre(data[0][:3]), prepare_batch(data[0][:3], model, 0.0, "text"))
    small = scale_crop(data[0][:3], 0.3, INPUT_SIZE)
    assert pre(small).shape == (3, 3, INPUT_SIZE, INPUT_SIZE)
