"""A self-hosted NDIF server for this library's models: ``rsi serve`` as a library.

NDIF (https://github.com/ndif-team/ndif, ``pip install ndif``) runs nnsight traces sent
with ``remote=``. Its public service hosts only language models; this package installs,
starts, deploys on and stops your own, on loopback, CPU or GPU::

    from rsi_plugin import serve

    serve.install()                                   # once: a Python 3.12 venv with ndif
    url = serve.start(serve.ServeConfig(api_port=8001))
    serve.deploy(["torchvision:resnet18:random@0", "rsi:tiny"])
    acts = rsi.capture(model, x, blocks=["2.1"], remote=url)
    serve.stop()

=========================  ===================================================================
:class:`ServeConfig`        folders (user cache by default) and ports
:func:`install`             the server venv: Python >= 3.12, ``ndif[api,ray]``, moto, torch
:func:`start`, :func:`stop`  redis, the object store (moto), Ray + NDIF's controller, the API
:func:`status`              PIDs, ``/connected``, deployed models
:func:`deploy`              models by key, with ``size_bytes`` from the architecture
:func:`running`             a stack for the length of a ``with`` block
=========================  ===================================================================

Nothing here imports ``ray`` or ``ndif`` on the client; :mod:`rsi_plugin.serve.cpu_actor`
is the server-side part, and :mod:`rsi_plugin.serve.ndif_api` lists the ndif and nnsight
internals it relies on.
"""

from __future__ import annotations

from rsi_plugin.serve.config import NDIF_VERSION, ServeConfig, user_cache_dir
from rsi_plugin.serve.deploy import deploy, deploy_spec, full_key
from rsi_plugin.serve.env import find_python, install, server_requirements, venv_problems
from rsi_plugin.serve.errors import ServeError
from rsi_plugin.serve.stack import is_connected, running, stack_processes, start, status, stop

__all__ = ["NDIF_VERSION", "ServeConfig", "ServeError", "user_cache_dir", "install", "find_python",
           "server_requirements", "venv_problems", "start", "stop", "status", "running", "is_connected",
           "stack_processes", "deploy", "deploy_spec", "full_key"]
