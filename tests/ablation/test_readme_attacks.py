"""The README's AttackComparator recipe runs as written and its numbers are right: the block
between the ``attack-comparator`` markers is executed (on 40 images instead of 1,000) and both of
its rows are recomputed from the exported PNGs with a plain forward and a raw forward hook."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsi_plugin.core.transforms import scale_crop

README = Path(__file__).resolve().parents[2] / "README.md"
SCALES = {"Original": 0.0, "scale 10%": 0.1, "scale 20%": 0.2, "scale 30%": 0.3, "scale 40%": 0.4, "scale 50%": 0.5}


def readme_snippet() -> str:
    text = README.read_text()
    match = re.search(r"<!-- attack-comparator:begin -->\s*```python\n(.*?)```\s*<!-- attack-comparator:end -->",
                      text, re.S)
    assert match, "README.md lost its attack-comparator markers"
    return match.group(1)


def _read_folder(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The exported PNGs as [0, 1] tensors, labels from the folders' two-digit prefixes."""
    images, labels = [], []
    for path in sorted(root.glob("*/*.png")):
        images.append(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255)
        labels.append(int(path.parent.name[:2]))
    return torch.stack(images), torch.tensor(labels)


def _accuracy(model, images, labels, mean, std, hook=None) -> float:
    handle = model.get_submodule("layer3.1").register_forward_hook(hook) if hook else None
    try:
        with torch.no_grad():
            logits = model((images - mean[:, None, None]) / std[:, None, None])
    finally:
        if handle is not None:
            handle.remove()
    return float((logits.argmax(1) == labels).float().mean())


def test_readme_attack_comparator_snippet_reproduces(tmp_path, monkeypatch, capsys):
    code = readme_snippet()
    assert code.count("n=1000") == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("n=1000", "n=40"), "README.md:attack-comparator", "exec"), namespace)
    results, model, channels = namespace["results"], namespace["model"], namespace["channels"]
    assert "none {'Original'" in capsys.readouterr().out

    images, labels = _read_folder(tmp_path / "tiny-val")
    assert images.shape == (40, 3, 73, 73)
    info = model.rsi_info
    mean, std = torch.tensor(info.mean), torch.tensor(info.std)

    # the mean-ablation values: centre neuron of layer3.1's output over the unscaled images
    seen = {}
    handle = model.get_submodule("layer3.1").register_forward_hook(
        lambda m, a, out: seen.__setitem__("post", out[:, :, out.shape[2] // 2, out.shape[3] // 2].clone()))
    try:
        _accuracy(model, scale_crop(images, 0.0, output_size=info.input_size), labels, mean, std)
    finally:
        handle.remove()
    values = seen["post"].double().mean(0)[channels].float()

    def ablate_hook(module, args, out):
        out = out.clone()
        out[:, channels] = values[None, :, None, None]
        return out

    expected = {"none": {}, "ablated": {}}
    for name, p in SCALES.items():
        x = scale_crop(images, p, output_size=info.input_size)
        expected["none"][name] = round(_accuracy(model, x, labels, mean, std), 3)
        expected["ablated"][name] = round(_accuracy(model, x, labels, mean, std, ablate_hook), 3)
    assert results["none"] == pytest.approx(expected["none"], abs=1e-9)
    assert results["ablated"] == pytest.approx(expected["ablated"], abs=1e-9)
    assert results["ablated"] != results["none"]  # the ablation changes some predictions
    assert results["none"]["scale 50%"] < results["none"]["Original"]  # the sweep really scales
