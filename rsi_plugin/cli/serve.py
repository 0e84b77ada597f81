"""``rsi serve``: run your own NDIF server for remote traces (install, start, deploy, status, stop)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="a self-hosted NDIF server for remote= runs: install, start, deploy, status, stop")
    actions = parser.add_subparsers(dest="serve_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", default=None, help="the stack's state folder (default <user cache>/rsi-plugin/ndif)")
        p.add_argument("--venv", default=None, help="the server venv (default <user cache>/rsi-plugin/ndif-venv)")
        p.set_defaults(run=run)

    p = actions.add_parser("install", help="build the server venv (Python >= 3.12, ndif, moto, torch; once)")
    p.add_argument("--python", default=None, help="a python3.12 / python3.13 to build it from (default: found)")
    common(p)
    p = actions.add_parser("start", help="start redis, the object store, Ray + NDIF's controller and the API")
    p.add_argument("--port", type=int, default=8001, help="the API's port (default 8001)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--cpu", action="store_true", help="run models on the CPU (the default when no GPU is found)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the model workers")
    p.add_argument("--timeout", type=float, default=600, help="seconds allowed to come up (default 600)")
    common(p)
    p = actions.add_parser("deploy", help="deploy models by key, e.g. torchvision:resnet18:IMAGENET1K_V1 rsi:tiny")
    p.add_argument("keys", nargs="+", metavar="MODEL_KEY", help="model keys (see rsi_plugin.access.remote.ModelKey)")
    p.add_argument("--replicas", type=int, default=1, help="replicas to add per model (default 1)")
    p.add_argument("--unpinned", action="store_true", help="let NDIF evict the model to make room")
    common(p)
    p = actions.add_parser("status", help="what runs, whether the API is connected, the deployed models")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    common(p)
    p = actions.add_parser("stop", help="stop every process of the stack, by PID")
    common(p)
    parser.set_defaults(run=lambda args: parser.print_help() or 2)


def _config(args: argparse.Namespace, **ports):
    from rsi_plugin.serve import ServeConfig

    fields = {k: v for k, v in {"home": args.home, "venv": args.venv, **ports}.items() if v is not None}
    return ServeConfig(**fields)


def run(args: argparse.Namespace) -> int:
    from rsi_plugin import serve

    try:
        if args.serve_command == "install":
            python = serve.install(_config(args), python=args.python)
            print(f"server environment ready: {python}")
        elif args.serve_command == "start":
            config = _config(args, api_port=args.port, host=args.host, threads=args.threads)
            url = serve.start(config, cpu=True if args.cpu else None, timeout=args.timeout)
            print(f"NDIF is up at {url}\n  deploy:  rsi serve deploy torchvision:resnet18:random@0\n"
                  f"  use:     rsi.capture(model, x, blocks=['2.1'], remote='{url}')  (or NDIF_HOST={url})\n"
                  "  stop:    rsi serve stop")
        elif args.serve_command == "deploy":
            for key in serve.deploy(args.keys, _config(args), pinned=not args.unpinned, replicas=args.replicas):
                print(f"deployed {key}")
        elif args.serve_command == "status":
            state = serve.status(_config(args))
            if args.json:
                print(json.dumps(state, indent=1, default=str))
            else:
                _print_status(state)
            return 0 if state["running"] else 1
        elif args.serve_command == "stop":
            stopped = serve.stop(_config(args))
            print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    except serve.ServeError as error:
        print(f"rsi serve {args.serve_command}: error: {error}", file=sys.stderr)
        return 1
    return 0


def _print_status(state: dict) -> None:
    if not state["services"]:
        print("no NDIF stack started from this home")
        return
    print(f"{state['url']}: {'connected' if state['connected'] else 'NOT connected'}"
          f" ({'CPU' if state.get('cpu') else 'GPU'} mode)")
    for name, info in state["services"].items():
        print(f"  {name:6s} pid {info['pid']:>7}  {'running' if info['alive'] else 'not running'}")
    print(f"  {len(state['processes'])} process(es) of the stack in all")
    models = state.get("models")
    if isinstance(models, dict):
        deployments = models.get("deployments", models)
        names = list(deployments) if isinstance(deployments, dict) else deployments
        print("  models: " + (", ".join(map(str, names)) if names else "none deployed"))
