from __future__ import annotations

import subprocess
import sys

import pytest

from rig import cli
from rig.errors import InfraError, KernelError, UserError


def test_help_lists_every_subcommand_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for module in cli._command_modules():
        with pytest.raises(SystemExit) as exit_info:
            cli.main([module.NAME, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and "rig " + module.NAME in out


@pytest.mark.parametrize("error, code", [(UserError, 2), (InfraError, 3), (KernelError, 1)])
def test_exit_code_follows_whose_fault(error: type, code: int) -> None:
    assert error("x").exit_code == code


def test_python_dash_m_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "rig", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("rig ")
