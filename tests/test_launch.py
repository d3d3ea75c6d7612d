"""The ``xmem`` command's launcher and the lazy package namespace."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

import xmem
import xmem.cli
from xmem import launch


def test_import_xmem_does_not_load_torch_until_a_name_is_used():
    """``import xmem`` is light; the public names load their modules on first use."""
    code = (
        "import sys, xmem\n"
        "assert 'torch' not in sys.modules, 'torch imported by import xmem'\n"
        "assert xmem.__version__\n"
        "from xmem import InferenceConfig, load_model\n"
        "assert 'torch' in sys.modules and load_model is xmem.load_model\n"
        "assert set(xmem.__all__) <= set(dir(xmem))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(AttributeError, match="NoSuchName"):
        xmem.NoSuchName  # noqa: B018


def test_launcher_runs_the_command_with_the_collector_on_and_the_imports_frozen(monkeypatch):
    """launch.main pauses the garbage collector for the imports only: the command runs with it enabled,
    the objects of the imports frozen out of its collections, and its exit status is returned."""
    seen = {}

    def fake_main() -> int:
        seen["enabled"], seen["frozen"] = gc.isenabled(), gc.get_freeze_count()
        return 7

    monkeypatch.setattr(xmem.cli, "main", fake_main)
    try:
        assert launch.main() == 7
    finally:
        gc.unfreeze()
    assert seen["enabled"] is True and seen["frozen"] > 1000
    assert gc.isenabled()


def test_python_dash_m_xmem_runs_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "xmem", "info", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "usage: xmem info" in proc.stdout, proc.stderr
