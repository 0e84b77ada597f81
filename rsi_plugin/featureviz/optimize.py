r"""Feature visualisations (FZs) of residual nodes: many channels per batch, stopped at the node.

For each channel ``c`` of a node (In, Pre, Post — or Sum) of a residual block, an image in
[0, 1] is optimised to excite the channel's centre neuron ``act[c, H // 2, W // 2]`` (the
convention of Lucent's ``objectives.neuron``), as the paper does with Lucent
(§2.2, appendix 7.1). What is the same as the paper's Lucent runs:

* the image parameterisation (FFT spectrum, colour decorrelation, sigmoid), Adam at
  ``lr = 0.05``, 2560 steps, and the paper's code's transforms (pad, jitter, random scale
  from ``[1, .975, 1.025, .95, 1.05]``, random rotation in -5..5 degrees, jitter / 2,
  centre crop; only scale and rotation below jitter 4) — see :mod:`rsi_plugin.featureviz.param`
  for the exact semantics and the interpolation-level deviations;
* the paper's jitter per block and node (:func:`paper_jitter`).

What is different, and why:

* **Batched.** Lucent renders one channel per call. Here each batch element optimises its
  own channel; the loss is the *sum* over elements, so each element's gradient (and its
  Adam update, which is element-wise) is exactly what it would be alone. Every random draw
  of channel ``c`` — its initial spectrum and each step's transform — comes from a
  generator seeded by ``(seed, c)`` (:func:`channel_seed`), and each element is
  transformed with its own draw, so a channel's image does not depend on which channels
  share its batch. BatchNorm runs in eval mode (per sample). The batch is a running one
  (continuous batching): a channel whose objective has plateaued leaves it, and the next
  waiting channel of the node joins at the next plateau-window boundary with its own step
  count and Adam state, so no step is spent on a finished image.
* **Stopped at the node.** The forward is run with plain PyTorch forward hooks
  (:class:`~rsi_plugin.access.hooks.NodeProbe`, the rules of :mod:`rsi_plugin.access.plan`) that read the node and raise a private exception, so nothing after
  the node is computed (Lucent always runs the whole network and hooks every module).
  nnsight is not used here: the optimisation loop needs autograd through the value for
  thousands of steps, and an nnsight trace costs about 1.5 ms of set-up per call on top of
  the forward.
* **Pre is Pre.** torchvision's blocks add the identity into bn2's (bn3's) output in place
  and apply an in-place ReLU. Lucent's hook keeps a *reference* to that output, so what
  it optimises as ``layer3_1_bn2`` is Post. Here Pre is a clone of bn's output, read
  before the sum. ``paper_compat=True`` reproduces Lucent's reading (a reference to bn's
  output, evaluated after the block has run), to compare with published FZs.
* The image size defaults to the model's input size (:func:`rsi_plugin.model_info`; 224
  for ImageNet models) and is not upsampled to 224 as Lucent's ``render_vis`` does for
  smaller images.

During a call the model is put in eval mode and its parameters stop requiring gradients;
both are restored afterwards (also when the call raises), and no ``.grad`` is accumulated.
On CUDA, ``grid_sample``'s backward is not deterministic, so equal seeds give equal images
on the CPU only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rsi_plugin.core.channels import check_channels as validate_channels
from rsi_plugin.featureviz.cache import (
    RecordLocks,
    config_hash,
    model_fingerprint,
    read_record,
    record_path,
    write_record,
)
from rsi_plugin.featureviz.param import (
    ImageParam,
    TransformSpec,
    draw_transforms,
    init_params,
    transform_images,
    transform_thetas,
)
from rsi_plugin.core.images import model_info
from rsi_plugin.core.tensors import check_runnable
from rsi_plugin.core.tensors import model_device as _device
from rsi_plugin.paper import FZ_ANGLES, FZ_LR, FZ_STEPS, FZ_ZOOMS, VARIANTS, Variant, check_variant, jitter_table
from rsi_plugin.paper import resolve as resolve_variant
from rsi_plugin.access.hooks import NodeProbe, relu_source
from rsi_plugin.core.blocks import ResidualBlock, check_nodes, get_block, residual_blocks
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.errors import ConfigError, InputTypeError, RSIError, UnknownNameError

__all__ = [
    "FeatureVizConfig",
    "FeatureVizResult",
    "Visualization",
    "NodeProbe",
    "visualize",
    "render",
    "paper_jitter",
    "scaled_jitter",
    "relu_source",
    "fz_status",
    "plateaued",
    "STATUSES",
    "DEAD_ACTIVATION",
    "FLAT_STD",
    "channel_seed",
    "model_fingerprint",
    "OBJECTIVES",
]

logger = logging.getLogger(__name__)

#: bump when a change of the algorithm makes cached records stale
FORMAT_VERSION = 2
#: the statuses of an FZ (:func:`fz_status`), best first
STATUSES: tuple[str, ...] = ("ok", "dead", "flat", "unconverged")
#: an FZ whose objective on its final image is at or below this is ``"dead"``: it does not
#: drive its own target (a ReLU node stuck at 0, a Pre that stayed negative)
DEAD_ACTIVATION: float = 0.0
#: an FZ whose pixel standard deviation (over colours and pixels, [0, 1] scale) is below this
#: is ``"flat"``: the initial noise (std ~0.0025) or a uniform colour, not an image
FLAT_STD: float = 0.01
#: the paper's jitters (:func:`paper_jitter`) are for images of this side
JITTER_REFERENCE_SIZE: int = 224
OBJECTIVES: tuple[str, ...] = ("neuron", "channel")
JITTER_SCHEDULES: tuple[str, ...] = VARIANTS
PAD_MODES: tuple[str, ...] = ("reflect", "constant", "replicate", "circular")


# --------------------------------------------------------------------------- the paper's jitter

def _split_name(block_name: str) -> tuple[int, int] | None:
    parts = str(block_name).split(".")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


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
        where they are ``None`` (:func:`rsi_plugin.paper.resolve`); given values are kept."""
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
        optimisation amplifies that)."""
        key = dataclasses.asdict(self.with_variant())
        key.pop("channels_per_batch")
        key.pop("variant")
        if self.jitter is not None:  # resolved: the schedule no longer matters
            key.pop("jitter_schedule")
        key["format"] = FORMAT_VERSION
        key["torch"] = torch.__version__
        key["threads"] = int(torch.get_num_threads())
        return key


# --------------------------------------------------------------------------- optimisation

@dataclass(frozen=True)
class Visualization:
    """What :func:`visualize` returns; unpacks as ``images, activations = visualize(...)``.

    Attributes:
        images (Tensor): ``[K, 3, H, W]`` in [0, 1], on the model's device.
        activations (Tensor): ``[K]``, each channel's objective on its final, untransformed
            image (the centre neuron for ``"neuron"``; the value that was optimised, so the
            aliased Post for Pre with ``paper_compat=True``).
        history (Tensor): ``[steps, K]``, the optimised objective on each step's
            transformed image (the pre-ReLU value where it stood in for a target <= 0);
            NaN after a channel's ``steps_used``.
        status (list of str): per channel, ``"ok"``, ``"dead"``, ``"flat"`` or
            ``"unconverged"`` (:func:`fz_status`).
        steps_used (Tensor): ``[K]`` int64, the steps each channel's image got.
    """

    images: torch.Tensor
    activations: torch.Tensor
    history: torch.Tensor
    status: list[str] = field(default_factory=list)
    steps_used: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.images, self.activations))


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode, parameters not requiring grad; both restored on exit."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p in params:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def plateau_window(steps: int, window: int) -> int:
    """The window of the plateau rule for a run of ``steps``: ``min(window, steps // 2)`` (0:
    too short to tell)."""
    return min(int(window), int(steps) // 2)


def plateaued(history: torch.Tensor, window: int, rtol: float) -> torch.Tensor:
    r"""Whether each column's objective has stopped rising: the mean of the last ``window``
    steps exceeds the mean of the ``window`` before by at most ``rtol`` times the larger of
    their magnitudes.

    Args:
        history (Tensor): ``[t, K]`` objective per step, ``t >= 2 * window``.
        window (int): ``w`` >= 1.
        rtol (float): the tolerated relative gain.

    Returns:
        bool Tensor ``[K]`` (False where the history is not finite).
    """
    if window < 1 or history.shape[0] < 2 * window:
        return torch.zeros(history.shape[1], dtype=torch.bool, device=history.device)
    last = history[-window:].mean(0)
    before = history[-2 * window:-window].mean(0)
    scale = torch.maximum(last.abs(), before.abs())
    return torch.isfinite(last) & torch.isfinite(before) & (last - before <= rtol * scale)


def fz_status(activations: torch.Tensor, images: torch.Tensor, converged: torch.Tensor) -> list[str]:
    r"""The status of each FZ, the first that applies of:

    * ``"dead"``: its objective on its final image is at or below :data:`DEAD_ACTIVATION`
      (or not finite): the image does not drive its own target;
    * ``"flat"``: its pixel standard deviation is below :data:`FLAT_STD`;
    * ``"unconverged"``: the objective had not plateaued (:func:`plateaued`) when the run
      ended;
    * ``"ok"``.

    Args:
        activations (Tensor): ``[K]`` the objective on each final image.
        images (Tensor): ``[K, 3, H, W]`` in [0, 1].
        converged (Tensor): ``[K]`` bool.

    Returns:
        list of str.
    """
    acts = activations.detach().float().cpu()
    spread = images.detach().float().flatten(1).std(1).cpu()
    done = converged.detach().bool().cpu()
    out = []
    for a, sd, ok in zip(acts.tolist(), spread.tolist(), done.tolist()):
        if not np.isfinite(a) or a <= DEAD_ACTIVATION:
            out.append("dead")
        elif not sd >= FLAT_STD:
            out.append("flat")
        elif not ok:
            out.append("unconverged")
        else:
            out.append("ok")
    return out


def _objective(act: torch.Tensor, rows: torch.Tensor, channels: torch.Tensor, objective: str) -> torch.Tensor:
    maps = act[rows, channels]  # [K, h, w]
    if objective == "neuron":
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2]
    return maps.mean(dim=(1, 2))


def check_channels(channels: Sequence[int] | torch.Tensor | None, block: ResidualBlock) -> list[int]:
    """Validated channel indices of a block (``None``: all of them).

    Raises:
        TypeError: a non-integer. IndexError: out of range. ValueError: duplicates or none.
    """
    return validate_channels(channels, block.channels, where=f"block {block.name}")


def _prepare(model: nn.Module, block: str | ResidualBlock, node: str, channels: Sequence[int] | torch.Tensor | None,
             config: "FeatureVizConfig | None", local: bool = True
             ) -> tuple[nn.Module, ResidualBlock, list[int], "FeatureVizConfig"]:
    """The unwrapped model, the block, the validated channels and the resolved config of a call
    (``local``: the optimisation runs here, so the model must hold float32 weights, not meta ones)."""
    module = unwrap(model, check=True)
    target = get_block(residual_blocks(module), block)
    check_nodes([node])
    if local:
        check_runnable(module, torch.float32, "feature visualisation")
    return module, target, check_channels(channels, target), (config or FeatureVizConfig()).resolved(module, target, node)


class _RowAdam:
    r"""Adam with its own step count per batch row, so that rows can join and leave a batch.

    The arithmetic of ``torch.optim.Adam`` (its defaults: ``betas=(0.9, 0.999)``,
    ``eps=1e-8``, no weight decay), with the bias corrections looked up per row from a
    table of the ``steps`` values (computed in float64, as Adam computes them in Python):
    a row's update is the one Adam makes to that element when it is optimised alone.

    Args:
        lr (float): the learning rate.
        steps (int): the largest step count of a row.
        device: where the tables live.
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __init__(self, lr: float, steps: int, device: torch.device) -> None:
        t = torch.arange(1, int(steps) + 1, dtype=torch.float64)
        self.step_size = (float(lr) / (1.0 - self.betas[0] ** t)).to(device=device, dtype=torch.float32)
        self.bias2_sqrt = torch.sqrt(1.0 - self.betas[1] ** t).to(device=device, dtype=torch.float32)

    @torch.no_grad()
    def step(self, params: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
             t: torch.Tensor) -> None:
        """One update in place. ``t``: ``[K]`` long, each row's 0-based step (on the device)."""
        shape = (-1,) + (1,) * (params.dim() - 1)
        exp_avg.lerp_(grad, 1.0 - self.betas[0])
        exp_avg_sq.mul_(self.betas[1]).addcmul_(grad, grad, value=1.0 - self.betas[1])
        denom = (exp_avg_sq.sqrt() / self.bias2_sqrt[t].view(shape)).add_(self.eps)
        # as addcdiv_(exp_avg, denom, value=-step_size) evaluates: (value * exp_avg) / denom
        params.sub_(self.step_size[t].view(shape) * exp_avg / denom)


@dataclass
class _Rows:
    """The rows of the running batch: one channel each, with its own step count.

    ``channel`` and ``start`` (the global step at which the row joined) live on the host,
    so the host knows every row's step without reading the device; the rest on the device.
    """

    channel: list[int]
    start: list[int]
    params: torch.Tensor  # [K, ...] the image parameters
    exp_avg: torch.Tensor  # Adam's moments, like params
    exp_avg_sq: torch.Tensor
    thetas: torch.Tensor  # [K, steps, 2, 3] every step's transform
    history: torch.Tensor  # [K, steps] the objective per step (NaN where not run)
    t: torch.Tensor  # [K] long, each row's 0-based step
    index: torch.Tensor  # [K] long, each row's channel

    def __len__(self) -> int:
        return len(self.channel)

    def take(self, keep: torch.Tensor, kept: list[int]) -> "_Rows":
        return _Rows([self.channel[i] for i in kept], [self.start[i] for i in kept], self.params[keep],
                     self.exp_avg[keep], self.exp_avg_sq[keep], self.thetas[keep], self.history[keep],
                     self.t[keep], self.index[keep])

    def join(self, other: "_Rows") -> "_Rows":
        return _Rows(self.channel + other.channel, self.start + other.start,
                     *(torch.cat([a, b]) for a, b in zip(
                         (self.params, self.exp_avg, self.exp_avg_sq, self.thetas, self.history, self.t, self.index),
                         (other.params, other.exp_avg, other.exp_avg_sq, other.thetas, other.history, other.t,
                          other.index))))


def _new_rows(channels: list[int], start: int, cfg: FeatureVizConfig, spec: TransformSpec,
              device: torch.device) -> _Rows:
    """Rows for channels joining the batch at global step ``start``: each channel's initial
    parameters, then its every step's transform, from its own generator (:func:`channel_seed`)."""
    size, steps = int(cfg.image_size), int(cfg.steps)
    generators = [torch.Generator().manual_seed(channel_seed(cfg.seed, c)) for c in channels]
    params = init_params(generators, size, fft=cfg.fft, sd=cfg.sd).to(device)
    draws = torch.stack([draw_transforms(g, steps, spec) for g in generators])  # [K, steps, 6]
    thetas = transform_thetas(draws, size, spec).to(device=device, dtype=torch.float32)
    k = len(channels)
    return _Rows(list(channels), [start] * k, params, torch.zeros_like(params), torch.zeros_like(params), thetas,
                 torch.full((k, steps), float("nan"), device=device), torch.zeros(k, dtype=torch.long, device=device),
                 torch.tensor(channels, dtype=torch.long, device=device))


def _last_windows(history: torch.Tensor, ends: list[int], window: int) -> torch.Tensor:
    """``[2 window, K]``: each row's objective over its last ``2 window`` steps before ``ends[k]``."""
    offsets = torch.tensor([[e - 2 * window] for e in ends], dtype=torch.long) + torch.arange(2 * window)
    return torch.gather(history, 1, offsets.to(history.device)).T


def _optimize_stream(model: nn.Module, block: ResidualBlock, node: str, channels: list[int], cfg: FeatureVizConfig,
                     width: int | None = None) -> Iterator[tuple[list[int], Visualization]]:
    r"""Optimise channels of one node in a running batch of at most ``width`` rows (``cfg`` resolved).

    Continuous batching: a channel leaves the batch as soon as it is finished (its objective
    plateaued, or it reached ``cfg.steps``), and the next waiting channel takes its place
    at the next window boundary (a multiple of the plateau window), so no step is spent on
    a finished image. Every row keeps its own step count, random draws and Adam state
    (:class:`_RowAdam`), so a channel's image does not depend on which channels share its
    batch or when it joined (up to float rounding of batched kernels).

    The host reads the device at most once per plateau window (the plateau test) and when
    channels finish; a step itself never waits for the device.

    Yields:
        ``(channels, Visualization)`` for each group of channels that finished together.
    """
    device = _device(model)
    steps = int(cfg.steps)
    width = int(width or cfg.channels_per_batch)
    spec = cfg.transform_spec()
    image_of = ImageParam(int(cfg.image_size), fft=cfg.fft, decorrelate=cfg.decorrelate,
                          decay_power=cfg.decay_power, device=device)
    info = model_info(model)
    mean = torch.tensor(info.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(info.std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    window = plateau_window(steps, cfg.plateau_window)
    adam = _RowAdam(cfg.lr, steps, device)
    waiting = list(channels)
    rows: _Rows | None = None
    step = 0  # the global step: rows join only where it is a multiple of the window
    with _frozen(model), NodeProbe(model, block, node, cfg.paper_compat, cfg.pre_activation) as probe:
        while waiting or rows is not None:
            room = width - (len(rows) if rows is not None else 0)
            if waiting and room > 0 and (window == 0 or step % window == 0):
                joining = _new_rows(waiting[:room], step, cfg, spec, device)
                del waiting[:room]
                rows = joining if rows is None else rows.join(joining)
            if rows is None:  # all finished off a boundary: wait for the next one (no work)
                step += window - step % window
                continue
            k = len(rows)
            arange = torch.arange(k, device=device)
            params = rows.params.requires_grad_(True)
            with torch.enable_grad():
                seen = transform_images(image_of(params), rows.thetas[arange, rows.t], spec)
                target = _objective(probe((seen - mean) / std), arange, rows.index, cfg.objective)
                value = target
                if probe.pre_activation is not None:  # a ReLU node: climb its pre-activation while it is <= 0
                    value = torch.where(target > 0, target,
                                        _objective(probe.pre_activation, arange, rows.index, cfg.objective))
                (grad,) = torch.autograd.grad(-value.sum(), params)
            params.requires_grad_(False)
            adam.step(params, grad, rows.exp_avg, rows.exp_avg_sq, rows.t)
            rows.history[arange, rows.t] = value.detach()
            rows.t += 1
            step += 1
            ran = [step - s for s in rows.start]  # each row's steps, known on the host
            finished = {i for i, t in enumerate(ran) if t >= steps}
            if cfg.early_stop and window and step % window == 0:
                test = [i for i, t in enumerate(ran) if 2 * window <= t < steps]
                if test:  # the one read of the device per window
                    flat = plateaued(_last_windows(rows.history[test], [ran[i] for i in test], window),
                                     window, cfg.plateau_rtol).tolist()
                    finished.update(i for i, f in zip(test, flat) if f)
            if finished:
                done = sorted(finished)
                yield [rows.channel[i] for i in done], _finish_rows(rows, done, [ran[i] for i in done], steps,
                                                                    window, cfg, image_of, probe, mean, std)
                kept = [i for i in range(k) if i not in finished]
                rows = rows.take(torch.tensor(kept, dtype=torch.long, device=device), kept) if kept else None


def _finish_rows(rows: _Rows, done: list[int], ran: list[int], steps: int, window: int, cfg: FeatureVizConfig,
                 image_of: ImageParam, probe: NodeProbe, mean: torch.Tensor, std: torch.Tensor) -> Visualization:
    """The result of finished rows: final image, its objective, history and status. A row
    that stopped before ``steps`` plateaued; one that ran them all is tested once more."""
    device = rows.params.device
    which = torch.tensor(done, dtype=torch.long, device=device)
    history = rows.history[which]  # [F, steps]
    converged = torch.tensor([t < steps for t in ran], dtype=torch.bool, device=device)
    capped = [j for j, t in enumerate(ran) if t >= steps]
    if capped and window:
        converged[capped] = plateaued(_last_windows(history[capped], [ran[j] for j in capped], window),
                                      window, cfg.plateau_rtol)
    with torch.no_grad():
        images = image_of(rows.params[which])
        final = _objective(probe((images - mean) / std), torch.arange(len(done), device=device), rows.index[which],
                           cfg.objective)
    return Visualization(images, final, history[:, :max(ran)].T, fz_status(final, images, converged),
                         torch.tensor(ran, dtype=torch.long))


def _collect(parts: Iterator[tuple[list[int], Visualization]], channels: list[int],
             bar: Any = None) -> Visualization:
    """One :class:`Visualization` of ``channels``, in that order, from the groups of
    :func:`_optimize_stream`."""
    found: dict[int, tuple[Visualization, int]] = {}
    for done, vis in parts:
        found.update({c: (vis, k) for k, c in enumerate(done)})
        if bar is not None:
            bar.update(len(done))
    run = max(int(found[c][0].history.shape[0]) for c in channels)

    def history(c: int) -> torch.Tensor:
        vis, k = found[c]
        return F.pad(vis.history[:, k], (0, run - vis.history.shape[0]), value=float("nan"))

    return Visualization(torch.stack([found[c][0].images[k] for c in channels for k in [found[c][1]]]),
                         torch.stack([found[c][0].activations[k] for c in channels for k in [found[c][1]]]),
                         torch.stack([history(c) for c in channels], dim=1),
                         [found[c][0].status[found[c][1]] for c in channels],
                         torch.stack([found[c][0].steps_used[found[c][1]] for c in channels]))


def _optimize_batch(model: nn.Module, block: ResidualBlock, node: str, channels: list[int],
                    cfg: FeatureVizConfig) -> Visualization:
    """Optimise some channels together, all of them in one batch (``cfg`` resolved)."""
    return _collect(_optimize_stream(model, block, node, list(channels), cfg, width=len(channels)), list(channels))


def visualize(model: nn.Module, block: str | ResidualBlock, node: str, channels: Sequence[int] | torch.Tensor,
              config: FeatureVizConfig | None = None, progress: bool = False) -> Visualization:
    r"""Feature visualisations of some channels of one node, in a running batch of at most
    ``config.channels_per_batch`` channels (a finished channel's place goes to the next one).

    No cache: see :func:`render` for cached, resumable runs.

    Args:
        model (nn.Module): a model with residual blocks (its device is used).
        block (str): block name, e.g. ``"2.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        channels (sequence of int): channels of the node.
        config (FeatureVizConfig, optional): defaults to the paper's settings.
        progress (bool): show a tqdm bar over channels.

    Returns:
        :class:`Visualization` with ``images [K, 3, H, W]`` in [0, 1], ``activations [K]``
        and ``history [steps, K]``.

    Raises:
        ValueError: unknown block or node, bad config. IndexError: channel out of range.
    """
    module, target, chosen, cfg = _prepare(model, block, node, channels, config)
    with tqdm(total=len(chosen), disable=not progress, desc=f"FZ {target.name} {node}", unit="channel") as bar:
        return _collect(_optimize_stream(module, target, node, chosen, cfg), chosen, bar)


# --------------------------------------------------------------------------- cached rendering

@dataclass
class FeatureVizResult:
    """What :func:`render` returns, one entry per requested channel, in the requested order.

    Attributes:
        block (str), node (str): where the channels live.
        channels (list of int): the channels.
        images (Tensor): ``[K, 3, H, W]`` in [0, 1], on the CPU.
        activations (Tensor): ``[K]`` achieved objective (see :class:`Visualization`).
        paths (list): the PNG of each channel, or ``None`` without a cache.
        config (FeatureVizConfig): the resolved config.
        computed (list of int): channels computed by this call (the rest came from the cache).
        histories (list): each channel's objective per step ``[steps_used]``.
        status (list of str): each channel's FZ status, ``"ok"``, ``"dead"``, ``"flat"``
            or ``"unconverged"`` (:func:`fz_status`).
        steps_used (list of int): the steps each channel's image got.
    """

    block: str
    node: str
    channels: list[int]
    images: torch.Tensor
    activations: torch.Tensor
    paths: list[Path | None]
    config: FeatureVizConfig
    computed: list[int] = field(default_factory=list)
    histories: list[torch.Tensor] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    steps_used: list[int] = field(default_factory=list)


BatchCallback = Callable[[list[int], torch.Tensor, torch.Tensor], Any]


def render(model: nn.Module, block: str | ResidualBlock, node: str, channels: Sequence[int] | None = None,
           config: FeatureVizConfig | None = None, cache_dir: str | os.PathLike | None = None, force: bool = False,
           progress: bool = True, callback: BatchCallback | None = None, remote: Any = None) -> FeatureVizResult:
    r"""Feature visualisations of a node's channels, cached and resumable.

    With a ``cache_dir``, each channel's result is one record keyed by the model's
    fingerprint (:func:`model_fingerprint`), the block, the node, the channel and the hash
    of the resolved config (all fields but ``channels_per_batch``); see
    :mod:`rsi_plugin.featureviz.cache`. Records are written as channels finish, atomically, so an
    interrupted run, rerun, computes only the channels that are missing.

    Args:
        model (nn.Module): a model with residual blocks.
        block (str): block name, e.g. ``"2.1"``.
        node (str): ``"in"``, ``"pre"``, ``"sum"`` or ``"post"``.
        channels (sequence of int, optional): channels; ``None``: all of the node's.
        config (FeatureVizConfig, optional): defaults to the paper's settings.
        cache_dir (path, optional): where records live; ``None``: no cache.
        force (bool): recompute (and overwrite) cached channels.
        progress (bool): a tqdm bar over channels.
        callback (callable, optional): ``callback(channels, images, activations)`` after
            each group of channels that finished together has been written (an exception it raises stops the run;
            finished batches stay cached).
        remote: ``None`` (here), or ``"local"`` / ``True`` / a URL: each batch's whole
            optimisation runs on that NDIF server in one request (:mod:`rsi_plugin.access.sessions`);
            the model needs a remote key (:func:`rsi_plugin.access.remote.model_key`).

    Returns:
        :class:`FeatureVizResult`.

    Raises:
        ValueError: unknown block or node, bad config. IndexError: channel out of range.
    """
    module, target, chosen, cfg = _prepare(model, block, node, channels, config,
                                           local=remote is None or remote is False)

    found: dict[int, dict[str, Any]] = {}
    paths: dict[int, Path | None] = {c: None for c in chosen}
    if cache_dir is not None:
        fingerprint = model_fingerprint(module)
        key = cfg.cache_key()
        chash = config_hash(key)
        expect = {"config_hash": chash, "fingerprint": fingerprint}
        where = {c: record_path(cache_dir, fingerprint, target.name, node, chash, c) for c in chosen}
        for c in chosen:
            paths[c] = where[c].with_suffix(".png")
            if not force:
                record = read_record(where[c], expect)
                if record is not None:
                    found[c] = record
    missing = [c for c in chosen if c not in found]
    logger.info("FZ block %s node %s: %d channel(s), %d cached, %d to compute (size %d, %s %d steps, jitter %d)",
                target.name, node, len(chosen), len(found), len(missing), cfg.image_size,
                "at most" if cfg.early_stop else "", cfg.steps, cfg.jitter)
    computed: list[int] = []
    # one lock per record: a concurrent run into the same cache computes other channels
    # and waits for (then reads) the ones this run holds, and vice versa
    with RecordLocks(where if cache_dir is not None else None, expect if cache_dir is not None else None) as locks:
        while missing:
            mine, done, busy = locks.claim(missing, reread=not force)
            found.update(done)
            if remote is None or remote is False:
                groups = _optimize_stream(module, target, node, mine, cfg)
            else:  # each batch's whole optimisation in one request
                from rsi_plugin.access.sessions import in_one_request, optimize_batch_remotely

                groups = ((batch, in_one_request(model, optimize_batch_remotely, target, node, batch, cfg,
                                                  remote=remote))
                          for batch in (mine[i:i + cfg.channels_per_batch]
                                        for i in range(0, len(mine), cfg.channels_per_batch)))
            bar = tqdm(total=len(mine), disable=not progress, desc=f"FZ {target.name} {node}", unit="channel")
            # closing: an error while writing (a full disk) or in the callback closes the stream at once,
            # which removes its hooks and restores the model (not whenever the generator is collected)
            with bar, contextlib.closing(groups):
                for batch, vis in groups:
                    for i, c in enumerate(batch):
                        used = int(vis.steps_used[i])
                        record = {
                            "image": vis.images[i].detach().float().cpu().clone(),
                            "activation": float(vis.activations[i]),
                            "history": vis.history[:used, i].detach().float().cpu().clone(),
                            "status": vis.status[i],
                            "steps_used": used,
                            "block": target.name,
                            "node": node,
                            "channel": c,
                        }
                        if cache_dir is not None:
                            record.update(config_hash=chash, fingerprint=fingerprint)
                            paths[c] = write_record(where[c], record, key)
                        found[c] = record
                    computed.extend(batch)
                    locks.release(batch)
                    bar.update(len(batch))
                    if callback is not None:
                        callback(list(batch), vis.images, vis.activations)
            missing = locks.wait(busy)
    return FeatureVizResult(
        block=target.name,
        node=node,
        channels=chosen,
        images=torch.stack([found[c]["image"] for c in chosen]),
        activations=torch.tensor([float(found[c]["activation"]) for c in chosen]),
        paths=[paths[c] for c in chosen],
        config=cfg,
        computed=computed,
        histories=[found[c].get("history") for c in chosen],
        status=[str(found[c].get("status", "unconverged")) for c in chosen],
        steps_used=[int(found[c].get("steps_used", cfg.steps)) for c in chosen],
    )
