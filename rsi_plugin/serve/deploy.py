"""Deploy this library's models on a running self-hosted NDIF stack, by model key.

A model key (``torchvision:resnet18:random@0``, ``rsi:tiny``; see
:class:`rsi_plugin.access.remote.ModelKey`) becomes NDIF's full key
``rsi_plugin.access.remote.VisionModel:<key>``. The deploy file gives ``size_bytes``, counted from
the architecture built on the meta device (no weights are loaded here), so NDIF does not
have to estimate it (its estimate goes through a call that ndif 0.1.2 and nnsight 0.8.1
disagree on, see :mod:`rsi_plugin.serve.cpu_actor`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
from pathlib import Path

from rsi_plugin.serve.config import ServeConfig
from rsi_plugin.serve.errors import ServeError
from rsi_plugin.errors import RSIError

__all__ = ["deploy_spec", "deploy", "full_key"]

logger = logging.getLogger(__name__)

_WRAPPER = "rsi_plugin.access.remote.VisionModel"


def full_key(key: str) -> str:
    """NDIF's key of a model key: ``rsi_plugin.access.remote.VisionModel:<canonical key>``.

    Raises:
        ValueError: a bad key (the message gives the grammar).
    """
    from rsi_plugin.access.remote import ModelKey

    if key.startswith(_WRAPPER + ":"):
        key = key[len(_WRAPPER) + 1:]
    return f"{_WRAPPER}:{ModelKey.parse(key)}"


def _size_bytes(key: str) -> int:
    import torch

    from rsi_plugin.access.remote import ModelKey

    with torch.device("meta"):
        module = ModelKey.parse(key.split(":", 1)[1]).build_meta()
    elements = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    return int(math.ceil(elements * 4))  # float32


def deploy_spec(keys: list[str], pinned: bool = True, replicas: int = 1) -> dict:
    """NDIF's deploy file (as a dict) for some model keys, with ``size_bytes`` and float32."""
    if not keys:
        raise RSIError("no model key given; e.g. torchvision:resnet18:random@0 or rsi:tiny")
    if isinstance(replicas, bool) or int(replicas) < 1:
        raise RSIError(f"replicas must be a positive integer, got {replicas!r}")
    models = []
    for key in keys:
        full = full_key(key)
        models.append({"checkpoint": full.split(":", 1)[1], "model_key": full, "size_bytes": _size_bytes(full),
                       "dtype": "float32", "pinned": bool(pinned), "replicas": int(replicas)})
    return {"models": models}


def deploy(keys: list[str], config: ServeConfig | None = None, pinned: bool = True, replicas: int = 1,
           timeout: float = 900.0) -> list[str]:
    """Deploy models on the running stack and wait until their replicas are ready.

    Args:
        keys (list of str): model keys (``torchvision:resnet18:random@0``, ``rsi:tiny``).
        config (ServeConfig, optional): the stack.
        pinned (bool): never evicted to make room for another model.
        replicas (int): replicas to add per model (a deploy is additive).
        timeout (float): seconds allowed.

    Returns:
        list of str: NDIF's full keys, deployed.

    Raises:
        ValueError: a bad key. ServeError: the stack is not running, or NDIF refused or
            failed the deploy (with its output).
    """
    from rsi_plugin.serve.stack import stack_env, status

    config = config or ServeConfig()
    spec = deploy_spec(list(keys), pinned=pinned, replicas=replicas)
    state = status(config, timeout=5, models=False)
    if not state["running"] or not state["connected"]:
        raise ServeError(f"no connected NDIF stack from {config.home}; `rsi serve start` it first")
    path = Path(config.home) / "deploy" / f"deploy-{hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    env = stack_env(config)
    logger.info("deploying %s", ", ".join(m["model_key"] for m in spec["models"]))
    try:
        done = subprocess.run([str(config.venv / "bin" / "ndif"), "deploy", "-f", str(path)], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=config.home)
    except subprocess.TimeoutExpired as error:
        raise ServeError(f"deploy did not finish within {timeout:.0f}s: {error.stdout or ''}") from error
    for line in done.stdout.splitlines():
        logger.info("ndif: %s", line)
    if done.returncode != 0:
        raise ServeError(f"ndif deploy failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return [m["model_key"] for m in spec["models"]]

