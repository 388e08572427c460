"""Shared by the test suite (tests/) and the docstring examples (unetkit/, run by `make test` as doctests)."""

import importlib.util
import os

import pytest
import torch

# Small, deterministic, CPU: tests never need more than this, and 2 threads is what CI has.
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("MPLBACKEND", "Agg")
# Qt (the napari plugin's tests) draws into memory: no screen here, in CI or in xdist workers. Set before any
# Qt application exists, which is what decides the platform.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The plugin's widget imports napari; without the napari extra its doctests are not collected (its tests skip).
if importlib.util.find_spec("napari") is None:
    collect_ignore = ["unetkit/napari/widget.py"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """unetkit's cache (unpacked bundle zips, fetched data) in the test's own folder, never the user's."""
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
