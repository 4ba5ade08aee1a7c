"""setup.py's floors hold for what is installed, and the jax APIs llmjax relies on exist."""
import ast
import os
from importlib import metadata

import jax
import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _install_requires():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = next(k for k in call.keywords if k.arg == "install_requires")
    return [Requirement(r) for r in ast.literal_eval(kw.value)]


def test_jax_floor_is_the_first_release_with_set_mesh():
    floors = {r.name: r.specifier for r in _install_requires()}
    assert floors["jax"].contains("0.7.1") and not floors["jax"].contains("0.7.0")


@pytest.mark.parametrize("req", _install_requires(), ids=str)
def test_installed_version_satisfies_the_floor(req):
    assert req.specifier.contains(metadata.version(req.name), prereleases=True), \
        f"{req.name} {metadata.version(req.name)} does not satisfy {req}"


def test_the_jax_apis_llmjax_uses_exist():
    from jax.experimental import multihost_utils
    from jax.sharding import AxisType

    mesh = jax.make_mesh((1,), ("x",), axis_types=(AxisType.Auto,), devices=jax.devices()[:1])
    with jax.set_mesh(mesh):
        pass
    for name in ("make_array_from_process_local_data", "checkpoint_policies", "ShapeDtypeStruct"):
        assert hasattr(jax, name), name
    assert hasattr(jax.nn, "dot_product_attention") and hasattr(jax.distributed, "is_initialized")
    assert hasattr(multihost_utils, "reached_preemption_sync_point")
