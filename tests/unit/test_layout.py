"""The test session's layout on two workers (tests/layout.py): which node ids make the
arm64 chain."""

from __future__ import annotations

import pytest

from tests.layout import ARM64_CHAIN, scope_of


@pytest.mark.parametrize(("nodeid", "chain"), [
    ("tests/slow/test_panfrost.py::test_an_injected_hang_is_reported", True),
    ("tests/slow/test_boot.py::test_rig_boot_runs_a_command[arm64]", True),
    ("tests/slow/test_boot.py::test_rig_boot_runs_a_command[x86_64]", False),
    ("tests/slow/test_run.py::test_with_params[arm64-bochs]", True),
    ("tests/slow/test_run.py::test_with_params[arm64x-bochs]", False),
    ("tests/slow/test_build.py::test_each_patch_names_the_patch_that_breaks_the_build", False),
    ("tests/unit/test_target.py::test_arches[arm64]", False),  # the unit tier stays apart
    ("tests/unit/test_arm64.py::test_anything", False),
])
def test_the_arm64_chain_is_told_by_node_id(nodeid: str, chain: bool) -> None:
    assert (scope_of(nodeid) == ARM64_CHAIN) is chain
    if not chain:
        assert scope_of(nodeid) == nodeid  # every other test is a unit of its own
