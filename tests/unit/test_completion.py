"""rig's completion script, run in a real bash as bash runs it on Tab."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rig import cli
from rig.completion import bash, commands, zsh

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "rig.bash"
    path.write_text(bash(cli.build_parser()))
    return path


def complete(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    """What Tab offers at the end of `line`."""
    driver = (f'source {script}; COMP_LINE="$1"; COMP_POINT=${{#1}}; read -ra COMP_WORDS <<< "$1"; '
              'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); [[ $1 == *" " ]] && COMP_CWORD=${#COMP_WORDS[@]}; '
              '_rig; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", driver, "bash", line], capture_output=True, text=True, timeout=30,
                         check=True, cwd=cwd)
    return [w for w in out.stdout.splitlines() if w]


def test_subcommands_and_their_subcommands(script: Path) -> None:
    top = complete(script, "rig ")
    assert {"run", "build", "boot", "image", "qemu", "splat", "completion"} <= set(top)
    assert complete(script, "rig im") == ["image"]
    assert set(complete(script, "rig image ")) == {"build", "list", "prune", "show"}
    assert "--rebuild" in complete(script, "rig image build --")


def test_options_of_the_command_being_typed(script: Path) -> None:
    assert complete(script, "rig run --pl") == ["--plan"]
    assert "--each-patch" in complete(script, "rig build --")
    assert "--each-patch" not in complete(script, "rig splat --")
    assert complete(script, "rig boot --dry") == ["--dry-run"]


def test_plans_profiles_gpu_models_and_kernels(script: Path, tmp_path: Path) -> None:
    assert {"default", "smoke", "kunit"} <= set(complete(script, "rig run --plan ", cwd=tmp_path))
    assert set(complete(script, "rig build --profile k")) == {"kasan", "kunit"}
    assert set(complete(script, "rig boot --gpu virtio")) == {"virtio-gpu", "virtio-vga"}
    assert "mali" in complete(script, "rig run --arch arm64 --gpu ")
    assert set(complete(script, "rig run --arch ")) == {"x86_64", "arm64"}
    # bash splits words at the colon: the answers must not repeat "debian:"
    assert set(complete(script, "rig run --kernel debian:6.", cwd=tmp_path)) == {"6.1", "6.12"}
    assert "balloon" in complete(script, "rig run --pressure ")


def test_paths_where_a_path_is_asked(script: Path, tmp_path: Path) -> None:
    (tmp_path / "my-plan.toml").write_text("")
    (tmp_path / "series").mkdir()
    assert "my-plan.toml" in complete(script, "rig run --plan m", cwd=tmp_path)
    assert complete(script, "rig build --series se", cwd=tmp_path) == ["series"]
    assert complete(script, "rig run --retries ", cwd=tmp_path) == []  # a number: nothing to offer


def test_nothing_after_the_guest_command_starts(script: Path) -> None:
    assert complete(script, "rig boot --bzimage bzImage -- un") == []


def test_every_option_of_the_parser_is_in_the_script() -> None:
    text = bash(cli.build_parser())
    for command in commands(cli.build_parser()):
        for option in command.options:
            assert option in text, (command.path, option)


def test_zsh_reads_the_same_script_through_bashcompinit() -> None:
    text = zsh(cli.build_parser())
    assert text.startswith("#compdef rig") and "bashcompinit" in text and "complete -o filenames -F _rig rig" in text


def test_rig_completion_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    assert "complete -o filenames -F _rig rig" in capsys.readouterr().out
