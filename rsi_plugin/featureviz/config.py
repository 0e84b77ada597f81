r"""How feature visualisations are rendered: :class:`FeatureVizConfig` and the paper's rules
for a block and node that it resolves (the jitter per block and node, :func:`paper_jitter`,
scaled to the image, :func:`scaled_jitter`) and the seed of each channel (:func:`channel_seed`).

A resolved config (:meth:`FeatureVizConfig.resolved`) is what the optimisation
(:mod:`rsi_plugin.featureviz.engine`) runs, and its :meth:`~FeatureVizConfig.cache_key` names
the on-disk records (:mod:`rsi_plugin.featureviz.cache`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rsi_plugin.core.blocks import ResidualBlock, check_nodes
from rsi_plugin.core.images import model_info
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.errors import ConfigError, InputTypeError, RSIError, UnknownNameError
from rsi_plugin.featureviz.param import TransformSpec
from rsi_plugin.paper import FZ_ANGLES, FZ_LR, FZ_STEPS, FZ_ZOOMS, Variant, check_variant, jitter_table
from rsi_plugin.paper import resolve as resolve_variant

__all__ = [
    "FeatureVizConfig",
    "paper_jitter",
    "scaled_jitter",
    "channel_seed",
    "FORMAT_VERSION",
    "JITTER_REFERENCE_SIZE",
    "OBJECTIVES",
    "PAD_MODES",
    "AUTOCAST_DTYPES",
    "MEMORY_FORMATS",
]

#: bump when a change of the algorithm makes cached records stale
FORMAT_VERSION = 2
#: the paper's jitters (:func:`paper_jitter`) are for images of this side
JITTER_REFERENCE_SIZE: int = 224
OBJECTIVES: tuple[str, ...] = ("neuron", "channel")
PAD_MODES: tuple[str, ...] = ("reflect", "constant", "replicate", "circular")
#: the values of ``FeatureVizConfig.autocast`` besides ``None``: the dtype the network runs in
AUTOCAST_DTYPES: tuple[str, ...] = ("bfloat16",)
#: the values of ``FeatureVizConfig.memory_format`` besides ``None``
MEMORY_FORMATS: tuple[str, ...] = ("channels_last",)
#: fields that enter the cache key only when they differ from their default, so that the key
#: (and every existing cache) of a config that leaves them alone is what it was before them
_KEY_ONLY_WHEN_SET: tuple[str, ...] = ("autocast", "memory_format")


# --------------------------------------------------------------------------- the paper's jitter

def paper_jitter(block_name: str, node: str, schedule: Literal["text", "code"] = "text") -> int:
    r"""The jitter the paper used for a block's node.

    ``schedule="text"`` (default) follows appendix 7.1: no jitter for the entire blocks 1.1
    and 2.0, 4 for 2.1 Pre and the entire block 3.0, 16 for everything else
    (the tables are :data:`rsi_plugin.paper.JITTER_TEXT` and :data:`rsi_plugin.paper.JITTER_CODE`).

    ``schedule="code"`` follows the paper's ``batch_process.sh``, which renders *modules*:
    In of a block without a downsample is the previous block's output and gets that
    module's jitter (2.1 In: 0 as ``layer2.0``; 3.1 In: 4 as ``layer3.0``), and 2.1 Post
    gets 4 (the text says 16). ``layer1.0`` (1.0 Post, 1.1 In) gets 0. Nodes the script
    never rendered (1.0 In and Pre) fall back to the text's value.

    Sum gets Post's jitter. Blocks of other models follow the same rules by name.

    Args:
        block_name (str): ``"<stage>.<index>"``, e.g. ``"2.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        schedule (str): ``"text"`` or ``"code"``.

    Returns:
        int: 0, 4 or 16.

    Raises:
        ValueError: unknown node or schedule.
    """
    check_nodes([node])
    return jitter_table(block_name, node, schedule)


def scaled_jitter(jitter: int, image_size: int) -> int:
    r"""A jitter given for 224-px images, scaled to ``image_size``: ``round(jitter * size / 224)``.

    The paper's jitter of 16 px is 7 % of its 224-px images but 25 % of a 64-px one; scaled,
    it is 5 px there (and 4 becomes 1, below the pad threshold of 4: scale and rotation only).

    Args:
        jitter (int): the jitter at 224 px.
        image_size (int): the image side.

    Returns:
        int.
    """
    return int(round(int(jitter) * int(image_size) / JITTER_REFERENCE_SIZE))


def channel_seed(seed: int, channel: int) -> int:
    """The seed of channel ``channel``'s generator, derived from ``(seed, channel)`` only.

    Derived with :class:`numpy.random.SeedSequence`, so nearby seeds and channels give
    unrelated streams. In, Pre and Post FZs of one channel rendered with the same ``seed``
    share their random draws; pass different seeds for independent draws.
    """
    state = np.random.SeedSequence([int(seed), int(channel)]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


# --------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class FeatureVizConfig:
    r"""How feature visualisations are rendered. Defaults are the paper's.

    Attributes:
        image_size (int, optional): side of the image; ``None``: the model's input size
            (``model.rsi_info.input_size``; 224 for ImageNet models).
        steps (int): optimisation steps (the paper's code: 2560).
        lr (float): Adam's learning rate (Lucent's default 0.05).
        objective (str): ``"neuron"``: the centre neuron ``(H // 2, W // 2)``;
            ``"channel"``: the mean over the channel's map.
        jitter (int, optional): ``None``: :func:`paper_jitter` of the block and node;
            ``d >= 4``: pad, jitter ``d``, scale, rotate, jitter ``d // 2``, crop;
            ``d < 4``: scale and rotate only.
        variant (str): ``"text"`` (default) or ``"code"``: the paper's text or its code
            (:func:`rsi_plugin.paper.resolve`); sets ``jitter_schedule`` and
            ``paper_compat`` where they are ``None``.
        jitter_schedule (str, optional): ``"text"`` (appendix 7.1) or ``"code"`` (the
            paper's script) when ``jitter`` is ``None``; ``None``: the variant's.
        scales (tuple of float): random zooms (the paper's ``[1, .975, 1.025, .95, 1.05]``,
            :data:`rsi_plugin.paper.FZ_ZOOMS`).
        angles (tuple of float): random rotations in degrees (the paper's -5..5).
        pad_mode (str): mode of the pad (Lucent's ``pad`` default ``"reflect"``).
        seed (int): seed; channel ``c`` draws from :func:`channel_seed` ``(seed, c)``.
        channels_per_batch (int): the most channels in the running batch (does not change
            results beyond float rounding).
        fft (bool): FFT-spectrum parameterisation (else pixels).
        decorrelate (bool): Lucent's colour decorrelation.
        decay_power (float): spectrum decay (Lucent: 1).
        sd (float): standard deviation of the initial parameters (Lucent: 0.01).
        paper_compat (bool, optional): Lucent's behaviour: read Pre as Lucent does (a
            reference to bn's output, which the block's in-place sum and ReLU turn into
            Post), and no pre-activation substitution (``pre_activation`` is off);
            ``None``: the variant's (``"code"``: True).
        early_stop (bool): stop each channel once its objective plateaus
            (:func:`plateaued`), with ``steps`` as the cap; ``False``: exactly ``steps``
            steps (the paper's fixed count).
        plateau_window (int): ``w``: the plateau rule compares the mean objective of the
            last ``w`` steps with the ``w`` before (``min(w, steps // 2)`` for short runs);
            checked every ``w`` steps from ``2 w`` on.
        plateau_rtol (float): the objective has plateaued when that gain is at most this
            fraction of its magnitude. A channel that has not plateaued at the end of the
            run is ``"unconverged"``.
        scale_jitter (bool): scale the paper's jitter (given for 224 px) to ``image_size``
            (:func:`scaled_jitter`) when ``jitter`` is ``None``; ``False``: the paper's
            pixels at any size. An explicit ``jitter`` is never scaled.
        pre_activation (bool): for a node behind a ReLU (Post; In when it is the previous
            block's output, see :func:`relu_source`), optimise the pre-ReLU sum while the
            target is <= 0, so that a channel that starts at 0 gets a gradient. Where the
            target is > 0 the objective is the target itself. Off with ``paper_compat``.
        autocast (str, optional): ``"bfloat16"``: the network's forward and backward of each
            step run under :func:`torch.autocast` in bfloat16 (CPU and CUDA); the image
            parameters, their FFT and transforms, Adam and the final objective stay float32.
            ``None`` (default): float32 throughout. It changes the images (not just the last
            bits), so it is part of the cache key; ``benchmarks/fz_step_speed.py`` measures
            its speed and verdict agreement.
        memory_format (str, optional): ``"channels_last"``: the model's 4-D parameters and the
            image batch are in channels-last memory format during the optimisation (the
            model's own format is restored after); ``None`` (default): as they are. Part of
            the cache key when set (other kernels, other rounding).
    """

    image_size: int | None = None
    steps: int = FZ_STEPS
    lr: float = FZ_LR
    objective: Literal["neuron", "channel"] = "neuron"
    jitter: int | None = None
    variant: Variant = "text"
    jitter_schedule: Variant | None = None
    scales: tuple[float, ...] = FZ_ZOOMS
    angles: tuple[float, ...] = FZ_ANGLES
    pad_mode: str = "reflect"
    seed: int = 0
    channels_per_batch: int = 32
    fft: bool = True
    decorrelate: bool = True
    decay_power: float = 1.0
    sd: float = 0.01
    paper_compat: bool | None = None
    early_stop: bool = True
    plateau_window: int = 64
    plateau_rtol: float = 0.01
    scale_jitter: bool = True
    pre_activation: bool = True
    autocast: str | None = None
    memory_format: str | None = None

    def __post_init__(self) -> None:
        def integer(name: str, low: int, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise RSIError(f"{name} must be an integer >= {low}{' or None' if allow_none else ''}, got {value!r}")
        integer("image_size", 16, allow_none=True)
        integer("steps", 1)
        integer("jitter", 0, allow_none=True)
        integer("seed", 0)
        integer("channels_per_batch", 1)
        integer("plateau_window", 1)
        for name in ("paper_compat", "early_stop", "scale_jitter", "pre_activation", "fft", "decorrelate"):
            if name == "paper_compat" and self.paper_compat is None:
                continue
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InputTypeError(f"{name} must be True or False{' or None' if name == 'paper_compat' else ''}, "
                                f"got {getattr(self, name)!r}")
        if isinstance(self.plateau_rtol, bool) or not float(self.plateau_rtol) >= 0:
            raise ConfigError(f"plateau_rtol must be a number >= 0, got {self.plateau_rtol!r}")
        for name in ("lr", "sd"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.objective not in OBJECTIVES:
            raise UnknownNameError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        check_variant(self.variant)
        if self.jitter_schedule is not None:
            check_variant(self.jitter_schedule, "jitter_schedule")
        if self.pad_mode not in PAD_MODES:
            raise UnknownNameError(f"unknown pad_mode {self.pad_mode!r}; valid: {', '.join(PAD_MODES)}")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ConfigError(f"unknown autocast {self.autocast!r}; valid: None, {', '.join(AUTOCAST_DTYPES)}")
        if self.memory_format is not None and self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"unknown memory_format {self.memory_format!r}; valid: None, "
                              f"{', '.join(MEMORY_FORMATS)}")
        scales = tuple(float(s) for s in self.scales)
        angles = tuple(float(a) for a in self.angles)
        if not scales or min(scales) <= 0:
            raise ConfigError(f"scales must be a non-empty sequence of positive numbers, got {self.scales!r}")
        if not angles:
            raise ConfigError("angles must be a non-empty sequence of degrees")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "angles", angles)

    def with_variant(self) -> "FeatureVizConfig":
        """This config with ``jitter_schedule`` and ``paper_compat`` taken from ``variant``
        where they are ``None`` (:func:`rsi_plugin.paper.resolve`); given values are kept. A
        config whose switches are set (as :meth:`ScanConfig.resolved` leaves it) is returned as
        it is: the variant is resolved once on the way through a scan."""
        if self.jitter_schedule is not None and type(self.paper_compat) is bool:
            return self
        choices = resolve_variant(self.variant)
        schedule = self.jitter_schedule if self.jitter_schedule is not None else choices.jitter_schedule
        compat = bool(self.paper_compat) if self.paper_compat is not None else choices.fz_paper_compat
        return dataclasses.replace(self, jitter_schedule=schedule, paper_compat=compat)

    def resolved(self, model: nn.Module, block: ResidualBlock | str, node: str) -> "FeatureVizConfig":
        """This config with the variant's switches (:meth:`with_variant`), ``image_size`` and
        ``jitter`` filled in for a model, block and node.

        Raises:
            ValueError: a pad (``jitter >= 4``) that is not smaller than the image.
        """
        cfg = self.with_variant()
        name = block.name if isinstance(block, ResidualBlock) else str(block)
        size = cfg.image_size if cfg.image_size is not None else int(model_info(unwrap(model, check=True)).input_size)
        jitter = cfg.jitter
        if jitter is None:
            jitter = paper_jitter(name, node, cfg.jitter_schedule)
            if cfg.scale_jitter:
                jitter = scaled_jitter(jitter, size)
        if jitter >= 4 and jitter >= size:
            raise RSIError(f"jitter {jitter} needs an image larger than {jitter} px, got image_size {size}")
        return dataclasses.replace(cfg, image_size=int(size), jitter=int(jitter),
                                   pre_activation=bool(cfg.pre_activation and not cfg.paper_compat))

    def transform_spec(self) -> TransformSpec:
        """The transforms of a resolved config."""
        if self.jitter is None:
            raise RSIError("resolve the config first (FeatureVizConfig.resolved)")
        return TransformSpec(jitter=int(self.jitter), scales=self.scales, angles=self.angles, pad_mode=self.pad_mode)

    def cache_key(self) -> dict[str, Any]:
        """What determines a channel's result: every field but ``channels_per_batch`` and
        ``variant`` (which only sets ``jitter_schedule`` and ``paper_compat``, recorded
        themselves; the jitter schedule is left out too once the jitter is resolved), the
        cache format version, the torch version and torch's intra-op thread count (CPU
        results differ in the last bits between thread counts and versions, and the
        optimisation amplifies that). ``autocast`` and ``memory_format`` are in it only when
        set (not ``None``), so the key of a config without them is the one it always was."""
        key = dataclasses.asdict(self.with_variant())
        for name in _KEY_ONLY_WHEN_SET:
            if key[name] is None:
                key.pop(name)
        key.pop("channels_per_batch")
        key.pop("variant")
        if self.jitter is not None:  # resolved: the schedule no longer matters
            key.pop("jitter_schedule")
        key["format"] = FORMAT_VERSION
        key["torch"] = torch.__version__
        key["threads"] = int(torch.get_num_threads())
        return key
