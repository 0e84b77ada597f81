"""Remote-ready residual models: nnsight's ``Remotable`` for torchvision models.

A plain ``nnsight.NNsight(resnet)`` passes ``remote=True`` straight into
``ResNet.forward`` and fails with a ``TypeError``: only nnsight's ``Remotable`` wrappers
(Hugging Face language models today) know how to ship a trace. :class:`VisionModel` is
such a wrapper for this library's models. It names its model by a **model key** a
server can rebuild it from::

    rsi_plugin.access.remote.VisionModel:torchvision:resnet18:IMAGENET1K_V1
    ^ the wrapper class           ^ the suffix, a ModelKey

and every trace of the library takes nnsight's ``remote=`` through its ``**trace_kwargs``::

    model = rsi.load_model("resnet18", weights="IMAGENET1K_V1")
    acts = rsi.capture(model, x, blocks=["2.1"], remote="local")       # simulated
    acts = rsi.capture(model, x, blocks=["2.1"], remote="http://127.0.0.1:8001")  # self-hosted

:func:`rsi_plugin.wrap` builds a :class:`VisionModel` around any model, so nothing else
changes for a local run. ``remote`` takes:

``"local"``
    nnsight's serverless simulation of the remote path: the trace is serialised, local
    modules are hidden, it is deserialised and run here against this model. Needs no
    key, no server and no network; a trace that passes it will serialise for a server.
``True``
    ship the trace to the NDIF host nnsight is configured with (``NDIF_HOST`` or
    ``nnsight.CONFIG.API.HOST``, https://api.ndif.us by default).
a URL (``"http://127.0.0.1:8001"``)
    ship the trace to that NDIF server.

**API keys.** The rule is decided from the host a run goes to (:func:`needs_api_key`): the
public NDIF service (``*.ndif.us``) needs an NDIF API key (``NDIF_API_KEY`` or
``nnsight.CONFIG.set_default_api_key``) and without one a run fails with
:class:`RemoteConfigError` before anything is sent; any other host is self-hosted and needs
none (a key is still sent when one is set, for a server that puts NDIF's API-key auth in
front).

What NDIF serves: the public NDIF service runs only the Hugging Face language models it has
deployed (``nnsight.ndif.status()`` lists them); it has no torchvision models, and its
sandbox would not import this package, so a ResNet trace sent there is refused by the
server. To run these traces remotely, run your own NDIF: ``rsi serve install`` (once),
``rsi serve start`` (redis, an S3 store, Ray + NDIF's controller and the API on
``http://127.0.0.1:8001``, NDIF's default port; CPU hosts work), ``rsi serve deploy
torchvision:resnet18:IMAGENET1K_V1`` (see :mod:`rsi_plugin.serve`), then pass
``remote="http://127.0.0.1:8001"`` or set ``NDIF_HOST``. The server rebuilds the model with
``Remotable.from_model_key(key)``, which calls :class:`VisionModel` with the key; a key that
is not deployed is deployed on its first request. (``ndif local start`` is not the way: it
needs a GPU node and the rustfs store; ``rsi serve`` works around both.) This path is tested
end to end against a real ``ndif`` 0.1.2 server in ``tests/integration/test_ndif.py``.

A model key needs weights a server can get by name. Random-init models carry their seed
(``load_model("resnet18", seed=3)`` records ``random@3``; a key
``torchvision:resnet18:random@3`` rebuilds it); a model whose weights came from a local
file, or one without ``rsi_info``, has no key: such models still run with
``remote="local"``, and ``remote=True`` / a URL raise a ``ValueError`` saying why.

Where this module sits: :class:`VisionModel` subclasses
:class:`rsi_plugin.access.nnsight_api.RemotableEnvoy`, which holds every override of
nnsight's subclass hooks; here are only the model keys, the ``remote=`` rules and
:func:`wrap` (the one wrapper per model). The readers (:mod:`rsi_plugin.access.nnsight`)
import this module, never the reverse.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn

from rsi_plugin.access.nnsight_api import Envoy, RemotableEnvoy, is_envoy, is_remotable, nnsight_config
from rsi_plugin.core.modelinfo import ModelInfo
from rsi_plugin.core.models import RESNET_FAMILY, load_model
from rsi_plugin.errors import InputTypeError, MissingFileError, RSIError, ShapeError, UnknownNameError
from rsi_plugin.core.wrapped import unwrap

__all__ = [
    "KEY_SOURCES",
    "ModelKey",
    "RemoteConfigError",
    "VisionModel",
    "wrap",
    "model_key",
    "remote_ready",
    "check_remote",
    "needs_api_key",
]

logger = logging.getLogger(__name__)

#: The model sources a key may name.
KEY_SOURCES: tuple[str, ...] = ("torchvision", "rsi")
_PUBLIC_NDIF = "api.ndif.us"
_PUBLIC_DOMAIN = "ndif.us"
_KEY_GRAMMAR = ("torchvision:<arch>:<weights> (weights: a torchvision enum name such as IMAGENET1K_V1, "
                "DEFAULT, random or random@<seed>) or rsi:tiny[:bundled]")


class RemoteConfigError(RSIError):
    """A remote run is not set up (no API key, a bad host); raised before anything is sent."""


def _torchvision_archs() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


@dataclass(frozen=True)
class ModelKey:
    """The model-specific half of a remote key: ``<source>:<arch>:<weights>``.

    Attributes:
        source (str): ``"torchvision"`` or ``"rsi"`` (the bundled zoo).
        arch (str): ``"resnet18"``, ``"convnext_tiny"``, ... or ``"tiny"``.
        weights (str): a torchvision weight enum name, ``"DEFAULT"``, ``"random"``
            (seed 0), ``"random@<seed>"``, or ``"bundled"`` for ``rsi:tiny``.
    """

    source: str
    arch: str
    weights: str

    def __str__(self) -> str:
        return f"{self.source}:{self.arch}:{self.weights}"

    @classmethod
    def parse(cls, text: str) -> "ModelKey":
        """Read a key such as ``"torchvision:resnet18:IMAGENET1K_V1"``.

        Raises:
            ValueError: naming what is wrong and the grammar of a key.
        """
        if not isinstance(text, str):
            raise InputTypeError(f"a model key is a string, got {type(text).__name__}")
        parts = text.split(":")
        if parts[0] == "rsi" and len(parts) == 2:
            parts.append("bundled")
        if len(parts) != 3 or not all(parts):
            raise RSIError(f"bad model key {text!r}; expected {_KEY_GRAMMAR}")
        source, arch, weights = parts
        if source not in KEY_SOURCES:
            raise UnknownNameError(f"unknown source {source!r} in model key {text!r}; valid: {', '.join(KEY_SOURCES)}")
        if source == "rsi":
            if arch != "tiny" or weights != "bundled":
                raise RSIError(f"bad model key {text!r}: the bundled zoo has only rsi:tiny[:bundled]")
            return cls(source, arch, weights)
        archs = _torchvision_archs()
        if arch not in archs:
            raise UnknownNameError(f"unknown torchvision model {arch!r} in key {text!r}; valid: {', '.join(archs)}")
        if weights.startswith("random"):
            if not re.fullmatch(r"random(@\d+)?", weights):
                raise RSIError(f"bad random weights {weights!r} in key {text!r}; use random or random@<seed>")
            return cls(source, arch, weights)
        valid = ["DEFAULT"] + [w.name for w in torchvision.models.get_model_weights(arch)]
        if weights not in valid:
            raise UnknownNameError(f"unknown weights {weights!r} for {arch} in key {text!r}; valid: "
                             f"{', '.join(valid)}, random, random@<seed>")
        return cls(source, arch, weights)

    @property
    def seed(self) -> int | None:
        """The seed of random weights (0 for plain ``random``), else ``None``."""
        if not self.weights.startswith("random"):
            return None
        return int(self.weights.partition("@")[2] or 0)

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """Build the model the key names, in eval mode, with ``rsi_info`` set.

        ResNets and ``rsi:tiny`` come from :func:`rsi_plugin.load_model` (enum weights from
        the torch hub cache, downloaded when allowed); other torchvision models are built
        with ``torchvision.models.get_model`` the same way.

        Raises:
            FileNotFoundError: enum weights neither cached nor downloadable.
        """
        if self.source == "rsi":
            return load_model("tiny", device=device)
        seed = self.seed
        if self.arch in RESNET_FAMILY:
            model = load_model(self.arch, weights=None if seed is not None else self.weights,
                               seed=seed or 0, device="cpu")
        else:
            model = self._build_torchvision(seed)
        info = model.rsi_info
        model.rsi_info = ModelInfo(**{**info.__dict__, "weights": self.weights if seed is None else f"random@{seed}"})
        return model.to(device).eval()

    def _build_torchvision(self, seed: int | None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed or 0)
            model = torchvision.models.get_model(self.arch, weights=None)
        if seed is None:
            enum = torchvision.models.get_model_weights(self.arch)
            member = enum.DEFAULT if self.weights == "DEFAULT" else enum[self.weights]
            try:
                state = member.get_state_dict(progress=False)
            except Exception as error:  # offline, proxy, truncated download...
                raise MissingFileError(
                    f"{enum.__name__}.{member.name} is neither in the torch hub cache "
                    f"({torch.hub.get_dir()}/checkpoints) nor downloadable: {error}") from error
            model.load_state_dict(state, strict=True)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        num_classes = linears[-1].out_features if linears else 1000
        model.rsi_info = ModelInfo(name=self.arch, weights="random" if seed is not None else self.weights,
                                   num_classes=num_classes)
        return model

    def build_meta(self) -> nn.Module:
        """The architecture alone (call under nnsight's ``MetaDevice``: no weights)."""
        if self.source == "rsi":
            from rsi_plugin.zoo.model import build_tiny_resnet  # only when asked for

            return build_tiny_resnet()
        return torchvision.models.get_model(self.arch, weights=None)


def model_key(model: nn.Module) -> ModelKey:
    """The :class:`ModelKey` of a model, from the ``rsi_info`` it carries.

    Raises:
        ValueError: if the model's weights cannot be named for a server (a local file, a
            random init of unknown seed, no ``rsi_info``), saying what to do instead.
    """
    module = unwrap(model)
    info = getattr(module, "rsi_info", None)
    if not isinstance(info, ModelInfo):
        raise RSIError(
            f"{type(module).__name__} carries no rsi_info, so a server cannot know which model to build; "
            "load it with rsi.load_model or build it from a key: VisionModel('torchvision:resnet18:IMAGENET1K_V1')")
    if info.name == "tiny":
        from rsi_plugin.zoo.pretrained import TINY_WEIGHTS  # only when asked for

        if os.path.abspath(info.weights) == str(TINY_WEIGHTS):
            return ModelKey("rsi", "tiny", "bundled")
        raise RSIError(f"the tiny model's weights come from the local file {info.weights}, which a server "
                         "cannot load; remote runs need the bundled weights (rsi:tiny) or remote='local'")
    if info.weights == "random":  # a ModelInfo written by hand, without the seed
        raise RSIError(
            f"{info.name} has random-init weights of unrecorded seed, which a server cannot rebuild; build "
            f"the model from a key instead (VisionModel('torchvision:{info.name}:random@<seed>')) or use "
            "remote='local'")
    try:
        return ModelKey.parse(f"torchvision:{info.name}:{info.weights}")
    except ValueError as error:
        raise RSIError(f"{info.name} with weights {info.weights!r} has no remote key ({error}); weights "
                         "from a local file cannot be loaded by a server: use remote='local', or torchvision "
                         "weights by name") from error


def _api_key() -> str | None:
    CONFIG = nnsight_config()
    return CONFIG.API.APIKEY or os.environ.get("NDIF_API_KEY") or None


def needs_api_key(host: str) -> bool:
    """Whether a run sent to ``host`` needs an NDIF API key: only the public NDIF service
    (a host under ``ndif.us``) does; a self-hosted server (any other host) does not."""
    from urllib.parse import urlparse

    name = (urlparse(host if "//" in host else f"//{host}").hostname or "").lower()
    return name == _PUBLIC_DOMAIN or name.endswith("." + _PUBLIC_DOMAIN)


def check_remote(remote: Any) -> str | None:
    """Validate a ``remote=`` value before anything is built or sent.

    Args:
        remote: ``False`` / ``None`` (run here), ``"local"``, ``True`` (the configured NDIF
            host) or a host URL.

    Returns:
        the host a remote run goes to, or ``None`` for a local or simulated run.

    Raises:
        RemoteConfigError: a run to the public NDIF service (:func:`needs_api_key`) without
            an NDIF API key, or a string that is neither ``"local"`` nor an http(s) URL.
        TypeError: any other type.
    """
    CONFIG = nnsight_config()
    if remote is None or remote is False or remote == "local":
        return None
    if remote is True:
        host = CONFIG.API.HOST
    elif isinstance(remote, str):
        if not remote.startswith(("http://", "https://")):
            raise RemoteConfigError(f"remote={remote!r} is not valid; use False, 'local', True (the NDIF host "
                                    "in NDIF_HOST / nnsight.CONFIG) or an http(s):// URL of a server")
        host = remote
    else:
        raise InputTypeError(f"remote must be False, 'local', True or an http(s):// URL, got {type(remote).__name__}")
    if needs_api_key(host) and not _api_key():
        raise RemoteConfigError(
            f"the public NDIF service ({host}) needs an NDIF API key, but none is set: export "
            "NDIF_API_KEY=<key> or call nnsight.CONFIG.set_default_api_key('<key>'). Nothing was sent. Note "
            "that the public service runs only the Hugging Face language models it has deployed, not "
            "torchvision models: for a ResNet run your own server (`rsi serve start`, no key needed) and pass "
            "remote='http://127.0.0.1:8001' (or set NDIF_HOST), or remote='local' to simulate the remote "
            "path in this process")
    return host


class VisionModel(RemotableEnvoy):
    """An ``nnsight.NNsight`` wrapper of a vision model that can run traces remotely.

    Built from a ready module (wraps it as it is, weights already here) or from a key
    (builds the architecture on nnsight's meta device, loads the weights on the first
    local trace, so a remote-only client never loads them)::

        VisionModel(rsi.load_model("resnet18", weights="IMAGENET1K_V1"))
        VisionModel("torchvision:resnet18:IMAGENET1K_V1")
        VisionModel.from_model_key("rsi_plugin.access.remote.VisionModel:torchvision:resnet18:random@0")

    Its ``trace(...)`` takes ``remote=`` (``"local"``, ``True``, a URL; see the module
    docstring). Library calls take it through ``**trace_kwargs``.

    Args:
        model (nn.Module or str): the module, or a key (:class:`ModelKey` text).
        device (str or torch.device, optional): where a model built from a key goes
            (``device_map="auto"`` / ``"cuda:0"``, as server loaders pass it, is read as the
            device too); CPU by default.
        dispatch (bool): load a keyed model's weights now rather than on first use.
        **kwargs: nnsight ``Envoy`` options; ``revision`` / ``trust_remote_code`` /
            ``dtype`` (passed by NDIF's tooling) are accepted and ignored.

    Raises:
        ValueError: a bad key. TypeError: neither a module nor a string.
    """

    def __init__(self, model: nn.Module | str, *args: Any, device: str | torch.device | None = None,
                 dispatch: bool = False, **kwargs: Any) -> None:
        device_map = kwargs.pop("device_map", None)  # what NDIF's loaders pass for placement
        if device is None and isinstance(device_map, str):
            device = ("cuda" if torch.cuda.is_available() else "cpu") if device_map == "auto" else device_map
        for ignored in ("revision", "trust_remote_code", "dtype", "torch_dtype"):
            if kwargs.pop(ignored, None) not in (None, False):
                logger.debug("VisionModel ignores %s (weights are kept in float32)", ignored)
        if isinstance(model, str):
            key = ModelKey.parse(model)
            super().__init__(str(key), *args, dispatch=dispatch, device=device or "cpu", **kwargs)
        elif isinstance(model, nn.Module):
            super().__init__(model, *args, dispatch=dispatch, **kwargs)
        else:
            raise InputTypeError(f"VisionModel takes an nn.Module or a model key string, got {type(model).__name__}")

    # ------------------------------------------------------------------ loading (see RemotableEnvoy)
    def load_meta_module(self, key: str) -> nn.Module:
        return ModelKey.parse(key).build_meta()

    def load_module(self, key: str, device: str | torch.device = "cpu") -> nn.Module:
        return ModelKey.parse(key).build(device=device)

    # ------------------------------------------------------------------ batching invokes
    def batch_rows(self, *inputs: Any, **kwargs: Any) -> int:
        """Rows an invoke adds to the batch: ``N`` for images ``[N, C, H, W]``, 1 for one
        image ``[C, H, W]``, 0 for an invoke without input."""
        if not inputs:
            return 0
        images = inputs[0]
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            return images.shape[0]
        return 1

    def batch_inputs(self, invokes: list[tuple]) -> tuple:
        """One forward for several ``tracer.invoke(images)``: their images concatenated on dim 0.

        nnsight then gives each invoke its own rows of every value it reads or writes, so
        e.g. clean and corrupted images run in one forward, each invoke patching or reading
        only its own (as nnsight's language models batch prompts).

        Raises:
            ValueError: invokes whose images differ in ``[C, H, W]`` or dtype, that pass
                more than one positional input, or different keyword inputs.
            TypeError: an invoke whose input is not an image tensor.
        """
        rows = []
        for number, (inputs, kwargs) in enumerate(invokes):
            if len(inputs) != 1 or kwargs != invokes[0][1]:
                raise RSIError(f"batched invokes must each pass one image tensor and the same keyword "
                                 f"inputs; invoke {number} passed {len(inputs)} positional input(s) and "
                                 f"keywords {sorted(kwargs)}")
            images = inputs[0]
            if not isinstance(images, torch.Tensor):
                raise InputTypeError(f"invoke {number} passed a {type(images).__name__}; batched invokes take image "
                                "tensors [N, C, H, W] or [C, H, W]")
            rows.append(images if images.dim() == 4 else images.unsqueeze(0))
        shapes = {(tuple(r.shape[1:]), r.dtype) for r in rows}
        if len(shapes) != 1:
            raise ShapeError("batched invokes need images of one size and dtype to share a forward, got "
                             f"{sorted((list(s), str(d)) for s, d in shapes)}; use one trace per size")
        device = rows[0].device
        return (torch.cat([r.to(device) for r in rows]),), dict(invokes[0][1])

    # ------------------------------------------------------------------ identity (see RemotableEnvoy)
    def remote_key(self) -> str:
        if self.key_text is not None:
            return str(ModelKey.parse(self.key_text))
        return str(model_key(unwrap(self)))

    def check_remote_run(self, remote: Any) -> None:
        """Refuse a bad ``remote=`` or a model without a key before anything is built or sent."""
        host = check_remote(remote)
        if host is not None:
            key = self.to_model_key()  # a ValueError here, before anything is sent, if it has none
            if _PUBLIC_NDIF in host:
                logger.warning("sending %s to the public NDIF service (%s), which serves only the Hugging Face "
                               "language models it has deployed; expect the server to refuse it", key, host)


_SLOT = "_rsi_nnsight"


class _WrapperSlot:
    """Holds a model's nnsight wrapper in the model's ``__dict__``, invisible to copies.

    ``pickle``, ``torch.save`` and ``copy.deepcopy`` of the model store ``None`` in its
    place (an nnsight wrapper holds weak references and its interleaver, which cannot be
    pickled, and a copy must get its own wrapper), so the model pickles as it did before
    it was wrapped; :func:`wrap` builds a new wrapper for the copy on first use. The
    wrapper is not kept in a global ``weakref.WeakKeyDictionary`` because it references
    its model strongly: such a cache would keep every model ever wrapped alive.
    """

    __slots__ = ("envoy",)

    def __init__(self, envoy: VisionModel) -> None:
        self.envoy = envoy

    def __reduce__(self) -> tuple:
        return type(None), ()

    def __deepcopy__(self, memo: dict) -> None:
        return None


def wrap(model: nn.Module | Envoy) -> Envoy:
    """The nnsight wrapper of ``model`` (a :class:`VisionModel`), built on first use and reused.

    nnsight instruments every submodule once, when the wrapper is built (it installs
    its own ``forward`` controllers, inert outside a trace, and no hooks); building a
    wrapper per call would redo that work. The wrapper is kept on the model itself, so
    it lives exactly as long as the model does, in a slot that ``pickle``,
    ``torch.save`` and ``copy.deepcopy`` leave out (a copy gets its own wrapper on first
    use; see :class:`_WrapperSlot`). An nnsight wrapper (any ``Envoy``, e.g.
    ``NNsight`` or a :class:`VisionModel`) passed in is returned as is.

    Args:
        model (nn.Module or NNsight): the model.

    Returns:
        NNsight: the wrapper (a :class:`VisionModel`, whose ``trace`` takes ``remote=``);
        :func:`~rsi_plugin.core.wrapped.unwrap` of it is ``model`` (the module inside a
        parallel or compiled wrapper: ``unwrap(model)``).

    Raises:
        TypeError: neither a module nor an nnsight wrapper.
    """
    if is_envoy(model):
        return model
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module or nnsight.NNsight, got {type(model).__name__}")
    model = unwrap(model)  # the module inside nn.DataParallel / DistributedDataParallel / torch.compile
    slot = model.__dict__.get(_SLOT)
    if isinstance(slot, _WrapperSlot) and isinstance(slot.envoy, VisionModel) and unwrap(slot.envoy) is model:
        return slot.envoy
    envoy = VisionModel(model)
    model.__dict__[_SLOT] = _WrapperSlot(envoy)
    return envoy


def remote_ready(model: nn.Module | str) -> VisionModel:
    """The remote-ready wrapper of a model (the one :func:`rsi_plugin.wrap` keeps), or of a key.

    Args:
        model (nn.Module, VisionModel or str): a model, its wrapper, or a model key.

    Returns:
        VisionModel.

    Raises:
        TypeError: an ``nnsight`` wrapper that is not remote-ready, or another type.
        ValueError: a bad key.
    """
    if isinstance(model, str):
        return VisionModel(model)
    envoy = wrap(model)
    if not is_remotable(envoy):
        raise InputTypeError(f"{type(envoy).__name__} is an nnsight wrapper that cannot run remotely; pass the "
                        "plain model (rsi_plugin wraps it in a VisionModel) instead")
    return envoy
