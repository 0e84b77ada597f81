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
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from rsi_plugin.access.hooks import NodeProbe, relu_source  # noqa: F401 (importable here as before)
from rsi_plugin.core.blocks import ResidualBlock, check_nodes, get_block, residual_blocks
from rsi_plugin.core.channels import check_channels
from rsi_plugin.core.tensors import check_runnable
from rsi_plugin.core.wrapped import unwrap
from rsi_plugin.featureviz.cache import (
    RecordLocks,
    config_hash,
    model_fingerprint,
    read_record,
    record_path,
    write_record,
)
# the config and the engine live in their own modules; their names stay importable from here
from rsi_plugin.featureviz.config import (  # noqa: F401
    FORMAT_VERSION,
    JITTER_REFERENCE_SIZE,
    OBJECTIVES,
    PAD_MODES,
    FeatureVizConfig,
    channel_seed,
    paper_jitter,
    scaled_jitter,
)
from rsi_plugin.featureviz.engine import (  # noqa: F401
    DEAD_ACTIVATION,
    FLAT_STD,
    STATUSES,
    Visualization,
    _collect,
    _optimize_stream,
    fz_status,
    optimize_on_server,
    plateau_window,
    plateaued,
)

__all__ = ["visualize", "render", "FeatureVizResult", "BatchCallback"]

logger = logging.getLogger(__name__)


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
    chosen = check_channels(channels, target.channels, where=f"block {target.name}")
    return module, target, chosen, (config or FeatureVizConfig()).resolved(module, target, node)


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
                from rsi_plugin.access.sessions import in_one_request

                groups = ((batch, in_one_request(model, optimize_on_server, target, node, batch, cfg, remote=remote))
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