"""Block specs: where In, Pre and Post live in one kind of residual block.

A residual block computes ``post = activation(in + pre)``: ``in`` is what the shortcut
carries, ``pre`` what the residual branch adds to it, and ``activation`` is ReLU in a
ResNet and the identity in a ConvNeXt. A :class:`BlockSpec` says, with module paths
relative to the block, where those three are read, so that every part of the library
(:func:`~rsi_plugin.capture`, :func:`~rsi_plugin.ablate`, the criteria, the ablation
sweep) works on any family whose blocks it describes.

==============  ==================  ==========================  =========================
family          block type          Pre (output of)             In
==============  ==================  ==========================  =========================
``resnet``      ``BasicBlock``      ``bn2``                     ``downsample`` or input
``resnet``      ``Bottleneck``      ``bn3``                     ``downsample`` or input
``convnext``    ``CNBlock``         ``stochastic_depth``        the block's input
==============  ==================  ==========================  =========================

MobileNetV2 is not searched by default; attach :data:`MOBILENET_V2` (``Pre`` is the output of
``conv``, ``Post = In + Pre``). Its ``InvertedResidual`` blocks add their input only when the
stride is 1 and the widths agree, so the spec's ``residual`` predicate (:func:`has_skip`) leaves
the others out: a spec can say which instances of its types are residual.

In both families Post is the block's own output. ConvNeXt's ``CNBlock`` computes
``result = stochastic_depth(layer_scale * block(x)); result += x`` *in place*, as
torchvision's ResNet blocks do, so Pre must be cloned before it is kept (the library
does).

Block names: a spec may name blocks with a regular expression on the block's path
(ResNet: ``layer<S>.<I>`` is ``"<S>.<I>"``, the paper's names). Without one, blocks are
named ``"<stage>.<index>"`` where ``stage`` counts, from 1, the containers holding the
model's blocks in execution order and ``index`` is the block's name in its container:
ConvNeXt's ``features.1.0`` is ``"1.0"``, ``features.3.2`` is ``"2.2"``,
``features.7.0`` is ``"4.0"``.

A model uses :data:`DEFAULT_SPECS` unless specs are attached to it with
:func:`attach_specs` (kept on the model, so nothing global changes)::

    spec = BlockSpec(family="mine", block_types=(MyBlock,), pre="norm2",
                     shortcut="proj", channels="norm2.num_features")
    attach_specs(model, [spec])
    rsi.capture(model, x, blocks="all")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn
from torchvision.models.convnext import CNBlock
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

from rsi_plugin.errors import ConfigError, InputTypeError, RSIError, UnknownNameError
from rsi_plugin.core.wrapped import unwrap

__all__ = [
    "ACTIVATIONS",
    "BlockSpec",
    "RESNET_BASIC",
    "RESNET_BOTTLENECK",
    "CONVNEXT",
    "MOBILENET_V2",
    "has_skip",
    "DEFAULT_SPECS",
    "attach_specs",
    "model_specs",
    "activation_fn",
]

Activation = Literal["relu", "identity"]

#: Post activations a spec may name, and what they compute.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "identity": lambda x: x,
}

_SPECS_ATTR = "rsi_specs"


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function of a post activation name (``"relu"`` or ``"identity"``).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _resolve_attr(root: nn.Module, dotted: str):
    value = root
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@dataclass(frozen=True)
class BlockSpec:
    """Where In, Pre and Post are read in one kind of residual block.

    Paths are dotted and relative to the block (``""`` is the block itself); digits index
    ``nn.Sequential`` children as ``get_submodule`` does.

    Attributes:
        family (str): family name, e.g. ``"resnet"``; stored on each block.
        block_types (tuple of type): module classes this spec describes (``isinstance``,
            so subclasses match too).
        pre (str): module whose *output* is Pre, the branch's last value before the sum.
        shortcut (str, optional): module that, when the block has it (and it is not
            ``None``), produces In; otherwise In is the block's input.
        post (str): module whose output is Post, ``activation(in + pre)``; ``""`` (the
            default) is the block's own output.
        activation (str): ``"relu"`` or ``"identity"``, so that Post ``= activation(Sum)``.
        channels (str): dotted attribute path, relative to the block, of the number of
            channels of In / Pre / Post, e.g. ``"bn2.num_features"``.
        shortcut_after_branch (bool): whether the shortcut module runs after ``pre``
            (torchvision's ResNet blocks call ``downsample`` last), which fixes the order
            nnsight must read the nodes in.
        name_pattern (str, optional): regular expression with two groups (stage, index)
            matched against the whole block path to name the block ``"<stage>.<index>"``;
            ``None`` names blocks by stage counting (see the module docstring).
        residual (callable, optional): ``residual(block) -> bool``, whether an instance of
            ``block_types`` really adds a skip connection; instances for which it is false are
            not residual blocks and are left out (MobileNetV2's ``InvertedResidual`` has a
            skip only when ``use_res_connect``). ``None`` (the default): every instance is.
    """

    family: str
    block_types: tuple[type, ...]
    pre: str
    shortcut: str | None = None
    post: str = ""
    activation: Activation = "relu"
    channels: str = ""
    shortcut_after_branch: bool = True
    name_pattern: str | None = None
    residual: Callable[[nn.Module], bool] | None = None

    def __post_init__(self) -> None:
        if not self.family or not isinstance(self.family, str):
            raise ConfigError("a BlockSpec needs a family name, e.g. 'resnet'")
        types = self.block_types if isinstance(self.block_types, tuple) else (self.block_types,)
        if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
            raise InputTypeError(f"block_types must be nn.Module classes, got {self.block_types!r}")
        object.__setattr__(self, "block_types", types)
        if not self.pre:
            raise ConfigError("a BlockSpec needs the path of Pre (e.g. 'bn2'); '' would be the block's output")
        activation_fn(self.activation)
        if not self.channels:
            raise ConfigError("a BlockSpec needs `channels`, the attribute path of the channel count "
                             "(e.g. 'bn2.num_features')")
        if self.name_pattern is not None and re.compile(self.name_pattern).groups != 2:
            raise ConfigError(f"name_pattern must have two groups (stage, index), got {self.name_pattern!r}")
        if self.residual is not None and not callable(self.residual):
            raise InputTypeError(f"residual must be a callable block -> bool (or None), got {self.residual!r}")

    def matches(self, module: nn.Module) -> bool:
        """Whether ``module`` is a block of this spec: one of its types and, with a
        ``residual`` predicate, an instance the predicate accepts."""
        if not isinstance(module, self.block_types):
            return False
        return self.residual is None or bool(self.residual(module))

    def shortcut_of(self, block: nn.Module) -> str | None:
        """The shortcut path if ``block`` has that module (not ``None``), else ``None``."""
        if self.shortcut is None:
            return None
        try:
            module = block.get_submodule(self.shortcut)
        except AttributeError:
            return None
        return self.shortcut if isinstance(module, nn.Module) else None

    def channels_of(self, block: nn.Module) -> int:
        """The number of channels of the block's nodes.

        Raises:
            ValueError: if the attribute path does not lead to an integer.
        """
        try:
            value = _resolve_attr(block, self.channels)
        except AttributeError as error:
            raise RSIError(f"{self.family} spec: block {type(block).__name__} has no attribute "
                             f"{self.channels!r} to read its channel count from") from error
        if isinstance(value, bool) or not isinstance(value, int):
            raise RSIError(f"{self.family} spec: {self.channels!r} of {type(block).__name__} is "
                             f"{value!r}, not a channel count")
        return value

    def check(self, block: nn.Module) -> None:
        """Check that the paths of the spec exist in ``block``.

        Raises:
            ValueError: naming the missing path.
        """
        for what, path in (("pre", self.pre), ("post", self.post)):
            if not path:
                continue
            try:
                block.get_submodule(path)
            except AttributeError as error:
                raise RSIError(f"{self.family} spec: block {type(block).__name__} has no module "
                                 f"{path!r} ({what})") from error


RESNET_BASIC = BlockSpec(
    family="resnet", block_types=(BasicBlock,), pre="bn2", shortcut="downsample",
    channels="bn2.num_features", name_pattern=r"layer(\d+)\.(\d+)",
)
RESNET_BOTTLENECK = BlockSpec(
    family="resnet", block_types=(Bottleneck,), pre="bn3", shortcut="downsample",
    channels="bn3.num_features", name_pattern=r"layer(\d+)\.(\d+)",
)
CONVNEXT = BlockSpec(
    family="convnext", block_types=(CNBlock,), pre="stochastic_depth", shortcut=None,
    activation="identity", channels="block.0.in_channels",
)



def has_skip(block: nn.Module) -> bool:
    """Predicate for :data:`MOBILENET_V2`: the block adds its input (``use_res_connect``)."""
    return bool(getattr(block, "use_res_connect", False))


MOBILENET_V2 = BlockSpec(
    family="mobilenet_v2", block_types=(InvertedResidual,), pre="conv", shortcut=None,
    activation="identity", channels="out_channels", residual=has_skip,
)

#: The specs every model is searched with unless it carries its own.
DEFAULT_SPECS: tuple[BlockSpec, ...] = (RESNET_BOTTLENECK, RESNET_BASIC, CONVNEXT)


def attach_specs(model: nn.Module, specs: Sequence[BlockSpec]) -> nn.Module:
    """Describe a model's residual blocks with ``specs`` (kept on the model itself).

    Every later call on this model (``residual_blocks``, ``capture``, ``ablate``, ...) finds
    blocks with these specs instead of :data:`DEFAULT_SPECS`. Returns the model.

    Args:
        model (nn.Module): the model (an nnsight wrapper is unwrapped).
        specs (sequence of BlockSpec): the specs, tried in order on each module.

    Raises:
        TypeError: if an item is not a :class:`BlockSpec`.
        ValueError: if ``specs`` is empty.
    """
    module = unwrap(model)
    specs = tuple(specs) if not isinstance(specs, BlockSpec) else (specs,)
    if not specs:
        raise RSIError("no spec given; pass at least one BlockSpec")
    bad = [type(s).__name__ for s in specs if not isinstance(s, BlockSpec)]
    if bad:
        raise InputTypeError(f"specs must be BlockSpec instances, got {', '.join(bad)}")
    module.__dict__[_SPECS_ATTR] = specs
    return model


def model_specs(model: nn.Module) -> tuple[BlockSpec, ...]:
    """The specs ``model`` is searched with: its own (:func:`attach_specs`) or the defaults."""
    module = unwrap(model)
    return module.__dict__.get(_SPECS_ATTR, DEFAULT_SPECS)
