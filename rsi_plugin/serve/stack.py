"""Start, watch and stop a self-hosted NDIF stack: redis, the object store, Ray + NDIF's
controller, and NDIF's API.

Every process is started in a session of its own, its PID is written to the stack's
``state.json`` as soon as it exists, and each carries ``RSI_NDIF_HOME=<home>`` in its
environment, inherited by everything it spawns (Ray's raylet, workers and model actors,
gunicorn's workers and dispatcher). :func:`stop` ends the recorded process groups by PID,
then finds any process still carrying the mark (``/proc/<pid>/environ``) and ends it by
PID, so nothing of the stack is left, and nothing else is touched.

On a host without a GPU (``cpu=True``) the Ray head advertises one fake GPU and a
``cuda_memory_bytes`` resource (NDIF's controller places models only on such nodes; this is
bookkeeping, nothing is allocated), and the model actor is
:class:`rsi_plugin.serve.cpu_actor.CPUModelActor`. The API process runs with nnsight's
``PYMOUNT`` off, without which uploads over 1 MB are refused (400).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rsi_plugin.core.atomic import atomic_write_json
from rsi_plugin.serve.config import ServeConfig
from rsi_plugin.serve.env import redis_server, venv_problems
from rsi_plugin.serve.errors import ServeError

__all__ = ["start", "stop", "status", "running", "is_connected", "stack_processes", "stack_env", "SERVICES", "RAY_EXTRA_PORTS"]

logger = logging.getLogger(__name__)

#: the long-running services, in start order (stopped in reverse)
SERVICES: tuple[str, ...] = ("redis", "store", "ray", "api")
#: further fixed ports of the Ray head
RAY_EXTRA_PORTS: dict[str, int] = {"ray object manager": 8076, "ray node manager": 8077,
                                   "ray dashboard agent": 52366, "ray metrics": 8080}
MARK = "RSI_NDIF_HOME"
_CPU_ACTOR = "rsi_plugin.serve.cpu_actor.CPUModelActor"
_CPU_CONTROLLER = "rsi_plugin.serve.cpu_actor.ControllerActor"
_NNSIGHT_API_CONFIG = "APP:\n  PYMOUNT: false\n"


# --------------------------------------------------------------------------- small helpers

def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with _opener().open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def is_connected(url: str, timeout: float = 5.0) -> bool:
    """Whether NDIF's API at ``url`` answers ``/connected`` (its dispatcher reached Ray)."""
    return _http_get(url.rstrip("/") + "/connected", timeout)[0] == 200


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # Ray binds all interfaces: check them all
            return True
        except OSError:
            return False


def _holder(port: int) -> str:
    if shutil.which("ss") is None:
        return ""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout.strip()
    return f" ({out.splitlines()[0].split()[-1]})" if out else ""


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  | " + "\n  | ".join(text) if text else ""


def _wait(check, timeout: float, what: str, log: Path | None, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            raise ServeError(f"{what}: the process exited; see {log}{_tail(log) if log else ''}")
        time.sleep(0.3)
    raise ServeError(f"{what}: not up after {timeout:.0f}s; see {log}{_tail(log) if log else ''}")


def _read_state(config: ServeConfig) -> dict[str, Any] | None:
    try:
        return json.loads(config.state_file.read_text())
    except (OSError, ValueError):
        return None


def _ray_temp(config: ServeConfig) -> Path:
    # Ray's unix socket paths (<temp>/session_<date>_<pid>/sockets/...) must stay under 107 bytes
    inside = config.home / "ray"
    if len(str(inside)) <= 48:
        return inside
    import hashlib

    digest = hashlib.sha1(str(config.home).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"rsi-ndif-ray-{digest}"


def stack_processes(config: ServeConfig) -> list[int]:
    """PIDs of every live process carrying this stack's mark (``RSI_NDIF_HOME=<home>``)."""
    mark = f"{MARK}={config.home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if mark in environ.read().split(b"\0") and _alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return sorted(found)


# --------------------------------------------------------------------------- environment

def _package_copy(config: ServeConfig) -> Path:
    """Copy the client's ``rsi_plugin`` into ``home/site`` for the model workers to import."""
    import rsi_plugin

    site = config.home / "site"
    target = site / "rsi_plugin"
    if target.exists():
        shutil.rmtree(target)
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(rsi_plugin.__file__).parent, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return site


def server_env(config: ServeConfig, cpu: bool, site: Path, ray_temp: Path) -> dict[str, str]:
    """The environment of every process of the stack (the API adds ``NNSIGHT_CONFIG``)."""
    dropped = ("NDIF_", "RAY_", "PYTHON", "VIRTUAL_ENV", "NNSIGHT_", "GUNICORN_", "CONDA_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    loopback = f"127.0.0.1,localhost,{config.host}"
    env.update({
        MARK: str(config.home),
        "PATH": f"{config.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(site),
        "PYTHONNOUSERSITE": "1",
        "NDIF_HOME": str(config.home / "ndif"),
        "NDIF_REDIS_URL": f"redis://{config.host}:{config.redis_port}",
        "NDIF_OBJECT_STORE_URL": f"http://{config.host}:{config.store_port}",
        "NDIF_OBJECT_STORE_ACCESS_KEY": "rsi-local",  # moto accepts any key pair
        "NDIF_OBJECT_STORE_SECRET_KEY": "rsi-local",
        "NDIF_API_URL": config.url,
        "NDIF_API_PORT": str(config.api_port),
        "NDIF_RAY_ADDRESS": f"ray://{config.host}:{config.ray_client_port}",
        "NDIF_RAY_HEAD_PORT": str(config.ray_port),
        "NDIF_RAY_TEMP_DIR": str(ray_temp),
        "NDIF_DEFAULT_DTYPE": "float32",
        "NDIF_MINIMUM_DEPLOYMENT_TIME_SECONDS": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "GRPC_ENABLE_FORK_SUPPORT": "0",
        "NO_PROXY": loopback,
        "no_proxy": loopback,
    })
    if cpu:
        env["NDIF_DEFAULT_MODEL_ACTOR_CLASS"] = _CPU_ACTOR
        env["NDIF_CONTROLLER_IMPORT_PATH"] = _CPU_CONTROLLER
    if config.threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(config.threads)
    return env


def stack_env(config: ServeConfig) -> dict[str, str]:
    """The environment of the running stack's processes (for ``ndif`` CLI calls against it).

    Raises:
        ServeError: no stack has been started from ``config.home``.
    """
    state = _read_state(config)
    if state is None:
        raise ServeError(f"no stack has been started from {config.home}; `rsi serve start` first")
    return server_env(config, bool(state.get("cpu", True)), config.home / "site", Path(state["ray_temp"]))


def _gpu_present() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --------------------------------------------------------------------------- start / stop

def _preflight(config: ServeConfig) -> None:
    problems = venv_problems(config)
    if problems:
        raise ServeError(f"the server environment is not ready ({'; '.join(problems)}); run `rsi serve install` first")
    state = _read_state(config)
    if state and any(_alive(pid) for pid in state.get("pids", {}).values()):
        raise ServeError(f"a stack is already running from {config.home} at {state.get('url')}; "
                         "`rsi serve stop` it first (or use another --home)")
    if stack_processes(config):
        raise ServeError(f"processes of an earlier stack from {config.home} are still running "
                         f"({stack_processes(config)}); run `rsi serve stop` first")
    _check_ports(config)


def _check_ports(config: ServeConfig) -> None:
    """Raises ServeError naming every port of the stack that is already taken (and by what)."""
    taken = {name: port for name, port in {**config.ports(), **RAY_EXTRA_PORTS}.items() if not _port_free(port)}
    if taken:
        listed = ", ".join(f"{port} ({name}){_holder(port)}" for name, port in taken.items())
        raise ServeError(f"port(s) in use: {listed}; stop what holds them or choose other ports "
                         "(`rsi serve start --port` for the API)")


def start(config: ServeConfig | None = None, cpu: bool | None = None, timeout: float = 600.0,
          ray_timeout: float | None = None) -> str:
    """Start the stack and wait until NDIF's API answers ``/connected``.

    Args:
        config (ServeConfig, optional): folders and ports (defaults: the user cache, API on 8001).
        cpu (bool, optional): run models on the CPU (fake GPU bookkeeping + the CPU model
            actor); ``None``: when ``nvidia-smi`` finds no GPU.
        timeout (float): seconds allowed for the whole start (a loaded 2-core machine needs
            50-100 s).
        ray_timeout (float, optional): seconds allowed for Ray alone (default: ``timeout``).

    Returns:
        str: the API URL, for ``remote=`` or ``NDIF_HOST``.

    Raises:
        ServeError: the server venv is not installed, redis is missing, a port is in use, a
            stack already runs from this home, or a service did not come up (the message
            names its log and shows its end). Whatever was started is stopped first.
    """
    config = config or ServeConfig()
    _preflight(config)
    if cpu is None:
        cpu = not _gpu_present()
    began = time.monotonic()
    remaining = lambda: max(5.0, timeout - (time.monotonic() - began))  # noqa: E731
    config.home.mkdir(parents=True, exist_ok=True)
    config.logs.mkdir(parents=True, exist_ok=True)
    ray_temp = _ray_temp(config)
    ray_temp.mkdir(parents=True, exist_ok=True)
    site = _package_copy(config)
    api_config = config.home / "nnsight-api.yaml"
    api_config.write_text(_NNSIGHT_API_CONFIG)
    env = server_env(config, cpu, site, ray_temp)
    state: dict[str, Any] = {"url": config.url, "home": str(config.home), "venv": str(config.venv), "cpu": cpu,
                             "ports": config.ports(), "ray_temp": str(ray_temp), "pids": {},
                             "started": time.time()}
    bin_ = config.venv / "bin"

    def spawn(name: str, command: list[str], extra: dict[str, str] | None = None) -> int:
        log = open(config.logs / f"{name}.log", "ab")
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**env, **(extra or {})}, cwd=config.home, start_new_session=True)
        finally:
            log.close()
        state["pids"][name] = process.pid
        atomic_write_json(config.state_file, state)
        logger.debug("%s started, pid %d: %s", name, process.pid, " ".join(command))
        return process.pid

    def up(name: str, what: str) -> None:
        logger.info("%s up (%.0fs)", what, time.monotonic() - began)

    try:
        logger.info("starting NDIF on %s (%s mode), home %s", config.url, "CPU" if cpu else "GPU", config.home)
        pid = spawn("redis", [str(redis_server(config)), "--bind", config.host, "--port", str(config.redis_port),
                              "--save", "", "--appendonly", "no", "--daemonize", "no"])
        _wait(lambda: _port_open(config.host, config.redis_port), min(60.0, remaining()), "redis",
              config.logs / "redis.log", pid)
        up("redis", "redis")

        pid = spawn("store", [str(bin_ / "moto_server"), "-H", config.host, "-p", str(config.store_port)])
        _wait(lambda: _port_open(config.host, config.store_port), min(120.0, remaining()), "object store (moto)",
              config.logs / "store.log", pid)
        up("store", "object store (moto)")

        pid = spawn("ray", _ray_command(config, cpu, ray_temp))
        _wait(lambda: _port_open(config.host, config.ray_client_port), min(ray_timeout or timeout, remaining()),
              "Ray head", config.logs / "ray.log", pid)
        up("ray", "Ray head")

        log = config.logs / "controller.log"
        with open(log, "ab") as sink:
            launched = subprocess.run([str(config.python), "-m", "ndif.services.ray.deployments.controller.controller"],
                                      stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=config.home,
                                      env={**env, "RAY_ADDRESS": f"{config.host}:{config.ray_port}"},
                                      timeout=remaining())
        if launched.returncode != 0:
            raise ServeError(f"NDIF's controller did not launch (exit {launched.returncode}); see {log}{_tail(log)}")
        up("controller", "NDIF controller")

        pid = spawn("api", [str(bin_ / "gunicorn"), "--config", "python:ndif.services.api.gunicorn_conf",
                            "--bind", f"{config.host}:{config.api_port}", "ndif.services.api.app:app"],
                    {"NNSIGHT_CONFIG": str(api_config), "NDIF_SERVICE": "api"})
        _wait(lambda: is_connected(config.url), remaining(), "NDIF API /connected", config.logs / "api.log", pid)
        up("api", f"NDIF API at {config.url}, connected")
    except BaseException:
        logger.error("start failed; stopping what was started")
        try:
            stop(config)
        except ServeError as error:
            logger.error("%s", error)
        raise
    return config.url


def _ray_command(config: ServeConfig, cpu: bool, ray_temp: Path) -> list[str]:
    if cpu:
        try:
            import psutil

            memory = int(psutil.virtual_memory().total)
        except ImportError:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        resources = {"head": 10, "cuda_memory_bytes": int(config.fake_gpu_bytes), "cpu_memory_bytes": memory}
        gpus = ["--num-gpus=1"]
    else:  # NDIF's own node resources (real GPUs and their memory)
        out = subprocess.run([str(config.python), "-m", "ndif.services.ray.resources", "--head"],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise ServeError(f"could not compute the Ray node's GPU resources: {out.stderr.strip()[-500:]}")
        resources = json.loads(out.stdout.strip().splitlines()[-1])
        gpus = []
    extra = RAY_EXTRA_PORTS
    return [str(config.venv / "bin" / "ray"), "start", "--head", "--block",
            f"--node-ip-address={config.host}", f"--port={config.ray_port}",
            f"--num-cpus={config.ray_cpus}", *gpus, f"--resources={json.dumps(resources)}",
            f"--object-manager-port={extra['ray object manager']}",
            f"--node-manager-port={extra['ray node manager']}",
            "--include-dashboard=true", f"--dashboard-host={config.host}", f"--dashboard-port={config.dashboard_port}",
            f"--dashboard-agent-grpc-port={extra['ray dashboard agent']}",
            f"--metrics-export-port={extra['ray metrics']}",
            f"--ray-client-server-port={config.ray_client_port}", f"--temp-dir={ray_temp}",
            "--disable-usage-stats"]


def _terminate(pids: list[int], grace: float, group: bool) -> list[int]:
    """SIGTERM (the process group when ``group``), wait up to ``grace`` s, then SIGKILL.
    Returns the PIDs that needed SIGKILL."""
    for pid in pids:
        try:
            if group:
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    killed = [p for p in pids if _alive(p)]
    for pid in killed:
        for send in ((lambda: os.killpg(pid, signal.SIGKILL)) if group else (lambda: None),
                     lambda: os.kill(pid, signal.SIGKILL)):
            try:
                send()
            except (ProcessLookupError, PermissionError):
                pass
    for pid in killed:
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return killed


def stop(config: ServeConfig | None = None, grace: float = 30.0) -> list[str]:
    """Stop every process of the stack, by PID; a no-op when nothing runs.

    The recorded services are sent SIGTERM (their whole process group) in reverse start
    order, with ``grace`` seconds before SIGKILL; then any process still carrying the
    stack's mark (a Ray worker that left the group) is ended the same way.

    Returns:
        list of str: what was stopped (``"api (pid 123)"``, ...).

    Raises:
        ServeError: a process of the stack survived SIGKILL.
    """
    config = config or ServeConfig()
    state = _read_state(config) or {}
    stopped = []
    pids = state.get("pids", {})
    for name in reversed(SERVICES):
        pid = pids.get(name)
        if pid is None or not _alive(pid):
            continue
        # Ray's head ignores SIGTERM for long stretches while its children shut down: give it less
        killed = _terminate([pid], min(grace, 10.0) if name == "ray" else grace, group=True)
        stopped.append(f"{name} (pid {pid}{', SIGKILL' if killed else ''})")
        logger.info("stopped %s", stopped[-1])
    left = stack_processes(config)
    if left:
        logger.info("ending %d leftover process(es) of the stack: %s", len(left), left)
        _terminate(left, min(grace, 10.0), group=False)
        stopped.extend(f"leftover (pid {pid})" for pid in left)
    survivors = stack_processes(config)
    if survivors:
        raise ServeError(f"processes of the stack survived SIGKILL: {survivors}")
    if config.state_file.exists():
        config.state_file.unlink()
    ray_temp = state.get("ray_temp")
    if ray_temp and Path(ray_temp).exists() and not str(ray_temp).startswith(str(config.home)):
        shutil.rmtree(ray_temp, ignore_errors=True)
    return stopped


def status(config: ServeConfig | None = None, timeout: float = 10.0, models: bool = True) -> dict[str, Any]:
    """What runs: each service's PID and liveness, whether the API is connected, and the
    deployed models (NDIF's ``/status``, when the API answers).

    Returns:
        dict with ``running`` (bool), ``url``, ``services`` ({name: {"pid", "alive"}}),
        ``connected`` (bool), ``processes`` (PIDs carrying the mark) and ``models``
        (NDIF's status payload, or ``None`` when not asked for with ``models`` or not answered).
    """
    config = config or ServeConfig()
    state = _read_state(config) or {}
    services = {name: {"pid": pid, "alive": _alive(pid)} for name, pid in state.get("pids", {}).items()}
    url = state.get("url", config.url)
    connected = bool(services) and is_connected(url, timeout)
    payload = None
    if connected and models:
        code, body = _http_get(url.rstrip("/") + "/status", timeout)
        if code == 200:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
    return {"running": any(s["alive"] for s in services.values()), "url": url, "services": services,
            "connected": connected, "processes": stack_processes(config), "models": payload,
            "cpu": state.get("cpu")}


@contextmanager
def running(config: ServeConfig | None = None, cpu: bool | None = None, timeout: float = 600.0) -> Iterator[str]:
    """A stack for the duration of a ``with`` block (stopped on exit, also on error).

    Yields:
        str: the API URL.
    """
    config = config or ServeConfig()
    try:
        yield start(config, cpu=cpu, timeout=timeout)
    finally:
        stop(config)

