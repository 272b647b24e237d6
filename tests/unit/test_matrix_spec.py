"""The matrix file: its shape, every problem at once, and the expansion into cells."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.matrix import cells, spec

REPO = Path(__file__).resolve().parent.parent.parent
SERIES_PATCH = REPO / "tests/data/series/build-one-drm-patch/0001-drm-shmem-helper-say-when-pages-are-pinned.patch"

ISSUE_EXAMPLE = """
[axes]
kernel = ["debian:6.1", "debian:6.12", "debian:7.2"]
gpu = ["virtio-gpu", "bochs"]
series = ["tests/data/series/lockdep", "tests/data/series/harmless"]
[settings]
plan = "smoke"
repeat = 1
[[exclude]]
kernel = "debian:7.2"
gpu = "bochs"
"""


def parse(text: str, where: Path = REPO) -> spec.MatrixSpec:
    return spec.parse(text, where / "matrix.toml")


def problems_of(text: str, where: Path = REPO) -> list[str]:
    with pytest.raises(UserError) as info:
        parse(text, where)
    assert info.value.exit_code == 2
    return [line.strip() for line in info.value.message.splitlines()[1:]]


def test_the_issue_example_expands_to_ten_cells_with_stable_names() -> None:
    matrix = parse(ISSUE_EXAMPLE)
    expanded = cells.expand(matrix)
    assert len(expanded) == 3 * 2 * 2 - 2
    assert [c.id for c in expanded][:2] == ["6.1_virtio-gpu_lockdep", "6.1_virtio-gpu_harmless"]
    assert not any(c.kernel == "debian:7.2" and c.gpu == "bochs" for c in expanded)
    assert {c.plan for c in expanded} == {"smoke"} and {c.pressure for c in expanded} == {"balloon"}
    assert cells.varying_axes(expanded) == ("kernel", "gpu", "series")
    # paths are relative to the matrix file
    assert matrix.resolve("series", "tests/data/series/lockdep") == str(REPO / "tests/data/series/lockdep")
    assert parse(ISSUE_EXAMPLE) == matrix and [c.id for c in cells.expand(parse(ISSUE_EXAMPLE))] == \
        [c.id for c in expanded]


def test_every_problem_is_listed_at_once() -> None:
    found = problems_of("""
[axes]
kernel = ["debian:6.1", "debian:5.10"]
gpu = []
colour = ["red"]
pressure = ["balloon", "squeeze"]
plan = ["smoke", "no-such-plan"]
[settings]
retries = 9
repeat = 3
flavour = "x"
[[exclude]]
kernel = "debian:6.1"
gpu = "bochs"
[[exclude]]
kernel = "debian:6.1"
pressure = "none"
""")
    text = "\n".join(found)
    assert "axes.colour: unknown axis" in text
    assert "axes.gpu: empty axis" in text
    assert "axes.kernel = 'debian:5.10': unknown kernel spec" in text
    assert "axes.pressure = 'squeeze'" in text and "not a pressure profile" in text
    assert "axes.plan = 'no-such-plan'" in text
    assert "settings.retries = 9: give 0 to 5" in text
    assert "settings.repeat = 3" in text and "settings.flavour: unknown setting" in text
    assert "[[exclude]] 1: gpu is not an axis of [axes]" in text
    assert "[[exclude]] 2 (kernel = 'debian:6.1', pressure = 'none') matches no cell" in text
    assert len(found) >= 10


def test_toml_syntax_error_is_bad_input() -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        parse("[axes\nkernel = 1")


def test_missing_series_and_kernel_paths_are_named(tmp_path: Path) -> None:
    found = problems_of('[axes]\nseries = ["patches/v2/", "v6.1..topic"]\nkernel = ["../no-linux"]\n', tmp_path)
    assert any("axes.series = 'patches/v2/': no such file or directory" in p for p in found)
    assert not any("v6.1..topic" in p for p in found)  # a git range is not a path
    assert any("axes.kernel = '../no-linux': unknown kernel spec" in p for p in found)


def test_a_gpu_of_another_architecture_is_named_per_cell() -> None:
    found = problems_of('[axes]\narch = ["x86_64", "arm64"]\ngpu = ["bochs", "virtio-gpu"]\n')
    assert found == ["the cell debian:6.1/arm64/bochs/default/default/balloon asks for gpu bochs on arm64, "
                     "which does not have it (exclude it)"]
    fixed = parse('[axes]\narch = ["x86_64", "arm64"]\ngpu = ["bochs", "virtio-gpu"]\n'
                  '[[exclude]]\narch = "arm64"\ngpu = "bochs"\n')
    assert len(cells.expand(fixed)) == 3


def test_include_extends_matching_cells_or_adds_its_own() -> None:
    matrix = parse("""
[axes]
kernel = ["debian:6.1", "debian:6.12"]
[[include]]
kernel = "debian:6.12"
pressure = "none"
[[include]]
kernel = "debian:7.2"
gpu = "bochs"
""")
    by_kernel = {c.kernel: c for c in cells.expand(matrix)}
    assert by_kernel["debian:6.1"].pressure == "balloon"
    assert by_kernel["debian:6.12"].pressure == "none"  # extended, not added
    assert by_kernel["debian:7.2"].gpu == "bochs" and len(by_kernel) == 3


def test_cells_whose_short_names_collide_get_distinct_ids(tmp_path: Path) -> None:
    for name in ("a/v2", "b/v2"):  # two series, each a directory holding a patch
        (tmp_path / name).mkdir(parents=True)
        shutil.copy(SERIES_PATCH, tmp_path / name)
    ids = [c.id for c in cells.expand(parse('[axes]\nseries = ["a/v2", "b/v2"]\n', tmp_path))]
    assert len(set(ids)) == 2 and all(i.startswith("v2-") for i in ids)


def test_the_cli_exits_2_with_every_problem(tmp_path: Path, capsys) -> None:
    from rig.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[axes]\nkernel = ["debian:9.9"]\ngpu = []\n[[exclude]]\nkernel = "debian:6.1"\n')
    for action in (["run", str(bad)], ["export", str(bad)]):
        assert main(["matrix", *action]) == 2
        err = capsys.readouterr().err
        assert "has 3 problems" in err and "debian:9.9" in err and "empty axis" in err and "matches no cell" in err
    bad.write_text("[axes\n")
    assert main(["matrix", "run", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_the_cli_lists_cells_and_their_builds(tmp_path: Path, capsys) -> None:
    from rig.cli import main

    matrix = tmp_path / "m.toml"
    matrix.write_text(ISSUE_EXAMPLE.replace("tests/data", str(REPO / "tests/data")))
    assert main(["matrix", "run", str(matrix), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith("6.1_virtio-gpu_lockdep\tbuild 6.1-x86_64-default-lockdep-")
    assert main(["matrix", "run", str(matrix), "--cell", "nope"]) == 2
