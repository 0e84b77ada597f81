"""The ndif and nnsight internals the server side of ``rsi serve`` reaches into, named in one
table (:mod:`rsi_plugin.serve.ndif_api`) and checked: nnsight's here, ndif's inside the server
venv when there is one (ndif lives only there), and every reach of ``cpu_actor.py`` is listed."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import rsi_plugin
from rsi_plugin.serve.config import ServeConfig
from rsi_plugin.serve.ndif_api import KINDS, NDIF_API, SERVER_NNSIGHT_API, missing

CPU_ACTOR = Path(rsi_plugin.__file__).parent / "serve" / "cpu_actor.py"


def test_nnsight_has_what_the_server_side_relies_on():
    assert missing(SERVER_NNSIGHT_API) == []
    # the check itself finds a name that is not there, of either kind
    wrong = (("nnsight.intervention.envoy", "Envoy.no_such_method", "class"),
             ("nnsight.intervention.envoy", "Envoy.no_such_state", "instance"))
    assert missing(wrong) == ["nnsight.intervention.envoy:Envoy.no_such_method",
                              "nnsight.intervention.envoy:Envoy.no_such_state"]


def test_the_tables_are_well_formed():
    for table, package in ((NDIF_API, "ndif."), (SERVER_NNSIGHT_API, "nnsight.")):
        assert len(set(table)) == len(table)
        for module, dotted, kind in table:
            assert module.startswith(package) and kind in KINDS and dotted and " " not in dotted, (module, dotted, kind)


def test_ndif_has_what_the_server_side_relies_on():
    # read from the server venv's own ndif and nnsight (their source: importing ndif's deployment
    # modules takes half a minute); without a server venv, the table's shape is what can be checked
    python = ServeConfig().venv / "bin" / "python"
    code = ("import json, sys, importlib.util; sys.path.insert(0, sys.argv[1])\n"
            "from rsi_plugin.serve.ndif_api import NDIF_API, SERVER_NNSIGHT_API, missing_in_source\n"
            "has = importlib.util.find_spec('ndif') is not None\n"
            "print(json.dumps(missing_in_source(NDIF_API + SERVER_NNSIGHT_API) if has else None))")
    run = subprocess.run([str(python), "-c", code, str(Path(rsi_plugin.__file__).parent.parent)],
                         capture_output=True, text=True) if python.is_file() else None
    absent = json.loads(run.stdout) if run is not None and run.returncode == 0 else None
    if absent is None:  # no server venv, or no ndif in it
        assert all(module.startswith("ndif.") for module, _, _ in NDIF_API)
        return
    assert absent == [], f"the server venv's ndif / nnsight lack {absent}; update rsi_plugin/serve/ndif_api.py"
    # the source reader finds what is not there
    wrong = ((NDIF_API[1][0], "BaseModelDeployment.no_such_state", "instance"),)
    run = subprocess.run([str(python), "-c", code.replace("NDIF_API + SERVER_NNSIGHT_API", repr(wrong)),
                          str(Path(rsi_plugin.__file__).parent.parent)], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == [f"{NDIF_API[1][0]}:BaseModelDeployment.no_such_state"]


def test_every_reach_of_cpu_actor_is_in_the_table():
    tree = ast.parse(CPU_ACTOR.read_text())
    ndif = {dotted.split(".")[-1] for _, dotted, _ in NDIF_API}
    nnsight = {dotted for _, dotted, _ in SERVER_NNSIGHT_API}
    deployment = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CPUModelDeployment")
    own = {n.name for n in deployment.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    reached = {n.attr for n in ast.walk(deployment)
               if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"}
    overridden = own | {t.id for n in deployment.body if isinstance(n, ast.Assign) for t in n.targets}
    assert overridden - ndif == set(), "CPUModelDeployment overrides names NDIF_API does not list"
    assert reached - own - ndif == set(), "CPUModelDeployment reads ndif state NDIF_API does not list"
    on_remotable = {f"Remotable.{n.attr}" for n in ast.walk(tree)
                    if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "Remotable"}
    patched = {f"Remotable.{c.value}" for n in ast.walk(tree) if isinstance(n, ast.For) and isinstance(n.iter, ast.Tuple)
               for c in n.iter.elts if isinstance(c, ast.Constant)}
    assert on_remotable | patched <= nnsight, sorted((on_remotable | patched) - nnsight)
    assert {"Remotable.describe_checkpoint", "Remotable.max_tp_size"} <= patched
    bases = {ast.unparse(b) for n in tree.body if isinstance(n, ast.ClassDef) for b in n.bases}
    assert {"BaseModelDeployment", "_ControllerActor"} <= bases and {"BaseModelDeployment", "_ControllerActor"} <= ndif
