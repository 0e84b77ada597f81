"""Names that moved keep resolving, to the same object, with a ``DeprecationWarning`` that names
their home (issue 23 item 4): the root's former exports, the subpackages' former names,
``criteria.equations.ScaleInvariance``. The listed API does not warn.
(pyproject's ``filterwarnings`` ignores DeprecationWarning; ``pytest.warns`` still records it.)"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import rsi_plugin as rsi
from rsi_plugin import ablation, outputs


def _home(package: str, module: str) -> str:
    return module if module.startswith("rsi_plugin") else f"{package}.{module}"


FORMER = [("rsi_plugin", name, _home("rsi_plugin", module)) for name, module in rsi._FORMER.items()]
FORMER += [("rsi_plugin.ablation", name, module) for name, module in ablation._FORMER.items()]
FORMER += [("rsi_plugin.outputs", name, module) for name, module in outputs._FORMER.items()]


def test_every_former_root_name_is_listed():
    assert len(rsi._FORMER) == 41 and not set(rsi._FORMER) & set(rsi._EXPORTS)


@pytest.mark.parametrize(("package", "name", "home"), FORMER, ids=[f"{p}.{n}" for p, n, _ in FORMER])
def test_former_names_warn_naming_their_home_and_return_the_same_object(package, name, home):
    pkg = importlib.import_module(package)
    with pytest.warns(DeprecationWarning, match=rf"{package}\.{name} is deprecated: import {name} from {home}"):
        value = getattr(pkg, name)
    assert value is getattr(importlib.import_module(home), name)
    with pytest.warns(DeprecationWarning):  # every use warns (nothing cached silently)
        getattr(pkg, name)


def test_the_moved_functions_warn_and_return_their_new_home():
    from rsi_plugin.criteria import captum, equations, paper_comparison
    from rsi_plugin import paper

    with pytest.warns(DeprecationWarning, match="import ScaleInvariance from rsi_plugin.criteria.captum"):
        assert equations.ScaleInvariance is captum.ScaleInvariance
    # compare_to_paper moved to criteria with no shim in paper (base layer: a shim would be an upward
    # edge); the root name stays
    assert not hasattr(paper, "compare_to_paper") and rsi.compare_to_paper is paper_comparison.compare_to_paper
    with pytest.raises(AttributeError):
        equations.NotAName  # noqa: B018


@pytest.mark.parametrize("name", sorted(rsi._EXPORTS))
def test_the_listed_api_does_not_warn(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert getattr(rsi, name) is not None


def test_a_fresh_process_loads_the_bundled_models_through_core_alone():
    # core never imports the zoo; the zoo registers "tiny" and "planted" when the package is imported
    code = ("from rsi_plugin.core.models import load_model\n"
            "from rsi_plugin.core.data import model_class_names\n"
            "m = load_model('tiny'); p = load_model('planted')\n"
            "print(m.rsi_info.name, p.rsi_info.name, model_class_names(m)[0], model_class_names(p))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["tiny", "planted", "disc", "None"]
