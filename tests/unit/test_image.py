from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig import image
from rig.errors import UserError

GOOD = """
suite = "sid"
variant = "minbase"
packages = ["openssh-server", "igt-gpu-tools-tests"]
headroom_mib = 256
"""


def test_default_recipe_parses_and_has_what_rig_needs() -> None:
    recipe = image.load_recipe("default")
    assert recipe.suite == "sid" and recipe.variant == "minbase"
    for package in ("igt-gpu-tools-tests", "igt-gpu-tools", "openssh-server", "stress-ng", "kmod", "iproute2", "procps"):
        assert package in recipe.packages


def test_recipe_defaults() -> None:
    recipe = image.parse_recipe(GOOD, "t")
    assert recipe.mirror == "" and recipe.hostname == "rig-guest" and recipe.headroom_mib == 256


def test_bad_recipe_lists_every_problem() -> None:
    text = 'variant = "tiny"\npackages = ["a,b"]\nheadroom_mib = 1\ncolour = "red"\n'
    with pytest.raises(UserError) as info:
        image.parse_recipe(text, "bad")
    message = info.value.message
    for part in ("colour", "'suite'", "variant 'tiny'", "'packages'", "'headroom_mib'"):
        assert part in message


def test_recipe_without_sshd_is_refused() -> None:
    with pytest.raises(UserError, match="openssh-server"):
        image.parse_recipe('suite = "sid"\npackages = ["kmod"]\n', "nossh")


def test_invalid_toml_names_the_recipe() -> None:
    with pytest.raises(UserError, match="'broken' is not valid TOML"):
        image.parse_recipe("suite = ", "broken")


def test_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(UserError) as info:
        image.load_recipe("no-such-recipe")
    assert "default" in (info.value.hint or "")


def test_hash_follows_recipe_and_rig_init(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    one = image.parse_recipe(GOOD, "t")
    two = image.parse_recipe(GOOD.replace("256", "512"), "t")
    assert image.recipe_hash(one) != image.recipe_hash(two)
    assert image.recipe_hash(one) == image.recipe_hash(image.parse_recipe(GOOD, "t"))
    changed_init = tmp_path / "rig-init"
    changed_init.write_text(image.INIT_SCRIPT.read_text() + "# changed\n")
    files = tuple(changed_init if f == image.INIT_SCRIPT else f for f in image.IMAGE_FILES)
    monkeypatch.setattr(image, "IMAGE_FILES", files)
    assert image.recipe_hash(one) != image.recipe_hash(two) and image.recipe_hash(one) != image.recipe_hash(
        image.parse_recipe(GOOD.replace("256", "512"), "t"))


def test_host_mirror_from_deb822(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n")
    assert image.host_mirror(tmp_path) == "http://mirror.example/debian"


def test_host_mirror_from_one_line_format(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n")
    assert image.host_mirror(tmp_path) == "http://m.example/debian"


def test_host_mirror_falls_back_to_debian(tmp_path: Path) -> None:
    assert image.host_mirror(tmp_path) == "http://deb.debian.org/debian"


def test_mmdebstrap_argv() -> None:
    recipe = image.parse_recipe(GOOD, "t")
    argv = image.mmdebstrap_argv(recipe, Path("/t/rootfs"), "http://m/debian")
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv and "--include=openssh-server,igt-gpu-tools-tests" in argv
    assert argv[-3:] == ["sid", "/t/rootfs", "deb http://m/debian sid main"]
    assert any("Check-Valid-Until" in a for a in argv)


def test_cached_image_is_found_by_name_and_hash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path))
    recipe = image.load_recipe("default")
    digest = image.recipe_hash(recipe)
    directory = tmp_path / "images" / f"default-{digest}"
    (directory / "ssh").mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"recipe_hash": digest}))
    assert image.find_image("default") == image.image_at(directory)
    assert image.find_image(digest[:8]) == image.image_at(directory)
    found = image.ensure_image("default", progress=False)  # a cache hit: nothing is built
    assert found.disk == directory / "disk.raw" and found.recipe_hash == digest
    assert [i.recipe_hash for i in image.list_images()] == [digest]


def test_rig_init_is_a_valid_shell_script() -> None:
    import subprocess

    assert subprocess.run(["sh", "-n", str(image.INIT_SCRIPT)]).returncode == 0
    text = image.INIT_SCRIPT.read_text()
    assert "sshd" in text and "sysrq-trigger" in text
    fstab = image.INIT_FSTAB.read_text()
    for fs in ("proc", "sysfs", "devpts", "debugfs", "cgroup2", "tmpfs"):
        assert f" {fs} " in fstab


def test_prune_removes_only_images_no_recipe_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path))
    current = image.recipe_hash(image.load_recipe("default"))
    for name, digest in (("default", current), ("default", "0123456789abcdef"), ("gone-recipe", "fedcba9876543210")):
        directory = tmp_path / "images" / f"{name}-{digest}"
        directory.mkdir(parents=True)
        (directory / "manifest.json").write_text(json.dumps({"recipe": name, "recipe_hash": digest}))
    stale = image.stale_images()
    assert sorted(i.recipe_hash for i in stale) == ["0123456789abcdef", "fedcba9876543210"]
    for item in stale:
        image.remove_image(item)
    assert [i.recipe_hash for i in image.list_images()] == [current]
