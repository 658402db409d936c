"""Fixtures for the lab tests: real sdwand processes in network namespaces.

    lab          a netns.Lab for one test, closed (processes killed, namespaces and DPDK
                 files removed) when the test ends, passed or failed
    module_lab   the same, shared by the tests of one module
    sdwand       factory: sdwand(lab, ns, name, config) -> a started netns.Daemon

At session start, leftovers of lab runs whose pytest process is gone are removed.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import netns  # noqa: E402


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        return
    removed = netns.sweep()
    if removed:
        print(f"lab: removed leftovers of earlier runs: {', '.join(removed)}", file=sys.stderr)


def _require_root():
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, hugepages)", pytrace=False)


def _new_lab(request, tmp_path_factory, name):
    _require_root()
    lab = netns.Lab(tmp_path_factory.mktemp(name))
    request.addfinalizer(lab.close)
    return lab


@pytest.fixture
def lab(request, tmp_path_factory):
    return _new_lab(request, tmp_path_factory, "lab")


@pytest.fixture(scope="module")
def module_lab(request, tmp_path_factory):
    return _new_lab(request, tmp_path_factory, request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="session")
def sdwand():
    """sdwand(lab, ns, name, config, timeout=30) starts a daemon and waits until it answers."""
    def start(lab, ns, name, config, timeout=30):
        return netns.Daemon(lab, ns, name, config).start(timeout=timeout)
    return start
