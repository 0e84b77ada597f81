r"""Untrained copies of a model: the model-randomisation control (Adebayo et al. 2018).

A pass count means something only next to the same count on a network that learned nothing.
:func:`randomized_copy` gives such a network: a deep copy of the model (the model itself is
never touched) re-initialised the way its constructor initialises it, from a recorded seed.

**How a copy is initialised** (:func:`init_rule` names the rule):

* ``"torchvision-resnet"`` (a :class:`torchvision.models.ResNet`, the bundled ``"tiny"``
  included): every module's own ``reset_parameters()`` (what its constructor ran:
  ``Conv2d`` / ``Linear`` Kaiming-uniform, BatchNorm weight 1, bias 0 and running statistics
  reset), then exactly the loop of ``ResNet.__init__``: ``kaiming_normal_(mode="fan_out",
  nonlinearity="relu")`` for every ``Conv2d``, weight 1 and bias 0 for every BatchNorm /
  GroupNorm. ``fc`` keeps its ``Linear`` initialisation, as in torchvision. The constructor's
  ``zero_init_residual=False`` (torchvision's default) is assumed.
* ``"torchvision-convnext"`` (a :class:`torchvision.models.ConvNeXt`): every module's
  ``reset_parameters()``, then the loop of ``ConvNeXt.__init__`` (``trunc_normal_(std=0.02)``
  for every ``Conv2d`` / ``Linear`` weight, zero bias) and each block's ``layer_scale`` set
  to ``1e-6`` (torchvision's default).
* ``"reset_parameters"`` (any other model): every module's own ``reset_parameters()``.

A parameter in the re-initialised part that no rule covers (a custom module without
``reset_parameters``) raises :class:`~rsi_plugin.errors.RSIError` naming it: a "random" copy
that keeps trained parameters would be a wrong control.

**Seeding.** The copy is initialised on the CPU under ``torch.random.fork_rng`` seeded with
``seed``, modules in ``named_modules()`` order, then moved to the model's device: the same
seed gives the same weights on every device, and the caller's global RNG state is left as
it was. For a torchvision ResNet or ConvNeXt this is the same random stream the constructor
draws (its modules' ``reset_parameters`` consume the same numbers; the conv weights the
constructor's loop redraws come after them in the same order), so
``randomized_copy(resnet18(), s)`` equals ``torch.manual_seed(s); resnet18()`` exactly.

**Cascading randomisation** (``cascade_to="2.1"``, Adebayo et al.'s cascading form): the
network is randomised from the top down to block ``2.1`` inclusive (``fc``, the last block,
..., ``2.1``); everything below stays trained. Precisely: every module registered at or after
block ``2.1``'s module (in ``named_modules()`` order, which is the execution order of
torchvision's ResNets and ConvNeXts) is re-initialised by the rules above.

The copy carries the model's ``rsi_info`` (:class:`~rsi_plugin.core.modelinfo.ModelInfo`:
input size, normalisation statistics, classes) with ``weights`` describing the init
(``"random-init@seed=1000"``, ``"cascade:2.1@seed=1000 over <trained weights>"``); its
weights differ from the model's, so its FZ-cache fingerprint
(:func:`rsi_plugin.featureviz.cache.model_fingerprint`) does too. It is in eval mode.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from torch import nn

from rsi_plugin.core.blocks import get_block, residual_blocks
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.errors import InputTypeError, RSIError

__all__ = ["randomized_copy", "init_rule", "randomized_modules", "INIT_RULES", "CONVNEXT_LAYER_SCALE"]

logger = logging.getLogger(__name__)

#: the initialisation rules, by the model's family (see the module docstring)
INIT_RULES: tuple[str, ...] = ("torchvision-resnet", "torchvision-convnext", "reset_parameters")
#: ``layer_scale`` of a torchvision ConvNeXt block at construction (``ConvNeXt(layer_scale=1e-6)``)
CONVNEXT_LAYER_SCALE: float = 1e-6


def init_rule(model: nn.Module) -> str:
    """The rule :func:`randomized_copy` initialises ``model`` by: one of :data:`INIT_RULES`."""
    from torchvision.models.convnext import ConvNeXt
    from torchvision.models.resnet import ResNet

    module = unwrap(model)
    if isinstance(module, ResNet):
        return "torchvision-resnet"
    if isinstance(module, ConvNeXt):
        return "torchvision-convnext"
    return "reset_parameters"


def randomized_modules(model: nn.Module, cascade_to: str | None = None) -> list[str]:
    r"""The names (``named_modules()`` paths) of the modules :func:`randomized_copy`
    re-initialises: all of them, or with ``cascade_to`` those registered at or after that
    block's module.

    Args:
        model (nn.Module): the model.
        cascade_to (str, optional): a block name (``"2.1"``).

    Returns:
        list of module paths (``""`` is the model itself), in ``named_modules()`` order.

    Raises:
        UnknownNameError: ``cascade_to`` is not a block of the model (the message lists them).
    """
    module = unwrap(model)
    names = [name for name, _ in module.named_modules()]
    if cascade_to is None:
        return names
    if not isinstance(cascade_to, str):
        raise InputTypeError(f"cascade_to must be a block name such as '2.1' or None, got {cascade_to!r}")
    block = get_block(residual_blocks(module), cascade_to)
    return names[names.index(block.path):]


def _reinit(modules: list[nn.Module], rule: str) -> None:
    """Re-initialise ``modules`` in place (on the CPU, under the caller's seeded RNG)."""
    for m in modules:
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    if rule == "torchvision-resnet":
        for m in modules:  # ResNet.__init__'s loop
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
    elif rule == "torchvision-convnext":
        from torchvision.models.convnext import CNBlock

        for m in modules:  # ConvNeXt.__init__'s loop
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in modules:
            if isinstance(m, CNBlock):
                m.layer_scale.fill_(CONVNEXT_LAYER_SCALE)


def _covered(m: nn.Module, rule: str) -> set[str]:
    """Names of ``m``'s own parameters the rule re-initialises."""
    own = {name for name, _ in m.named_parameters(recurse=False)}
    if callable(getattr(m, "reset_parameters", None)):
        return own
    if rule == "torchvision-convnext":
        from torchvision.models.convnext import CNBlock

        if isinstance(m, CNBlock):
            return own & {"layer_scale"}
    return set()


def randomized_copy(model: nn.Module, seed: int, cascade_to: str | None = None) -> nn.Module:
    r"""An untrained copy of ``model``: re-initialised as its constructor initialises it.

    Args:
        model (nn.Module): the trained model (an nnsight wrapper is unwrapped); left unchanged.
        seed (int): seed of the initialisation (>= 0). The global RNG state is not changed.
        cascade_to (str, optional): randomise only from the top of the network down to this
            block inclusive (``"2.1"``), keep everything below trained; ``None``: the whole
            network.

    Returns:
        nn.Module: the copy, in eval mode, on the model's device, with ``rsi_info`` (the
        model's, ``weights`` describing the init).

    Raises:
        UnknownNameError: ``cascade_to`` is not a block (the valid blocks are listed).
        RSIError: a bad seed, or a parameter to re-initialise that no rule covers.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RSIError(f"seed must be an integer >= 0, got {seed!r}")
    module = unwrap(model)
    if not isinstance(module, nn.Module):
        raise InputTypeError(f"model must be an nn.Module, got {type(module).__name__}")
    names = randomized_modules(module, cascade_to)
    rule = init_rule(module)
    info = model_info(module)
    out = copy.deepcopy(module)
    chosen = [out.get_submodule(name) if name else out for name in names]
    missing = [f"{name}.{p}" if name else p for name, m in zip(names, chosen)
               for p, _ in m.named_parameters(recurse=False) if p not in _covered(m, rule)]
    if missing:
        raise RSIError(f"cannot re-initialise parameter(s) {', '.join(missing[:10])}"
                       f"{' ...' if len(missing) > 10 else ''}: their module has no reset_parameters() and the "
                       f"{rule!r} rule does not cover them; give the module a reset_parameters()")
    devices = {t.device for t in (*out.parameters(), *out.buffers())}
    if len(devices) > 1:
        raise RSIError(f"the model's tensors lie on several devices ({', '.join(sorted(map(str, devices)))}); "
                       "move it to one device first")
    device = next(iter(devices), None)
    out.to("cpu")
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        _reinit(chosen, rule)
    if device is not None:
        out.to(device)
    what = "random-init" if cascade_to is None else f"cascade:{cascade_to}"
    weights = f"{what}@seed={seed}" + ("" if cascade_to is None else f" over {info.weights}")
    out.rsi_info = dataclasses.replace(info, weights=weights)
    logger.debug("randomized copy of %s: %s (%s, %d modules)", info.name, weights, rule, len(names))
    return out.eval()
