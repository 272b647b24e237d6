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


# ---------------------------------------------------------------- architectures


def test_arm64_recipe_has_what_rig_needs_and_no_igt() -> None:
    recipe = image.load_recipe("arm64")
    assert recipe.arch == "arm64" and recipe.debian_arch == "arm64" and recipe.suite == "sid"
    for package in ("openssh-server", "stress-ng", "kmod", "iproute2", "procps", "python3", "mount"):
        assert package in recipe.packages
    assert not [p for p in recipe.packages if p.startswith("igt")]
    assert image.default_recipe("arm64") == "arm64" and image.default_recipe("x86_64") == "default"


def test_x86_64_recipes_keep_the_hash_they_had_before_arch_existed() -> None:
    recipe = image.parse_recipe(GOOD, "t")
    explicit = image.parse_recipe(GOOD + 'arch = "x86_64"\n', "t")
    assert recipe.arch == "x86_64" and recipe == explicit
    # The canonical text, and so the cache key of the warm default image, has no arch in it.
    assert json.loads(recipe.canonical()) == {
        "name": "t", "suite": "sid", "variant": "minbase", "mirror": "", "packages": ["openssh-server", "igt-gpu-tools-tests"],
        "hostname": "rig-guest", "headroom_mib": 256}


def test_architectures_have_different_cache_keys() -> None:
    x86 = image.parse_recipe(GOOD, "t")
    arm = image.parse_recipe(GOOD + 'arch = "arm64"\n', "t")
    assert json.loads(arm.canonical())["arch"] == "arm64"
    assert image.recipe_hash(x86) != image.recipe_hash(arm) and image.image_key(x86) != image.image_key(arm)


def test_unknown_arch_is_listed_with_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"arch 'sparc' is not one rig builds images for \(x86_64, arm64\)"):
        image.parse_recipe(GOOD + 'arch = "sparc"\n', "t")


@pytest.mark.parametrize(("host", "foreign"), [("x86_64", True), ("aarch64", False)])
def test_mmdebstrap_argv_of_arm64(monkeypatch: pytest.MonkeyPatch, host: str, foreign: bool) -> None:
    monkeypatch.setattr(image.platform, "machine", lambda: host)
    recipe = image.parse_recipe(GOOD + 'arch = "arm64"\n', "t")
    assert recipe.foreign is foreign
    argv = image.mmdebstrap_argv(recipe, Path("/t/rootfs"), "http://m/debian")
    assert "--architectures=arm64" in argv
    assert ("--skip=check/qemu" in argv) is foreign  # rig's own binfmt entry stands in
    assert argv[-3:] == ["sid", "/t/rootfs", "deb http://m/debian sid main"]


def test_only_a_foreign_build_registers_qemu_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.platform, "machine", lambda: "x86_64")
    asked: list[str] = []

    def registered(qemu_arch: str, **_: object) -> object:
        asked.append(qemu_arch)
        return image.contextlib.nullcontext()

    monkeypatch.setattr(image.binfmt, "registered", registered)
    with image._emulation(image.parse_recipe(GOOD, "t"), print):
        pass
    assert asked == []
    with image._emulation(image.parse_recipe(GOOD + 'arch = "arm64"\n', "t"), print):
        pass
    assert asked == ["aarch64"]


def test_an_image_of_another_arch_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path))
    with pytest.raises(UserError, match="'arm64' is for arm64, not x86_64") as info:
        image.ensure_image("arm64", progress=False, arch="x86_64")
    assert "default" in (info.value.hint or "")
    assert not (tmp_path / "images").exists() or not list((tmp_path / "images").iterdir())


def test_mounts_below_a_directory_deepest_first(tmp_path: Path) -> None:
    staging = tmp_path / "st age"
    mounts = tmp_path / "mounts"
    mounts.write_text(
        f"sysfs /sys sysfs rw 0 0\n"
        f"sysfs {tmp_path}/st\\040age/rootfs/sys sysfs rw 0 0\n"
        f"cgroup2 {tmp_path}/st\\040age/rootfs/sys/fs/cgroup cgroup2 rw 0 0\n"
        f"proc {tmp_path}/st\\040ager/proc proc rw 0 0\n")
    assert image._mounts_below(staging, mounts) == [staging / "rootfs/sys/fs/cgroup", staging / "rootfs/sys"]


def test_a_failed_build_is_not_deleted_through_a_mount(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    (staging / "rootfs/sys").mkdir(parents=True)
    (staging / "rootfs/sys/host-file").write_text("the host's")
    ran: list[list[str]] = []
    monkeypatch.setattr(image, "_mounts_below", lambda directory: [staging / "rootfs/sys"])  # umount did not help
    monkeypatch.setattr(image.proc, "run", lambda argv, **_: ran.append([str(a) for a in argv]))
    image._discard(staging)
    assert ran == [["umount", "--recursive", "--lazy", str(staging / "rootfs/sys")]]
    assert (staging / "rootfs/sys/host-file").read_text() == "the host's"
    monkeypatch.setattr(image, "_mounts_below", lambda directory: [])
    image._discard(staging)
    assert not staging.exists()


def _fake_image(cache: Path, recipe: str, arch: str | None, igt: str | None) -> str:
    digest = image.recipe_hash(image.load_recipe(recipe))
    directory = cache / "images" / f"{recipe}-{digest}"
    (directory / "ssh").mkdir(parents=True)
    manifest = {"recipe": recipe, "recipe_hash": digest, "igt_version": igt, "disk_bytes": 1 << 30,
                "content_bytes": 1 << 29, "built_at": "2026-11-29T03:00:00+00:00", "mirror": "http://m/debian",
                "packages": {"openssh-server": "1:10.2p1-1"},
                "recipe_content": {"suite": "sid", "variant": "minbase", "packages": ["openssh-server"]}}
    if arch is not None:
        manifest["arch"] = arch
    if recipe == "arm64":
        manifest["programs"] = {"/usr/local/bin/rig-panfrost": "0123456789abcdef" * 4}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return digest


def _image_command(*argv: str) -> int:
    """`rig image ARGV` through the command's own parser and run()."""
    import argparse

    from rig.commands import image as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(list(argv)))


def test_cli_shows_and_lists_an_image_without_igt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path))
    arm = _fake_image(tmp_path, "arm64", "arm64", None)
    x86 = _fake_image(tmp_path, "default", None, "2.5-1")  # a manifest from before arch existed
    assert _image_command("show", "--arch", "arm64") == 0
    shown = capsys.readouterr().out
    assert arm in shown and "arch         arm64" in shown and "IGT          none" in shown
    assert "program      /usr/local/bin/rig-panfrost (sha256 0123456789abcdef)" in shown
    assert _image_command("list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(arm in line and " arm64 " in line and "IGT none" in line for line in listed)
    assert any(x86 in line and " x86_64 " in line and "IGT 2.5-1" in line for line in listed)
    assert _image_command("build", "--arch", "arm64", "--quiet") == 0  # a cache hit: nothing is built
    built = capsys.readouterr().out
    assert "(cache hit)" in built and arm in built and "IGT     none" in built


def test_cli_build_refuses_a_recipe_of_another_arch() -> None:
    with pytest.raises(UserError, match="is for x86_64, not arm64"):
        _image_command("build", "default", "--arch", "arm64")
