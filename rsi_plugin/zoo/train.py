"""Train the bundled tiny ResNet on freshly generated shapes.

Usage::

    python -m rsi_plugin.zoo.train [--steps 4000] [--batch 128] [--out DIR] [--seed 0] [--threads 2]

Every step draws a new batch, ``generate(batch, train_seed(seed, step))`` (training seed
range), with random horizontal flips; the model is a :func:`build_tiny_resnet` initialised
after ``torch.manual_seed(seed)``, trained with SGD + Nesterov momentum, a linear warm-up
then cosine decay, and label smoothing, under ``torch.use_deterministic_algorithms(True)``.
Inputs are normalised with the per-channel mean / std of a fixed generated training sample
(:func:`normalization_stats`).

:func:`save` writes ``tiny_resnet.pt`` (float16 state dict) and ``tiny_resnet.json``
(configuration, versions, normalisation, validation accuracy of the float16 weights cast
back to float32, scale-sweep accuracy, training time, sha256 of the .pt).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.core.images import normalize
from rsi_plugin.zoo.evaluate import scale_sweep, validation_accuracy
from rsi_plugin.zoo.model import build_tiny_resnet
from rsi_plugin.zoo.pretrained import sha256_file
from rsi_plugin.zoo.shapes import (
    CLASSES,
    derive_seed,
    eval_seed,
    generate,
    train_seed,
    val_seed,
)

__all__ = ["TrainConfig", "normalization_stats", "train", "save", "main", "DEFAULT_OUT"]

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "weights"
WEIGHTS_NAME = "tiny_resnet.pt"
METADATA_NAME = "tiny_resnet.json"


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run.

    Attributes:
        steps (int): optimiser steps (one fresh batch each).
        batch (int): images per batch.
        seed (int): seeds the initialisation, the batches, validation and evaluation sets.
        threads (int): ``torch.set_num_threads`` during training.
        width (int): base width of the ResNet.
        size (int): training image side (the model's input size).
        resize_size (int): resize size of the scale sweep (``round(size * 256 / 224)``).
        lr (float): peak learning rate.
        momentum (float): SGD (Nesterov) momentum.
        weight_decay (float): L2 penalty.
        warmup (float): fraction of the steps spent in the linear warm-up.
        label_smoothing (float): cross-entropy label smoothing.
        hflip (bool): random horizontal flips.
        stats_samples (int): images for the normalisation statistics.
        val_size (int): validation images.
        eval_size (int): images of the scale sweep.
        eval_every (int): log validation accuracy every so many steps (0: never).
    """

    steps: int = 4000
    batch: int = 128
    seed: int = 0
    threads: int = 2
    width: int = 16
    size: int = 64
    resize_size: int = 73
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.05
    label_smoothing: float = 0.1
    hflip: bool = True
    stats_samples: int = 2000
    val_size: int = 1000
    eval_size: int = 1000
    eval_every: int = 250


def normalization_stats(seed: int, n: int = 2000, size: int = 64) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""Per-channel mean and std of a fixed generated training sample.

    The sample is ``generate(n, train_seed(seed, -1), size)`` (training seed range; step
    -1 is never a training step).

    Args:
        seed (int): run seed.
        n (int): number of images. Default 2000.
        size (int): image side. Default 64.

    Returns:
        ``(mean, std)``, two tuples of 3 floats (rounded to 6 decimals).
    """
    images, _ = generate(n, train_seed(seed, -1), size=size)
    x = images.double().transpose(0, 1).reshape(3, -1)
    mean = tuple(round(float(v), 6) for v in x.mean(dim=1))
    std = tuple(round(float(v), 6) for v in x.std(dim=1))
    return mean, std


def _lr_factor(step: int, steps: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def _batch(config: TrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = generate(config.batch, train_seed(config.seed, step), size=config.size)
    if config.hflip:
        g = torch.Generator().manual_seed(derive_seed("hflip", config.seed, step))
        flip = torch.rand(config.batch, generator=g) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images, labels


def train(config: TrainConfig, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    r"""Train a tiny ResNet on generated shapes.

    Sets ``torch.set_num_threads(config.threads)`` and deterministic algorithms for the
    duration of the run (both restored afterwards).

    Args:
        config (TrainConfig): hyper-parameters.
        progress (bool): show a tqdm progress bar.

    Returns:
        ``(model, metrics)``: the float32 model in eval mode, carrying ``rsi_info``
        (a :class:`~rsi_plugin.core.modelinfo.ModelInfo` with the normalisation), and a dict with
        ``losses`` (per step), ``train_accuracy`` (per step), ``mean``, ``std``,
        ``train_time_s`` and ``val_history`` (``[(step, accuracy)]``).
    """
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(config, progress)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _train(config: TrainConfig, progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    from tqdm.auto import tqdm

    mean, std = normalization_stats(config.seed, config.stats_samples, config.size)
    logger.info("normalisation mean=%s std=%s", mean, std)
    torch.manual_seed(config.seed)
    model = build_tiny_resnet(width=config.width, num_classes=len(CLASSES))
    model.rsi_info = _info(config, mean, std, "trained")
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=config.lr, momentum=config.momentum, nesterov=True)
    warmup_steps = max(1, round(config.warmup * config.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, config.steps, warmup_steps))

    losses: list[float] = []
    accs: list[float] = []
    val_history: list[tuple[int, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(config.steps), disable=not progress, desc="train", dynamic_ncols=True)
    model.train()
    for step in bar:
        images, labels = _batch(config, step)
        logits = model(normalize(images, mean=mean, std=std))
        loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach().item())
        accs.append(float((logits.argmax(1) == labels).float().mean()))
        if progress and step % 10 == 0:
            recent = slice(max(0, step - 49), step + 1)
            bar.set_postfix(loss=f"{sum(losses[recent]) / len(losses[recent]):.3f}",
                            acc=f"{sum(accs[recent]) / len(accs[recent]):.3f}")
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps:
            acc = validation_accuracy(model, config.seed, n=min(config.val_size, 500), size=config.size)
            model.train()
            val_history.append((step + 1, acc))
            logger.info("step %d loss %.4f val_acc(500) %.4f lr %.4g", step + 1,
                        sum(losses[-50:]) / len(losses[-50:]), acc, sched.get_last_lr()[0])
    train_time = time.perf_counter() - start
    model.eval()
    metrics = {"losses": losses, "train_accuracy": accs, "mean": mean, "std": std,
               "train_time_s": train_time, "val_history": val_history}
    return model, metrics


def _info(config: TrainConfig, mean, std, weights: str) -> ModelInfo:
    return ModelInfo(name="tiny", weights=weights, input_size=config.size,
                     resize_size=config.resize_size, mean=tuple(mean), std=tuple(std),
                     num_classes=len(CLASSES))


def save(model: nn.Module, metrics: dict[str, Any], config: TrainConfig,
         out: str | Path = DEFAULT_OUT) -> dict[str, Any]:
    r"""Write the float16 state dict and its JSON metadata, evaluating the saved weights.

    The state dict is cast to float16 (integer buffers kept), saved, loaded back, cast to
    float32, and that model is evaluated: validation accuracy
    (:func:`~rsi_plugin.zoo.evaluate.validation_accuracy`) and the scale sweep
    (:func:`~rsi_plugin.zoo.evaluate.scale_sweep`).

    Args:
        model (nn.Module): trained model (from :func:`train`).
        metrics (dict): from :func:`train`.
        config (TrainConfig): the run's configuration.
        out (str or Path): output directory. Default: the package's ``weights`` folder.

    Returns:
        dict, the metadata written to ``tiny_resnet.json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / WEIGHTS_NAME
    state = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).cpu()
             for k, v in model.state_dict().items()}
    torch.save(state, weights_path)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        reloaded = build_tiny_resnet(width=config.width, num_classes=len(CLASSES))
        loaded = torch.load(weights_path, map_location="cpu", weights_only=True)
        reloaded.load_state_dict({k: v.float() if v.is_floating_point() else v
                                  for k, v in loaded.items()}, strict=True)
        reloaded.eval()
        reloaded.rsi_info = _info(config, metrics["mean"], metrics["std"], str(weights_path))
        val_acc = validation_accuracy(reloaded, config.seed, n=config.val_size, size=config.size)
        sweep = scale_sweep(reloaded, config.seed, n=config.eval_size, input_size=config.size,
                            resize_size=config.resize_size)
    finally:
        torch.set_num_threads(old_threads)

    losses = metrics["losses"]
    tail = losses[-100:]
    meta = {
        "name": "tiny",
        "architecture": f"torchvision ResNet, BasicBlock [2, 2, 2, 2], widths "
                        f"{[config.width * 2 ** i for i in range(4)]}",
        "weights_file": WEIGHTS_NAME,
        "sha256": sha256_file(weights_path),
        "size_bytes": weights_path.stat().st_size,
        "dtype": "float16",
        "seed": config.seed,
        "steps": config.steps,
        "batch": config.batch,
        "threads": config.threads,
        "width": config.width,
        "input_size": config.size,
        "resize_size": config.resize_size,
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "mean": list(metrics["mean"]),
        "std": list(metrics["std"]),
        "val_accuracy": val_acc,
        "val_size": config.val_size,
        "val_seed": val_seed(config.seed),
        "scale_sweep": {
            "description": "centred set drawn at resize_size, scale_crop(images, p, "
                           "output_size=input_size) (text variant); 'standard' = same objects "
                           "drawn at input_size, uncropped",
            "eval_size": config.eval_size,
            "eval_seed": eval_seed(config.seed),
            "accuracy": sweep,
        },
        "final_train_loss": sum(tail) / len(tail) if tail else None,
        "val_history": metrics["val_history"],
        "train_time_s": round(metrics["train_time_s"], 1),
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "python_version": platform.python_version(),
        "config": asdict(config),
    }
    with open(out / METADATA_NAME, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    logger.info("saved %s (%d bytes), val_acc %.4f, sweep %s", weights_path,
                meta["size_bytes"], val_acc, sweep)
    return meta


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the written metadata."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = TrainConfig(steps=args.steps, batch=args.batch, seed=args.seed,
                         threads=args.threads, width=args.width, lr=args.lr)
    logger.info("config %s", config)
    model, metrics = train(config, progress=not args.no_progress)
    return save(model, metrics, config, args.out)


if __name__ == "__main__":
    main()
