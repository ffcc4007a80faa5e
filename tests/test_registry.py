"""The registry: decorator, duplicate names, unknown names, entry-point plugins."""
from __future__ import annotations

import sys
import textwrap

import pytest

from da.errors import DAError
from da.registry import ADAPTERS, Registry


def test_decorator_registers_and_get_returns_it():
    reg: Registry = Registry("thing")

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A
    assert reg.names() == ["a"]
    assert "a" in reg and "b" not in reg


def test_duplicate_name_is_an_error_naming_both():
    reg: Registry = Registry("thing")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(DAError, match="already registered"):
        @reg.register("a")
        class B:
            pass

    assert reg.get("a") is A


def test_unknown_name_lists_valid_names_and_nearest():
    reg: Registry = Registry("adapter")
    for name in ("dann", "mmd"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(DAError) as info:
        reg.get("dan")
    assert "'dann'" in str(info.value) and "dann, mmd" in str(info.value)


def test_builtin_adapters_are_registered():
    assert {"source_only", "dann", "mmd", "coral", "subspace"} <= set(ADAPTERS.names())


def _install_plugin(tmp_path, monkeypatch, package: str, module: str, body: str) -> None:
    """A package that ``importlib.metadata`` sees, as ``pip install`` would leave it."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    dist = tmp_path / f"{package}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n{module} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


GROUP = "da.test_adapters"


@pytest.fixture
def fresh_adapters(monkeypatch):
    """The global adapter registry, reading a test-only entry-point group, restored afterwards."""
    monkeypatch.setattr(ADAPTERS, "_entries", dict(ADAPTERS._entries))
    monkeypatch.setattr(ADAPTERS, "_plugins_loaded", False)
    monkeypatch.setattr(ADAPTERS, "plugin_errors", [])
    monkeypatch.setattr(ADAPTERS, "entry_point_group", GROUP)
    return ADAPTERS


GOOD = """
    from da import Adapter, register_adapter

    @register_adapter("plugin_zero")
    class PluginZero(Adapter):
        description = "a plugin adapter"
        aligns_by_gradient = False
    """


def test_entry_point_plugin_is_discovered_without_importing_it(tmp_path, monkeypatch, fresh_adapters):
    _install_plugin(tmp_path, monkeypatch, "good-plugin", "good_plugin_mod", GOOD)
    assert "good_plugin_mod" not in sys.modules
    assert "plugin_zero" in fresh_adapters.names()
    assert fresh_adapters.get("plugin_zero").description == "a plugin adapter"
    assert fresh_adapters.plugin_errors == []


def test_broken_plugins_are_reported_by_package_and_the_rest_still_load(tmp_path, monkeypatch, fresh_adapters):
    _install_plugin(tmp_path, monkeypatch, "good-plugin", "good_plugin_mod2", GOOD.replace("plugin_zero", "plugin_ok"))
    _install_plugin(tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path, monkeypatch,
                    "broken-plugin", "broken_plugin_mod", "import not_a_module_anywhere\n")
    _install_plugin(tmp_path / "c" if (tmp_path / "c").mkdir() is None else tmp_path, monkeypatch,
                    "clash-plugin", "clash_plugin_mod", GOOD.replace("plugin_zero", "dann"))
    with pytest.warns(UserWarning):
        names = fresh_adapters.names()
    assert "plugin_ok" in names and "dann" in names
    errors = " | ".join(fresh_adapters.plugin_errors)
    assert "broken-plugin" in errors and "not_a_module_anywhere" in errors
    assert "clash-plugin" in errors and "already registered" in errors
    assert fresh_adapters.get("dann").__module__ == "da.adapters.dann"
