r"""The batching engine of the feature visualisations: a running batch of channels of one
node, each with its own random draws, step count and Adam state (:class:`_RowAdam`), stopped
when its objective plateaus (:func:`plateaued`), with a status (:func:`fz_status`).

:func:`rsi_plugin.featureviz.optimize.visualize` and :func:`~rsi_plugin.featureviz.optimize.render`
drive it (the module docstring there says what is the paper's and what differs). The node is read
with plain PyTorch hooks (:class:`~rsi_plugin.access.hooks.NodeProbe`, the rules of
:mod:`rsi_plugin.access.plan`) that stop the forward at the node. :func:`optimize_on_server` is
the server side of ``render(remote=...)``: one batch's whole optimisation, handed to
:func:`rsi_plugin.access.sessions.in_one_request`.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsi_plugin.access.hooks import NodeProbe
from rsi_plugin.core.blocks import ResidualBlock
from rsi_plugin.core.images import model_info
from rsi_plugin.core.tensors import model_device as _device
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.featureviz.config import FeatureVizConfig, channel_seed
from rsi_plugin.featureviz.param import ImageParam, TransformSpec, draw_transforms, init_params, transform_images, \
    transform_thetas

__all__ = [
    "Visualization",
    "fz_status",
    "plateaued",
    "plateau_window",
    "optimize_on_server",
    "STATUSES",
    "DEAD_ACTIVATION",
    "FLAT_STD",
]

#: the statuses of an FZ (:func:`fz_status`), best first
STATUSES: tuple[str, ...] = ("ok", "dead", "flat", "unconverged")
#: an FZ whose objective on its final image is at or below this is ``"dead"``: it does not
#: drive its own target (a ReLU node stuck at 0, a Pre that stayed negative)
DEAD_ACTIVATION: float = 0.0
#: an FZ whose pixel standard deviation (over colours and pixels, [0, 1] scale) is below this
#: is ``"flat"``: the initial noise (std ~0.0025) or a uniform colour, not an image
FLAT_STD: float = 0.01


@dataclass(frozen=True)
class Visualization:
    """What :func:`~rsi_plugin.featureviz.optimize.visualize` returns; unpacks as ``images, activations = visualize(...)``.

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


@contextmanager
def _memory_format(model: nn.Module, memory_format: str | None) -> Iterator[None]:
    """``"channels_last"``: the model's 4-D parameters and buffers in channels-last format,
    their own tensors put back on exit; ``None``: nothing."""
    if memory_format is None:
        yield
        return
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.dim() == 4]
    saved = [t.data for t in tensors]
    try:
        for t in tensors:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for t, data in zip(tensors, saved):
            t.data = data


def _autocast(device: torch.device, dtype: str | None) -> Any:
    """:func:`torch.autocast` to ``dtype`` on the device's type; ``None``: no autocast."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


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
    channels_last = cfg.memory_format == "channels_last"
    with _frozen(model), _memory_format(model, cfg.memory_format), \
            NodeProbe(model, block, node, cfg.paper_compat, cfg.pre_activation) as probe:
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
                seen = (transform_images(image_of(params), rows.thetas[arange, rows.t], spec) - mean) / std
                if channels_last:
                    seen = seen.contiguous(memory_format=torch.channels_last)
                with _autocast(device, cfg.autocast):  # the network only; the image and Adam stay float32
                    act = probe(seen)
                target = _objective(act, arange, rows.index, cfg.objective).float()
                value = target
                if probe.pre_activation is not None:  # a ReLU node: climb its pre-activation while it is <= 0
                    value = torch.where(target > 0, target,
                                        _objective(probe.pre_activation, arange, rows.index, cfg.objective).float())
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


def optimize_on_server(envoy: Any, block: ResidualBlock, node: str, channels: list[int],
                       cfg: FeatureVizConfig) -> Visualization:
    """Server side of a remote FZ batch (``render(remote=...)``): the optimisation of one batch
    of channels, all steps, on the server's model (plain PyTorch there).

    Handed to :func:`rsi_plugin.access.sessions.in_one_request`, which pickles it by reference:
    a module-level function whose module the server imports, taking its model as the server's
    wrapper (``envoy``) and everything else as arguments.
    """
    return _optimize_batch(unwrap(envoy), block, node, channels, cfg)
