"""Everything the library relies on from nnsight, in one module.

The rest of the package talks to nnsight only through the public trace API (``model.trace``,
``model.session``, an envoy's ``.output`` / ``.input``, ``tracer.stop()``, ``.save()``) and
through the names defined here. Where this module has to use more than nnsight's public
surface, it says so:

* :func:`unwrap` reads the wrapped module (``Envoy._module``, documented on ``Envoy``;
  defined in :mod:`rsi_plugin.core.wrapped` so that ``core`` needs no nnsight).
* :func:`envoy_at` is nnsight's ``Envoy.get`` (the root for ``""``).
* :func:`current_mediator` asks nnsight's interleaver whether intervention code is running
  (``Mediator.current``), which is how a nested trace is detected.
* :class:`RemotableEnvoy` is the one subclass of nnsight's wrapper classes
  (``Remotable`` + ``NNsight``). It implements the subclass hooks nnsight documents for a
  wrapper that loads its own module and has a remote identity — ``_load``, ``_load_meta``
  (``Loadable`` / ``Meta``), ``_remoteable_model_key``, ``_remoteable_from_model_key``
  (``Remotable``), ``_batch_size`` / ``_batch`` (``Envoy``'s batching of invokes) — and
  forwards each to a public-named method that :class:`rsi_plugin.access.remote.VisionModel`
  implements without touching nnsight. A ``remote=`` value is checked by overriding the
  public ``trace`` / ``session`` (not nnsight's private ``_remote_backend``).

:data:`NNSIGHT_API` lists the nnsight names this module relies on;
``tests/access/test_nnsight_api.py`` checks each against the installed nnsight, so an
upgrade that renames one fails there, in one place.
"""

from __future__ import annotations

from typing import Any

import nnsight
from nnsight import NNsight
from nnsight.intervention.envoy import Envoy
from nnsight.modeling.mixins.remotable import Remotable

from rsi_plugin.core.wrapped import unwrap

__all__ = ["NNSIGHT_API", "NNsight", "Envoy", "is_envoy", "is_remotable", "is_root_envoy", "envoy_path", "envoy_at", "read_site",
           "write_input", "save", "nnsight_config", "current_mediator", "RemotableEnvoy"]

#: What this module takes from nnsight: ``(module, attribute, parameters its signature must
#: have)``; checked against the installed version by ``tests/access/test_nnsight_api.py``.
NNSIGHT_API: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("nnsight", "NNsight", ()),
    ("nnsight", "save", ()),
    ("nnsight.intervention.envoy", "Envoy", ()),
    ("nnsight.intervention.envoy", "Envoy._module", ()),
    ("nnsight.intervention.envoy", "Envoy.get", ("path",)),
    ("nnsight.intervention.envoy", "Envoy.trace", ()),
    ("nnsight.intervention.envoy", "Envoy.session", ()),
    ("nnsight.intervention.envoy", "Envoy.parent", ()),
    ("nnsight.intervention.envoy", "Envoy._batch_size", ()),
    ("nnsight.intervention.envoy", "Envoy._batch", ("invokes", "fn")),
    ("nnsight.intervention.interleaver", "Mediator.current", ()),
    ("nnsight.modeling.mixins.remotable", "Remotable", ()),
    ("nnsight.modeling.mixins.remotable", "Remotable.trace", ("remote", "backend")),
    ("nnsight.modeling.mixins.remotable", "Remotable.session", ("remote", "backend")),
    ("nnsight.modeling.mixins.remotable", "Remotable.to_model_key", ()),
    ("nnsight.modeling.mixins.remotable", "Remotable.from_model_key", ("model_key",)),
    ("nnsight.modeling.mixins.remotable", "Remotable._remoteable_model_key", ()),
    ("nnsight.modeling.mixins.remotable", "Remotable._remoteable_from_model_key", ("model_key",)),
    ("nnsight.modeling.mixins.meta", "Meta._load_meta", ()),
    ("nnsight.modeling.mixins.meta", "Meta.dispatch", ()),
    ("nnsight.modeling.mixins.loadable", "Loadable._load", ()),
    ("nnsight", "CONFIG", ()),
)


def is_envoy(obj: Any) -> bool:
    """Whether ``obj`` is an nnsight wrapper (an ``Envoy``: ``NNsight``, a ``VisionModel``...)."""
    return isinstance(obj, Envoy)


def is_remotable(obj: Any) -> bool:
    """Whether ``obj`` is an nnsight wrapper whose ``trace`` takes ``remote=``."""
    return isinstance(obj, Remotable)


def is_root_envoy(envoy: Envoy) -> bool:
    """Whether ``envoy`` is the model's own wrapper (not the envoy of a submodule)."""
    return envoy.parent is None


def envoy_path(envoy: Envoy) -> str:
    """The module path nnsight gives an envoy (``"model.layer1"``), for messages."""
    return str(getattr(envoy, "path", "?"))


def envoy_at(envoy: Envoy, path: str) -> Envoy:
    """The envoy of the submodule at a dotted ``path`` (``""``: ``envoy`` itself); nnsight's
    ``Envoy.get`` (digits index ``nn.Sequential`` children)."""
    return envoy.get(path) if path else envoy


def read_site(envoy: Envoy, path: str, attr: str) -> Any:
    """Inside a trace: the ``attr`` (``"output"`` or ``"input"``) of the module at ``path``."""
    module = envoy_at(envoy, path)
    return module.output if attr == "output" else module.input


def write_input(envoy: Envoy, path: str, value: Any) -> None:
    """Inside a trace: replace the first input of the module at ``path`` by ``value``."""
    envoy_at(envoy, path).input = value


def save(value: Any) -> Any:
    """nnsight's ``save``: keep ``value`` (any nesting of tensors) after the trace."""
    return nnsight.save(value)


def nnsight_config() -> Any:
    """nnsight's configuration (``nnsight.CONFIG``: ``API.HOST``, ``API.APIKEY``)."""
    return nnsight.CONFIG


def current_mediator() -> Any:
    """The nnsight mediator running the current intervention code, or ``None`` outside a trace."""
    from nnsight.intervention.interleaver import Mediator

    try:
        return Mediator.current("a residual node")
    except ValueError:  # no intervention code is running: not inside a trace
        return None


class RemotableEnvoy(Remotable, NNsight):
    """An ``NNsight`` wrapper with a remote identity, built from a module or from a key.

    Subclasses implement, without touching nnsight:

    * ``load_module(key, device)`` -> the module a key names, with its weights;
    * ``load_meta_module(key)`` -> its architecture (called on nnsight's meta device);
    * ``remote_key()`` -> the model-specific half of the remote key;
    * ``check_remote_run(remote)`` -> validate a ``remote=`` value before a trace or session
      is built (raise to refuse it);
    * ``batch_rows(*inputs, **kwargs)`` / ``batch_inputs(invokes)`` -> how invokes share a
      forward (``None`` from ``batch_inputs``: nnsight's default).

    Built from a key, :attr:`key_text` is that key; from a module, ``None``.
    """

    # ------------------------------------------------------------------ the public entry points
    def trace(self, *inputs: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend") is None and kwargs.get("remote"):
            self.check_remote_run(kwargs["remote"])
        return super().trace(*inputs, **kwargs)

    def session(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend") is None and kwargs.get("remote"):
            self.check_remote_run(kwargs["remote"])
        return super().session(*args, **kwargs)

    @property
    def key_text(self) -> str | None:
        """The key this wrapper was built from (``None`` when built from a module)."""
        args = getattr(self, "args", ())
        return args[0] if args and isinstance(args[0], str) else None

    # ------------------------------------------------------------------ for subclasses
    def load_module(self, key: str, device: Any = "cpu") -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_meta_module(self, key: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def remote_key(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_remote_run(self, remote: Any) -> None:
        return None

    def batch_rows(self, *inputs: Any, **kwargs: Any) -> int:
        return 1 if inputs else 0

    def batch_inputs(self, invokes: list[tuple]) -> tuple | None:
        return None

    # ------------------------------------------------------------------ nnsight's subclass hooks
    def _load_meta(self, key: str, *args: Any, **kwargs: Any) -> Any:
        return self.load_meta_module(key)

    def _load(self, key: str, *args: Any, device: Any = "cpu", **kwargs: Any) -> Any:
        return self.load_module(key, device=device)

    def _remoteable_model_key(self) -> str:
        return self.remote_key()

    @classmethod
    def _remoteable_from_model_key(cls, model_key: str, **kwargs: Any) -> "RemotableEnvoy":
        return cls(model_key, **kwargs)

    def _batch_size(self, *inputs: Any, **kwargs: Any) -> int:
        return self.batch_rows(*inputs, **kwargs)

    def _batch(self, invokes: list[tuple], fn: Any) -> tuple:
        batched = self.batch_inputs(invokes) if len(invokes) > 1 else None
        return super()._batch(invokes, fn) if batched is None else batched
