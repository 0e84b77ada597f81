"""Server side only: NDIF's model and controller actors for a CPU host.

Imported by the Ray workers of a stack started with :func:`rsi_plugin.serve.start` on a
host without a GPU (never by the client: it needs ``ray`` and ``ndif``, which live only in
the server venv).

* :class:`CPUModelActor` (``NDIF_DEFAULT_MODEL_ACTOR_CLASS``): ndif 0.1.2's stock model
  actor assumes CUDA (it pins a device, synchronises, and refuses tensors that are not on a
  GPU). This subclass loads the model on the CPU and cleans up without CUDA; request
  execution, timeouts, result upload and status messages stay ndif's own code.
* :class:`ControllerActor` (``NDIF_CONTROLLER_IMPORT_PATH``): ndif 0.1.2 calls
  ``Remotable.describe_checkpoint(..., trust_remote_code=...)`` and
  ``max_tp_size(..., trust_remote_code=...)``, which nnsight 0.8.1 does not take, so a deploy
  without ``size_bytes`` (the API's deploy-on-first-request) fails with a ``TypeError``. The
  controller applies :func:`accept_trust_remote_code` in its own process. (Ray ships the
  decorated class by value, so the patch runs in ``__init__``, not at import.)

Every ndif and nnsight name used here beyond their public API is listed in
:mod:`rsi_plugin.serve.ndif_api` (checked by ``tests/serve/test_ndif_api.py``).
"""

from __future__ import annotations

import gc
import inspect
import logging
import time

import ray
from ndif.services.ray.deployments.controller.controller import _ControllerActor
from ndif.services.ray.deployments.modeling.base import BaseModelDeployment
from nnsight.modeling.mixins.remotable import Remotable

__all__ = ["CPUModelActor", "ControllerActor", "accept_trust_remote_code"]

logger = logging.getLogger("ndif.modeling")


def accept_trust_remote_code() -> list[str]:
    """Make ``Remotable.describe_checkpoint`` / ``max_tp_size`` take (and ignore) the
    ``trust_remote_code=`` keyword ndif passes. Returns the names patched (idempotent)."""
    patched = []
    for name in ("describe_checkpoint", "max_tp_size"):
        original = getattr(Remotable, name).__func__
        if "trust_remote_code" in inspect.signature(original).parameters:
            continue

        def wrapper(cls, *args, trust_remote_code=False, _original=original, **kwargs):
            return _original(cls, *args, **kwargs)

        wrapper.__name__ = name
        setattr(Remotable, name, classmethod(wrapper))
        patched.append(name)
    return patched


class CPUModelDeployment(BaseModelDeployment):
    """ndif's model deployment with the CUDA-only steps replaced by CPU ones."""

    CACHEABLE = False  # nothing to park on a CPU host: evict outright instead of HOT -> WARM

    def load_from_disk(self):
        started = time.time()
        # the wrapper class comes from the key itself ("import.path.Class:suffix")
        model = Remotable.from_model_key(self.model_key, dispatch=True, dtype=self.dtype_name, **dict(self.kwargs))
        module = model._module
        module.to("cpu")
        module.requires_grad_(False)
        module.eval()
        logger.info("loaded %s on the CPU in %.2fs", self.model_key, time.time() - started)
        return model

    async def to_cache(self):  # never called: CACHEABLE is False
        self.cached = True

    def from_cache(self, gpu_mem_bytes_by_id):
        self.cached = False

    def cleanup(self):
        self.kill_switch.clear()
        self.kill_reason = None
        self.execution_ident = None
        self.model.interleaver.cancel()
        gc.collect()


@ray.remote(num_cpus=1, max_restarts=-1)
class CPUModelActor(CPUModelDeployment):
    """The Ray actor of :class:`CPUModelDeployment`."""


@ray.remote(num_cpus=1, num_gpus=0, max_restarts=-1, resources={"head": 1})
class ControllerActor(_ControllerActor):
    """NDIF's controller with :func:`accept_trust_remote_code` applied in its process."""

    def __init__(self, *args, **kwargs):
        from rsi_plugin.serve.cpu_actor import accept_trust_remote_code as patch

        patch()
        super().__init__(*args, **kwargs)
