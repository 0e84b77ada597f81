r"""The criteria of §3 as a Captum attribution: :class:`ScaleInvariance`.

As every Captum method, the constructor names what is analysed (a model and a block) and
:meth:`ScaleInvariance.attribute` returns a tensor and keeps nothing: per channel the
margins of Eq. (1) and Eq. (2) (``[K, 2]``; a channel passes when both are > 0), so
``NoiseTunnel`` and the other Captum wrappers can call it. :meth:`ScaleInvariance.evaluate`
runs the same measurement and returns a :class:`CriteriaResult`: the margins, every
activation they came from, and ``.table()`` / ``.summary()``::

    si = ScaleInvariance(model, "2.1")
    scores = si.attribute((x_in, x_pre))          # Tensor [C, 2], as Captum's attribute
    result = si.evaluate((x_in, x_pre))           # the same margins, plus the details
    result.table(); result.summary()

The equations themselves (tensors in, tensors out) are :mod:`rsi_plugin.criteria.equations`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import torch
from captum.attr import Attribution, NoiseTunnel
from torch import Tensor, nn

from rsi_plugin.access.intrace import check_trace_options
from rsi_plugin.access.nnsight import capture
from rsi_plugin.core.blocks import ResidualBlock, get_block, residual_blocks
from rsi_plugin.core.channels import check_channels
from rsi_plugin.core.evalmode import runs_in_eval_mode
from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.images import outside_unit_range
from rsi_plugin.core.transforms import Transform, get_transform, transform_name
from rsi_plugin.criteria.equations import (
    TABLE_COLUMNS,
    TOLERANCE,
    Criteria,
    NodeVariant,
    _check_variant,
    check_tolerance,
    eq2_status,
    invariance_criteria,
    node_sites,
    summarize,
)
from rsi_plugin.errors import InputTypeError, RSIError, ShapeError
from rsi_plugin.core.wrapped import unwrap

__all__ = ["ScaleInvariance", "CriteriaResult"]

#: how far outside [0, 1] the images behind model-ready input may lie (denormalised with the
#: model's statistics): wide, since Captum's perturbations (``NoiseTunnel``) and tests add
#: noise in model-ready space, yet 0-255 images (values up to 255) and images normalised
#: twice (down to about -2) are far beyond it
MODEL_READY_SLACK: float = 1.0

@dataclass(frozen=True)
class CriteriaResult:
    r"""One :meth:`ScaleInvariance.evaluate` call: the criteria of every analysed channel and
    the activations they came from.

    Attributes:
        block (str): the block, e.g. ``"2.1"``.
        channels (Tensor): ``[K]`` long, the channel of each row.
        values (dict of str to Tensor): the centre-neuron activations, each ``[K]`` (CPU):
            ``in_in`` (``In_c(x_in)``), ``pre_in`` (``Pre_c(x_in)``), ``post_in``
            (``Post_c(x_in)``), ``pre_scaled`` (``Pre_c(S(x_in))``), ``post_pre``
            (``Post_c(x_pre)``), ``pre_pre`` (``Pre_c(x_pre)``).
        criteria (Criteria): Eq. (1) and (2), their margins and the ratio, each ``[K]``.
        tolerance (float): ``t`` of Eq. (2).
        transform (str): the name of the transform used in place of ``S``.
        node_variant (str): ``"text"`` or ``"code"``.
        images_per_channel (int): ``k``, images averaged per channel.
    """

    block: str
    channels: Tensor
    values: dict[str, Tensor]
    criteria: Criteria
    tolerance: float
    transform: str
    node_variant: str
    images_per_channel: int

    @property
    def margins(self) -> Tensor:
        """``[K, 2]``: the margins of Eq. (1) and Eq. (2), what :meth:`ScaleInvariance.attribute`
        returns."""
        return torch.stack([self.criteria.eq1_margin, self.criteria.eq2_margin], dim=1)

    def table(self) -> pd.DataFrame:
        r"""One row per channel.

        Returns:
            DataFrame with the columns :data:`~rsi_plugin.criteria.equations.TABLE_COLUMNS`:
            ``block, channel, pre_in`` (``Pre_c(x_in)``), ``pre_scaled``
            (``Pre_c(S(x_in))``), ``post_in`` (``Post_c(x_in)``), ``post_pre``
            (``Post_c(x_pre)``), ``ratio`` (NaN for a denominator <= 0), ``eq1, eq2,
            passes``, then ``in_in`` (``In_c(x_in)``), ``pre_pre`` (``Pre_c(x_pre)``),
            ``eq1_margin, log_ratio, eq2_margin, eq2_status`` (see
            :func:`~rsi_plugin.criteria.equations.eq2_status`), ``transform, tolerance,
            node_variant, images_per_channel``.
        """
        r, v = self.criteria, self.values
        frame = pd.DataFrame({
            "block": self.block,
            "channel": self.channels.cpu().numpy(),
            "pre_in": v["pre_in"].numpy(),
            "pre_scaled": v["pre_scaled"].numpy(),
            "post_in": v["post_in"].numpy(),
            "post_pre": v["post_pre"].numpy(),
            "ratio": r.ratio.cpu().numpy(),
            "eq1": r.eq1.cpu().numpy(),
            "eq2": r.eq2.cpu().numpy(),
            "passes": r.passes.cpu().numpy(),
            "in_in": v["in_in"].numpy(),
            "pre_pre": v["pre_pre"].numpy(),
            "eq1_margin": r.eq1_margin.cpu().numpy(),
            "log_ratio": r.log_ratio.cpu().numpy(),
            "eq2_margin": r.eq2_margin.cpu().numpy(),
            "eq2_status": eq2_status(v["post_in"], v["post_pre"], self.tolerance),
            "transform": self.transform,
            "tolerance": self.tolerance,
            "node_variant": self.node_variant,
            "images_per_channel": self.images_per_channel,
        })
        return frame[list(TABLE_COLUMNS)]

    def summary(self) -> pd.DataFrame:
        """Count and share of passing channels (see
        :func:`~rsi_plugin.criteria.equations.summarize`)."""
        return summarize(self.table())


def _per_channel_images(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name} must be a Tensor [K, 3, H, W] or [K, k, 3, H, W], got {type(x).__name__}")
    if x.dim() == 4:
        return x.unsqueeze(1)
    if x.dim() == 5:
        return x
    raise ShapeError(f"{name} must be [K, 3, H, W] (one image per channel) or [K, k, 3, H, W] "
                     f"(k images per channel), got {tuple(x.shape)}")


#: ``rows_per_channel`` when :class:`captum.attr.NoiseTunnel` calls :meth:`ScaleInvariance.attribute`:
#: ``r`` is its batch of samples, read from the number of rows.
_FROM_NOISE_TUNNEL = "noise_tunnel"


def _called_by_noise_tunnel(si: Any) -> bool:
    """Whether the caller of :meth:`ScaleInvariance.attribute` is a ``NoiseTunnel`` wrapping ``si``
    (it calls ``attribute.__wrapped__`` from its own method, so its frame is the caller's)."""
    frame = inspect.currentframe()
    try:
        caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        owner = caller.f_locals.get("self") if caller is not None else None
        return isinstance(owner, NoiseTunnel) and owner.attribution_method is si
    finally:
        del frame


def _rows_per_channel(rows_per_channel: Any, rows: int, channels: int) -> int:
    """``r``, the rows per channel: 1 by default, the caller's ``rows_per_channel``, or under
    NoiseTunnel ``rows // channels`` (checked against the shapes by the caller)."""
    if rows_per_channel is None:
        return 1
    if rows_per_channel == _FROM_NOISE_TUNNEL:
        return max(rows // channels, 1) if channels else 1
    if isinstance(rows_per_channel, bool) or not isinstance(rows_per_channel, int) or rows_per_channel < 1:
        raise RSIError(f"rows_per_channel must be a positive int (r consecutive rows per channel, Captum's "
                       f"NoiseTunnel layout) or None (one row per channel), got {rows_per_channel!r}")
    return rows_per_channel


def _pick(acts: Tensor, channels: Tensor, k: int) -> Tensor:
    """``acts [K * k, C]`` → the channel of each row's own channel, mean over k: ``[K]``."""
    per = acts.view(len(channels), k, acts.shape[-1])
    index = channels.to(acts.device).view(-1, 1, 1).expand(-1, k, 1)
    return per.gather(2, index).squeeze(2).mean(1)


def _unwrappable(method):
    """Give ``method`` the ``__wrapped__`` that Captum's own ``attribute`` methods carry (from
    Captum's internal ``log_usage``, a no-op in open-source Captum) and that
    :class:`~captum.attr.NoiseTunnel` calls, without importing Captum's internals."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    return wrapper


class ScaleInvariance(Attribution):
    r"""The paper's scale-invariance criteria (§3, Eq. (1) and (2)) for the channels of one
    residual block, in Captum's style: the constructor names what is analysed, each
    :meth:`attribute` call how it runs, and no call leaves state behind.

    Example::

        si = ScaleInvariance(model, "2.1")
        x = (rsi.normalize(fz_in, model), rsi.normalize(fz_pre, model))
        scores = si.attribute(x)               # Tensor [C, 2]
        passing = (scores > 0).all(1)          # == si.evaluate(x).table()["passes"]
        result = si.evaluate(x)                # CriteriaResult: .margins, .table(), .summary()

    Args:
        model (nn.Module): a model with residual blocks (it is not changed; :meth:`attribute`
            runs it in eval mode and restores its mode, so BatchNorm buffers stay as they are).
        block (str or ResidualBlock): the block, e.g. ``"2.1"``.
        node_variant (str): ``"text"`` (default: the nodes of the paper's text) or
            ``"code"`` (Post, and In of a block without downsample, read at the pre-ReLU
            sum as the paper's code does); see
            :func:`~rsi_plugin.criteria.equations.node_sites`.
    """

    def __init__(self, model: nn.Module, block: str | ResidualBlock, node_variant: NodeVariant = "text") -> None:
        module = unwrap(model)
        super().__init__(module)
        self.model = module
        self.block = get_block(residual_blocks(module), block)
        self.node_variant = _check_variant(node_variant)
        self.sites = node_sites(module, self.block, node_variant)

    def _block_stride(self) -> int | None:
        """Input pixels per neuron of the block's Pre map (one probe forward of one image at the
        model's input size; nothing is kept, as Captum methods keep no state); ``None`` for a
        model without weights here (meta: remote)."""
        weight = next((t for t in self.model.parameters() if t.is_floating_point()), None)
        if weight is None or weight.device.type == "meta":
            return None
        size = int(model_info(self.model).input_size)
        where, node = self.sites["pre"]
        probe = torch.zeros(1, 3, size, size, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            side = capture(self.model, probe, blocks=[where], nodes=[node], center=False)[(where, node)].shape[-1]
        return max(1, -(-size // int(side)))

    def _check_images(self, x: Tensor, name: str, remote: bool = False) -> None:
        """Refuse model-ready images that were not [0, 1] images before normalising (0-255
        images, normalised twice) and images smaller than one step (the stride) of the
        block's grid: the centre neuron would see mostly padding, and ``S`` (zooming about
        the centre) nothing it could enlarge."""
        flat = x.detach().flatten(0, 1)
        info = model_info(self.model)
        mean = torch.as_tensor(info.mean, dtype=flat.dtype, device=flat.device).view(1, 3, 1, 1)
        std = torch.as_tensor(info.std, dtype=flat.dtype, device=flat.device).view(1, 3, 1, 1)
        span = outside_unit_range(flat * std + mean, MODEL_READY_SLACK)
        if span is not None:
            raise RSIError(f"{name} must be model-ready images made from [0, 1] RGB images (rsi.normalize(images, "
                           f"model)), but denormalised with the model's statistics its values span [{span[0]:.4g}, "
                           f"{span[1]:.4g}]; divide 0-255 images by 255 before normalising, and normalise only once")
        height, width = int(flat.shape[-2]), int(flat.shape[-1])
        # the stride is at most the input size: images that large need no probe
        stride = None if remote or min(height, width) >= int(info.input_size) else self._block_stride()
        if stride is not None and min(height, width) < stride:
            raise ShapeError(f"{name} images are {height}x{width} pixels, too small for block {self.block.name}: "
                             f"one neuron of its map covers {stride}x{stride} input pixels, so the criteria and S "
                             f"need images of at least {stride}x{stride} pixels (the model's input size is "
                             f"{model_info(self.model).input_size})")

    @_unwrappable
    def attribute(self, inputs: tuple[Tensor, Tensor], channels: Sequence[int] | Tensor | None = None,
                  rows_per_channel: int | None = None, **kwargs: Any) -> Tensor:
        r"""Both criteria for each channel on its own pair of images, as margins; keeps
        nothing (:meth:`evaluate` returns the details).

        Args:
            inputs (tuple of two Tensors): ``(x_in, x_pre)``, as in :meth:`evaluate`.
            channels (sequence of int or Tensor, optional): as in :meth:`evaluate`.
            rows_per_channel (int, optional): as in :meth:`evaluate`. When
                ``captum.attr.NoiseTunnel`` wrapping this object calls it, its layout (each
                row repeated ``nt_samples_batch_size`` times) is accepted without it.
            **kwargs: the other arguments of :meth:`evaluate` (``transform``,
                ``tolerance``, ``batch_size``) and nnsight trace options.

        Returns:
            Tensor ``[K, 2]`` on the device of ``x_in``: per channel the margins of Eq. (1)
            (``Pre_c(S(x_in)) - ReLU(Pre_c(x_in))``) and Eq. (2) (``log(t) - |log ratio|``,
            ``-inf`` for a ratio <= 0 or undefined). A channel passes exactly when both
            are > 0. Equal to ``self.evaluate(...).margins``.
        """
        if rows_per_channel is None and _called_by_noise_tunnel(self):
            rows_per_channel = _FROM_NOISE_TUNNEL  # type: ignore[assignment]
        return self.evaluate(inputs, channels=channels, rows_per_channel=rows_per_channel,
                             **kwargs).margins.to(inputs[0].device)

    @runs_in_eval_mode
    def evaluate(
        self,
        inputs: tuple[Tensor, Tensor],
        channels: Sequence[int] | Tensor | None = None,
        transform: str | Transform = "scale",
        tolerance: float = TOLERANCE,
        batch_size: int | None = None,
        rows_per_channel: int | None = None,
        **trace_kwargs: Any,
    ) -> CriteriaResult:
        r"""Evaluate both criteria for each channel on its own pair of images.

        ``transform`` (``S`` by default) is applied to the model-ready (normalised)
        ``x_in`` — as the paper's code does. For ``S`` and the flip this equals
        transforming the [0, 1] image and normalising after (they commute with the
        per-channel normalisation); a rotation fills corners with 0, i.e. the mean colour.

        Args:
            inputs (tuple of two Tensors): ``(x_in, x_pre)``, model-ready (normalised)
                images, like every Captum ``attribute``. ``x_in[k]`` drives In of
                channel ``channels[k]``, ``x_pre[k]`` drives Pre of it. Each is
                ``[K, 3, H, W]`` (one image per channel: FZs, top-1 natural images) or
                ``[K, k, 3, H, W]`` (k images per channel; the activations are averaged
                over the k images before the criteria, as the paper's code does for
                natural images).
            channels (sequence of int or Tensor, optional): the K channels; all channels
                of the block (``K = C``) by default.
            transform (str or callable): ``"scale"`` (the paper's ``S``, default),
                ``"rotate"``, ``"hflip"``, ``"rotate:45"``, ``"scale:1.5"`` or a function
                ``[N, 3, H, W] -> [N, 3, H', W']``; Eq. (1) is then read with it in place
                of ``S``.
            tolerance (float): ``t`` of Eq. (2), > 1; the paper's 1.5.
            batch_size (int, optional): images per forward pass (all at once by default).
            rows_per_channel (int, optional): ``r`` consecutive rows of ``x_in`` / ``x_pre``
                per channel (Captum's ``repeat_interleave`` layout), each scored on its own:
                ``r * K`` rows in, ``[r * K, 2]`` out. ``None`` (default): exactly one row per
                channel; any other row count is a :class:`~rsi_plugin.errors.ShapeError`.
            **trace_kwargs: nnsight trace options (``remote=``, ``backend=``, ``blocking=``,
                ``job_id=``, ``verbose=``), passed on to :func:`rsi_plugin.capture`.

        Returns:
            :class:`CriteriaResult`: ``.margins`` (``[K, 2]``, what :meth:`attribute`
            returns), ``.table()`` (one row per channel), ``.summary()``.

        Captum's perturbation wrappers (``NoiseTunnel``) repeat each input row ``r`` times
        (``repeat_interleave``): :meth:`attribute` called by a ``NoiseTunnel`` that wraps this
        object (or with ``rows_per_channel=r``) reads ``r * K`` rows for ``K`` channels as
        ``r`` consecutive rows per channel, each scored on its own (``[r * K, 2]``), which
        ``NoiseTunnel`` then averages per channel. Otherwise extra rows are an error, never
        reinterpreted. Captum keywords that do not apply raise:
        ``target=`` (the scores are per channel of the block, not per output class),
        ``baselines=`` / ``return_convergence_delta=`` (no baseline and no completeness
        property), ``additional_forward_args=`` (the model takes images only).

        Raises:
            TypeError: ``inputs`` is not a pair of tensors; a keyword that is not an nnsight
                trace option (e.g. Captum's ``target=``).
            ShapeError (a ValueError): row counts other than ``r * K`` (the message names the
                expected count); images smaller than the block's stride (one neuron of its
                map; checked on a local model). RSIError: inputs that were not [0, 1] images
                before normalising (0-255 images, images normalised twice). ValueError: a bad tolerance, transform name or
                ``rows_per_channel``.
            IndexError: a channel out of range.
        """
        check_trace_options(trace_kwargs, "ScaleInvariance.attribute()/evaluate()")
        t = check_tolerance(tolerance)
        fn = get_transform(transform)
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise InputTypeError("inputs must be a pair (x_in, x_pre) of model-ready image tensors "
                            f"(one per channel), got {type(inputs).__name__}")
        x_in = _per_channel_images(inputs[0], "x_in")
        x_pre = _per_channel_images(inputs[1], "x_pre")
        index = self._channels(channels)
        rows = _rows_per_channel(rows_per_channel, x_in.shape[0], len(index))
        for name, x in (("x_in", x_in), ("x_pre", x_pre)):
            expected = len(index) * rows
            if x.shape[0] != expected:
                which = f"all {len(index)} of block {self.block.name}" if channels is None else f"{len(index)} of channels="
                per = (f"{rows} rows per channel, rows_per_channel={rows}" if rows > 1 else
                       "one per channel; pass rows_per_channel=r for r consecutive rows per channel, "
                       "Captum's NoiseTunnel layout")
                raise ShapeError(f"{name} has {x.shape[0]} rows, but {which} channels are analysed: expected "
                                 f"{expected} row{'s' if expected != 1 else ''} ({per})")
        for name, x in (("x_in", x_in), ("x_pre", x_pre)):
            self._check_images(x, name, remote=bool(trace_kwargs.get("remote")))
        index = index.repeat_interleave(rows)  # r rows per channel (Captum's NoiseTunnel layout)
        k_in, k_pre = x_in.shape[1], x_pre.shape[1]
        flat_in = x_in.flatten(0, 1)
        flat_pre = x_pre.flatten(0, 1)
        scaled = fn(flat_in)
        if not isinstance(scaled, Tensor) or scaled.dim() != 4 or scaled.shape[0] != flat_in.shape[0]:
            raise ShapeError(f"transform {transform_name(transform)!r} must map [N, 3, H, W] to "
                             f"[N, 3, H', W']; got {getattr(scaled, 'shape', type(scaled).__name__)}")

        groups = {"x_in": flat_in, "scaled": scaled, "x_pre": flat_pre}
        blocks = list(dict.fromkeys(b for b, _ in self.sites.values()))
        nodes = list(dict.fromkeys(n for _, n in self.sites.values()))
        acts = {}
        for name, images in groups.items():
            acts[name] = capture(self.model, images, blocks=blocks, nodes=nodes, center=True,
                                 batch_size=batch_size, **trace_kwargs)
        s_in, s_pre, s_post = self.sites["in"], self.sites["pre"], self.sites["post"]
        values = {
            "in_in": _pick(acts["x_in"][s_in], index, k_in),
            "pre_in": _pick(acts["x_in"][s_pre], index, k_in),
            "post_in": _pick(acts["x_in"][s_post], index, k_in),
            "pre_scaled": _pick(acts["scaled"][s_pre], index, k_in),
            "post_pre": _pick(acts["x_pre"][s_post], index, k_pre),
            "pre_pre": _pick(acts["x_pre"][s_pre], index, k_pre),
        }
        criteria = invariance_criteria(values["pre_in"], values["pre_scaled"], values["post_in"],
                                       values["post_pre"], t)
        return CriteriaResult(
            block=self.block.name, channels=index.cpu(), values={k: v.detach().cpu() for k, v in values.items()},
            criteria=criteria, tolerance=t, transform=transform_name(transform), node_variant=self.node_variant,
            images_per_channel=k_in,
        )

    def _channels(self, channels: Sequence[int] | Tensor | None) -> Tensor:
        num = self.block.channels
        if channels is None:
            return torch.arange(num)
        return torch.tensor(check_channels(channels, num, where=f"block {self.block.name}"), dtype=torch.long)
