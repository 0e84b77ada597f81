"""An independent reference: residual nodes read with plain ``register_forward_hook``."""

from __future__ import annotations

import torch
from torch import nn


def hook_nodes(model: nn.Module, images: torch.Tensor, block_path: str) -> dict[str, torch.Tensor]:
    """In, Pre, Sum and Post of the torchvision block at ``block_path`` via raw hooks."""
    block = model.get_submodule(block_path)
    pre_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    seen: dict[str, torch.Tensor] = {}
    relu_inputs: list[torch.Tensor] = []
    handles = [
        block.register_forward_pre_hook(lambda m, args: seen.__setitem__("block_input", args[0].clone())),
        pre_bn.register_forward_hook(lambda m, args, out: seen.__setitem__("pre", out.clone())),
        block.register_forward_hook(lambda m, args, out: seen.__setitem__("post", out.clone())),
        # the last relu call of the block sees the pre-ReLU sum (before it acts in place)
        block.relu.register_forward_pre_hook(lambda m, args: relu_inputs.append(args[0].clone())),
    ]
    if block.downsample is not None:
        handles.append(block.downsample.register_forward_hook(
            lambda m, args, out: seen.__setitem__("downsample", out.clone())))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return {
        "in": seen.get("downsample", seen["block_input"]),
        "pre": seen["pre"],
        "sum": relu_inputs[-1],
        "post": seen["post"],
        "logits": logits,
    }


def hook_ablate(model: nn.Module, images: torch.Tensor, block_path: str, channels, values) -> torch.Tensor:
    """Logits with ``channels`` of the block's output set to ``values`` by a raw forward hook."""
    block = model.get_submodule(block_path)
    vals = torch.as_tensor(values, dtype=images.dtype).flatten()
    if vals.numel() == 1:
        vals = vals.expand(len(channels))

    def hook(module, args, out):
        out = out.clone()
        out[:, list(channels)] = vals[None, :, None, None]
        return out

    handle = block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(images)
    finally:
        handle.remove()


def hook_ablate_sum(model: nn.Module, images: torch.Tensor, block_path: str, channels, values) -> torch.Tensor:
    """Logits with ``channels`` of the pre-ReLU sum set to ``values`` (patching the last ReLU's input)."""
    block = model.get_submodule(block_path)
    vals = torch.as_tensor(values, dtype=images.dtype).flatten()
    calls = []

    def hook(module, args):
        calls.append(1)
        if len(calls) % 2 == 0:  # BasicBlock calls relu twice; the second sees the sum
            x = args[0].clone()
            x[:, list(channels)] = vals[None, :, None, None]
            return (x,)
        return None

    handle = block.relu.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            return model(images)
    finally:
        handle.remove()


def hook_values(model: nn.Module, images: torch.Tensor, sites: dict[str, tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Values at hand-named module sites, read by raw hooks and cloned when hooked.

    Independent of :mod:`rsi_plugin.access.plan`: the caller names each site itself.
    Runs in the caller's grad mode (so a gradient can be taken through the values).

    Args:
        model (nn.Module): the model.
        images (Tensor): its input.
        sites (dict): ``name -> (module path, how)``; ``how`` is ``"output"``, ``"input"``
            (first positional input) or ``"last_input"`` (first input of the module's last
            call in the forward, e.g. a ResNet block's ReLU, which is called more than once).

    Returns:
        dict ``name -> value`` plus ``"logits"``.
    """
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def on_output(name):
        return lambda m, args, out: seen.__setitem__(name, out.clone())

    def on_input(name):
        return lambda m, args: seen.__setitem__(name, args[0].clone())

    for name, (path, how) in sites.items():
        module = model.get_submodule(path)
        if how == "output":
            handles.append(module.register_forward_hook(on_output(name)))
        elif how in ("input", "last_input"):  # a later call overwrites: the last call is kept
            handles.append(module.register_forward_pre_hook(on_input(name)))
        else:
            raise ValueError(f"unknown site kind {how!r}; valid: output, input, last_input")
    try:
        seen["logits"] = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return seen
