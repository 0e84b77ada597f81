"""Where a self-hosted NDIF stack lives: its folders, its ports and the server environment it runs in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from rsi_plugin.errors import ConfigError

__all__ = ["ServeConfig", "user_cache_dir", "NDIF_VERSION"]

#: the NDIF server release this module drives (its CPU workarounds are written against it)
NDIF_VERSION = "0.1.2"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rsi-plugin`` (``~/.cache/rsi-plugin`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rsi-plugin"


@dataclass(frozen=True)
class ServeConfig:
    """A self-hosted NDIF stack: redis, an S3-compatible store (moto), a Ray head with NDIF's
    controller, and NDIF's API, all bound to ``host``.

    Attributes:
        home (Path): the stack's state: ``state.json`` (PIDs, URL), ``logs/``, Ray's temp dir,
            the copy of ``rsi_plugin`` the model workers import, deploy files. Default
            ``<user cache>/ndif`` (``RSI_NDIF_HOME`` overrides it).
        venv (Path): the server environment (Python >= 3.12, ``ndif``); default
            ``<user cache>/ndif-venv`` (``RSI_NDIF_VENV`` overrides it), shared by every stack.
        host (str): the address every service binds to (loopback by default; Ray's own
            workers listen on all interfaces whatever it is told, see the README).
        api_port (int): NDIF's API, the URL clients use (``http://host:api_port``).
        redis_port, store_port (int): redis and the object store.
        ray_port, ray_client_port, dashboard_port (int): Ray's GCS, client server
            (``ray://``) and dashboard.
        ray_cpus (int): CPUs Ray may schedule (bookkeeping: the controller and each model
            replica take one).
        threads (int, optional): torch threads of the model workers (``OMP_NUM_THREADS``);
            ``None``: torch's default.
        fake_gpu_bytes (int): on a CPU host, the GPU memory the Ray node advertises so that
            NDIF's controller places models on it (bookkeeping only, nothing is allocated).
    """

    home: Path = field(default_factory=lambda: Path(os.environ.get("RSI_NDIF_HOME") or user_cache_dir() / "ndif"))
    venv: Path = field(default_factory=lambda: Path(os.environ.get("RSI_NDIF_VENV") or user_cache_dir() / "ndif-venv"))
    host: str = "127.0.0.1"
    api_port: int = 8001
    redis_port: int = 6379
    store_port: int = 9000
    ray_port: int = 6385
    ray_client_port: int = 10001
    dashboard_port: int = 8265
    ray_cpus: int = 8
    threads: int | None = None
    fake_gpu_bytes: int = 16 * 1024 ** 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().absolute())
        object.__setattr__(self, "venv", Path(self.venv).expanduser().absolute())
        for name, value in self.ports().items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise ConfigError(f"{name} must be a port number in 1..65535, got {value!r}")
        if len(set(self.ports().values())) != len(self.ports()):
            raise ConfigError(f"ports must differ, got {self.ports()}")
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {self.threads!r}")
        if int(self.ray_cpus) < 2:
            raise ConfigError(f"ray_cpus must be >= 2 (the controller and one model replica), got {self.ray_cpus!r}")

    def with_(self, **changes) -> "ServeConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def ports(self) -> dict[str, int]:
        """The ports the stack listens on, by service (Ray opens more, see :data:`RAY_EXTRA_PORTS`)."""
        return {"api_port": self.api_port, "redis_port": self.redis_port, "store_port": self.store_port,
                "ray_port": self.ray_port, "ray_client_port": self.ray_client_port,
                "dashboard_port": self.dashboard_port}

    @property
    def url(self) -> str:
        """The API URL clients pass as ``remote=``."""
        return f"http://{self.host}:{self.api_port}"

    @property
    def python(self) -> Path:
        """The server environment's interpreter."""
        return self.venv / "bin" / "python"

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"
