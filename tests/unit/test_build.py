"""rig build end to end on a small real git tree whose Makefile stands in for Kbuild:
real git worktrees, real `git am`, real gcc and ccache, rig's real cache."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from pathlib import Path

import pytest
from .test_build_fakes import commit_change, fake_kernel, format_patches, git

from rig import build as build_mod
from rig import cache, cli, source
from rig.build import BuildRequest, build
from rig.errors import InfraError, KernelError, UserError
from rig.target import ARM64

DATA = Path(__file__).resolve().parent.parent / "data" / "series"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RIG_BUILD_LOCK", raising=False)


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    return fake_kernel(tmp_path / "linux")


def make_series(kernel: Path, tmp_path: Path, name: str, changes: list[tuple[str, str, str]],
                file: str = "drv.c") -> Path:
    """A directory of patches made by committing `changes` on a branch, then resetting."""
    base = git(kernel, "rev-parse", "HEAD").strip()
    git(kernel, "checkout", "-q", "-b", name)
    for subject, old, new in changes:
        commit_change(kernel, subject, old, new, file=file)
    format_patches(kernel, f"{base}..HEAD", tmp_path / name, cover=True)
    git(kernel, "checkout", "-q", "main")
    return tmp_path / name


def test_build_with_series_then_cache_hit_without_a_worktree(tmp_path: Path, kernel: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    patches = make_series(kernel, tmp_path, "fix", [("drv: return one", "return 0;", "return 1;")])
    request = BuildRequest(kernel=str(kernel), series=str(patches))
    first = build(request, tmp_path / "out1", progress=False)
    assert not first.cache_hit
    assert first.kernel_image.read_bytes() and first.vmlinux.exists() and first.system_map.exists()
    assert first.kernel_release == "6.99.1-fake"
    assert [p.subject for p in first.patches] == ["drv: return one"]
    assert first.config.name == ".config" and "CONFIG_PROVE_LOCKING=y" in first.config.read_text()
    assert "  CC      drv.o" in first.build_log.read_text()
    assert git(kernel, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"  # user's tree untouched

    meta = json.loads((tmp_path / "out1" / "metadata.json").read_text())["build"]
    assert meta["series"]["patches"][0]["subject"] == "drv: return one"
    assert meta["source"]["base_commit"] == git(kernel, "rev-parse", "HEAD").strip()
    assert meta["reproduce"]["rig"].startswith("rig build --kernel ")
    assert any("allnoconfig" in c for c in meta["reproduce"]["make"])

    # The same request again: served from the cache without preparing a worktree.
    monkeypatch.setattr(source, "worktree", lambda src: pytest.fail("a cache hit must not touch a worktree"))
    second = build(request, tmp_path / "out2", progress=False)
    assert second.cache_hit
    assert second.kernel_image.read_bytes() == first.kernel_image.read_bytes()
    assert second.head_commit == first.head_commit
    assert json.loads((tmp_path / "out2" / "metadata.json").read_text())["build"]["cache"]["hit"] is True


def test_changed_series_rebuilds_in_the_same_build_directory(tmp_path: Path, kernel: Path) -> None:
    one = make_series(kernel, tmp_path, "one", [("drv: return one", "return 0;", "return 1;")])
    two = make_series(kernel, tmp_path, "two", [("drv: return two", "return 0;", "return 2;")])
    a = build(BuildRequest(kernel=str(kernel), series=str(one)), tmp_path / "a", progress=False)
    b = build(BuildRequest(kernel=str(kernel), series=str(two)), tmp_path / "b", progress=False)
    assert not b.cache_hit and a.cache_key != b.cache_key and a.head_commit != b.head_commit
    build_dirs = list((tmp_path / "cache" / "build").iterdir())
    assert len(build_dirs) == 1 and build_dirs[0].name.endswith("-default")


def test_each_patch_names_the_first_patch_that_breaks_the_build(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "unbisectable", [
        ("drv: comment", "/* A driver. */", "/* A driver, probed once. */"),
        ("drv: call the helper", "\treturn 0;", "\treturn drv_helper();"),
        ("drv: add the helper", "int drv_probe(void)", "static int drv_helper(void) { return 0; }\nint drv_probe(void)"),
    ])
    request = BuildRequest(kernel=str(kernel), series=str(patches))
    assert not build(request, tmp_path / "whole", progress=False).cache_hit  # the whole series builds

    with pytest.raises(KernelError) as info:
        build(BuildRequest(kernel=str(kernel), series=str(patches), each_patch=True), tmp_path / "each",
              progress=False)
    message = info.value.message
    assert 'patch 2 "drv: call the helper" breaks the build' in message
    assert "drv.c:4:" in message and "drv_helper" in message  # gcc's first error, file:line
    assert "worktrees" not in message  # named as in the patch, not by rig's worktree path
    assert info.value.log == tmp_path / "each" / "build.log"


def test_compile_error_shows_file_and_line(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "broken", [("drv: typo", "return 0;", "return 0")])
    with pytest.raises(KernelError, match=r"does not build.*\n.*drv.c:\d+:\d+: error: expected ';'"):
        build(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out", progress=False)


def test_series_that_does_not_apply_is_a_user_error(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "stale", [("drv: return one", "return 0;", "return 1;")])
    commit_change(kernel, "drv: upstream moved on", "return 0;", "return -1;")
    with pytest.raises(UserError, match=r'patch 1 "drv: return one" does not apply \(conflicting files: drv.c\)'):
        build(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out", progress=False)


def test_a_series_that_does_not_apply_says_so_without_waiting_for_another_build(
        tmp_path: Path, kernel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patches = make_series(kernel, tmp_path, "stale", [("drv: return one", "return 0;", "return 1;")])
    commit_change(kernel, "drv: upstream moved on", "return 0;", "return -1;")
    # Were the series applied under the machine's build lock, held here by "another
    # build", this would end in the lock's timeout (InfraError) instead.
    monkeypatch.setattr(build_mod, "MAKE_TIMEOUT_S", 3.0)
    with cache.locked(build_mod.build_lock_path()), pytest.raises(UserError, match="does not apply"):
        build(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out", progress=False)


def test_bad_inputs_fail_before_any_source_is_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "resolve", lambda *a, **k: pytest.fail("fetched a source for bad input"))
    with pytest.raises(UserError, match="unknown profile"):
        build(BuildRequest(kernel="debian:6.1", profile="turbo"), tmp_path / "a", progress=False)
    with pytest.raises(UserError, match="does not exist"):
        build(BuildRequest(kernel="debian:6.1", extra_configs=(tmp_path / "missing.config",)), tmp_path / "b",
              progress=False)
    with pytest.raises(UserError, match="holds no patch"):
        build(BuildRequest(kernel="debian:6.1", series=str(DATA / "build-not-a-patch" / "review.mbox")),
              tmp_path / "c", progress=False)
    with pytest.raises(UserError, match="--each-patch needs a series"):
        build(BuildRequest(kernel="debian:6.1", each_patch=True), tmp_path / "d", progress=False)


def test_required_option_missing_from_the_kernel_is_a_user_error(tmp_path: Path, kernel: Path) -> None:
    extra = tmp_path / "mine.config"
    extra.write_text("CONFIG_RIG_NO_SUCH_OPTION=y\n")
    with pytest.raises(UserError) as info:
        build(BuildRequest(kernel=str(kernel), extra_configs=(extra,)), tmp_path / "out", progress=False)
    assert "CONFIG_RIG_NO_SUCH_OPTION=y (mine.config:1)" in info.value.message
    assert "not in this kernel version" in info.value.message


def test_optional_options_warn_only_when_this_version_has_them(tmp_path: Path) -> None:
    kernel = fake_kernel(tmp_path / "linux", kconfig="config RIG_GATED\n\tbool \"gated\"\n\tdepends on ISA_BUS_X\n")
    extra = tmp_path / "mine.config"
    extra.write_text("# rig: optional\nCONFIG_RIG_NEWER=y\n# rig: optional\nCONFIG_RIG_GATED=y\n")
    built = build(BuildRequest(kernel=str(kernel), extra_configs=(extra,)), tmp_path / "out", progress=False)
    assert len(built.config_warnings) == 1
    assert "CONFIG_RIG_GATED=y" in built.config_warnings[0] and "depends on ISA_BUS_X [ISA_BUS_X=n]" in built.config_warnings[0]
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())["build"]
    assert any("CONFIG_RIG_NEWER" in line for line in meta["optional_options_not_in_this_version"])


def test_cli_prints_the_output_directory_last(tmp_path: Path, kernel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build", "--quiet", "--kernel", str(kernel), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str((tmp_path / "out").resolve())
    assert (tmp_path / "out" / "bzImage").exists() and (tmp_path / "out" / "metadata.json").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--kernel", "debian:5.4"], "unknown kernel 'debian:5.4'"),
    (["--kernel", "debian:6.1", "--series", str(DATA / "build-not-a-patch" / "review.mbox")], "holds no patch"),
    (["--kernel", "debian:6.1", "--profile", "turbo"], "unknown profile"),
])
def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path, args: list[str], fragment: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["build", "--quiet", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "what to do:" in err and "Traceback" not in err


def test_build_lock_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_mod.build_lock_path() == tmp_path / "cache" / "locks" / "build.lock"
    monkeypatch.setenv("RIG_BUILD_LOCK", str(tmp_path / "shared.lock"))
    assert build_mod.build_lock_path() == tmp_path / "shared.lock"


def test_progress_estimate_grows_when_the_build_runs_past_it() -> None:
    from rig.progress import Task

    task = Task(None, None, total=2)
    for _ in range(4):
        task.advance()
    assert task.completed == 4 and task.total is not None and task.total > 4


def test_git_range_series_applies_on_the_start_of_the_range(tmp_path: Path, kernel: Path) -> None:
    base = git(kernel, "rev-parse", "HEAD").strip()
    git(kernel, "checkout", "-q", "-b", "topic")
    commit_change(kernel, "drv: return one", "return 0;", "return 1;")
    commit_change(kernel, "drv: comment", "/* A driver. */", "/* A driver that probes. */")
    # The checkout sits on the topic branch: its HEAD already has the series.
    built = build(BuildRequest(kernel=str(kernel), series=f"{base}..topic"), tmp_path / "out", progress=False)
    assert built.base_commit == base
    assert [p.subject for p in built.patches] == ["drv: return one", "drv: comment"]
    assert git(kernel, "rev-parse", "--abbrev-ref", "HEAD").strip() == "topic"


def test_configuration_is_reused_until_fragments_or_kconfig_files_change(tmp_path: Path, kernel: Path) -> None:
    one = make_series(kernel, tmp_path, "one", [("drv: return one", "return 0;", "return 1;")])
    kconfig_patch = make_series(kernel, tmp_path, "kc", [("kconfig: describe DRM", 'bool "DRM"', 'bool "DRM core"')],
                                file="Kconfig")
    build(BuildRequest(kernel=str(kernel)), tmp_path / "a", progress=False)
    assert "CONF    allnoconfig" in (tmp_path / "a" / "build.log").read_text()
    build(BuildRequest(kernel=str(kernel), series=str(one)), tmp_path / "b", progress=False)
    assert "CONF    allnoconfig" not in (tmp_path / "b" / "build.log").read_text()
    build(BuildRequest(kernel=str(kernel), series=str(kconfig_patch)), tmp_path / "c", progress=False)
    assert "CONF    allnoconfig" in (tmp_path / "c" / "build.log").read_text()
    extra = tmp_path / "mine.config"
    extra.write_text("CONFIG_DRM=y\nCONFIG_EXTRA_THING=y\n")
    build(BuildRequest(kernel=str(kernel), series=str(one), extra_configs=(extra,)), tmp_path / "d", progress=False)
    assert "CONF    allnoconfig" in (tmp_path / "d" / "build.log").read_text()


# --- resolved inputs, prefixes and targets ----------------------------------------------

# The arm64 target's make variables, files and fragments, compiled by the host's gcc (the
# fake Makefile builds one C file): everything the build takes from the target but the
# cross compiler.
FAKE_ARM64 = dataclasses.replace(ARM64, cross_compile="", compiler="gcc")


def first_patch_only(series: Path, out: Path) -> Path:
    """A series of the first patch of `series`, the same mail byte for byte."""
    out.mkdir()
    first = sorted(p for p in series.glob("*.patch") if not p.name.startswith("0000-"))[0]
    shutil.copy(first, out / first.name)
    return out


def test_resolve_gathers_every_input_once(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "two", [
        ("drv: return one", "return 0;", "return 1;"),
        ("drv: comment", "/* A driver. */", "/* A driver that probes. */"),
    ])
    extra = tmp_path / "mine.config"
    extra.write_text("CONFIG_MINE=y\n")
    resolved = build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(patches), extra_configs=(extra,)),
                                 tmp_path / "out")
    assert resolved.source.base_commit == git(kernel, "rev-parse", "HEAD").strip()
    assert [p.subject for p in resolved.patches] == ["drv: return one", "drv: comment"]
    assert [f.name for f in resolved.fragments] == ["base.config", "locking.config", "memory.config", "mine.config"]
    assert resolved.settings["MINE"].value == "y" and resolved.settings["UNWINDER_ORC"].value == "y"
    assert resolved.compiler.startswith("gcc")
    assert resolved.make_variables[0] == "ARCH=x86_64"
    assert all(p.path.is_file() for p in resolved.patches)  # the patch files live under out/


def test_the_target_chooses_fragments_make_variables_and_compiler(tmp_path: Path, kernel: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_mod, "compiler_id", lambda target: f"{target.compiler} 12.2.0")
    resolved = build_mod.resolve(BuildRequest(kernel=str(kernel), target=ARM64), tmp_path / "out")
    assert [f.name for f in resolved.fragments] == ["arm64.config", "base.config", "locking.config", "memory.config"]
    assert resolved.settings["DRM_PANFROST"].value == "y"
    assert "UNWINDER_ORC" not in resolved.settings and "SERIAL_8250" not in resolved.settings  # x86-only lines
    assert resolved.compiler == "aarch64-linux-gnu-gcc 12.2.0"
    assert resolved.make_variables[:2] == ("ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-")
    if shutil.which("ccache"):
        assert resolved.make_variables[2:] == ("CC=ccache aarch64-linux-gnu-gcc",)
    assert resolved.build_dir.name.endswith("-default-arm64")
    x86 = build_mod.resolve(BuildRequest(kernel=str(kernel)), tmp_path / "out-x86")
    assert x86.make_variables[0] == "ARCH=x86_64" and not any(v.startswith("CROSS_COMPILE") for v in x86.make_variables)
    assert x86.build_dir.name.endswith("-default")  # x86_64's directories keep their names
    assert resolved.quick_key(0) != x86.quick_key(0)


def test_a_missing_cross_compiler_names_its_package(tmp_path: Path, kernel: Path) -> None:
    absent = dataclasses.replace(ARM64, compiler="rig-no-such-linux-gnu-gcc", cross_compile="rig-no-such-linux-gnu-")
    with pytest.raises(InfraError) as info:
        build_mod.resolve(BuildRequest(kernel=str(kernel), target=absent), tmp_path / "out")
    assert "rig-no-such-linux-gnu-gcc" in info.value.message
    assert "gcc-rig-no-such-linux-gnu" in (info.value.hint or "")


def test_a_prefix_key_holds_only_its_own_patches(tmp_path: Path, kernel: Path) -> None:
    more = make_series(kernel, tmp_path, "more", [
        ("drv: return one", "return 0;", "return 1;"),
        ("drv: comment", "/* A driver. */", "/* A driver that probes. */"),
    ])
    one = first_patch_only(more, tmp_path / "one")
    plain = build_mod.resolve(BuildRequest(kernel=str(kernel)), tmp_path / "p")
    a = build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(one)), tmp_path / "a")
    b = build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(more)), tmp_path / "b")
    assert a.quick_key(0) == b.quick_key(0) == plain.quick_key(0)  # the base tree, whatever follows
    assert a.quick_key(1) == b.quick_key(1)  # the same first patch
    assert len({b.quick_key(0), b.quick_key(1), b.quick_key(2)}) == 3
    with pytest.raises(ValueError):
        build_mod.build_prefix(a, 2, tmp_path / "a")


def test_build_prefix_builds_k_patches_and_reuses_the_shorter_prefix_in_the_worktree(
        tmp_path: Path, kernel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patches = make_series(kernel, tmp_path, "two", [
        ("drv: return one", "return 0;", "return 1;"),
        ("drv: return two", "return 1;", "return 2;"),
    ])
    resolved = build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out")
    base = build_mod.build_prefix(resolved, 0, tmp_path / "k0")
    assert base.patches == () and base.head_commit == resolved.source.base_commit
    # The worktree holds the base: patch 1 goes on top, without resetting the tree.
    monkeypatch.setattr(source, "worktree", lambda src: pytest.fail("reset the worktree to apply one more patch"))
    first = build_mod.build_prefix(resolved, 1, tmp_path / "k1")
    assert [p.subject for p in first.patches] == ["drv: return one"] and not first.cache_hit
    assert "return 1;" in (resolved.worktree / "drv.c").read_text()
    assert first.head_commit != base.head_commit
    # The same prefix of another request is the same build.
    again = build(BuildRequest(kernel=str(kernel), series=str(first_patch_only(patches, tmp_path / "first"))),
                  tmp_path / "again", progress=False)
    assert again.cache_hit and again.cache_key == first.cache_key


def test_each_patch_steps_are_cached_one_by_one(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "breaks", [
        ("drv: comment", "/* A driver. */", "/* A driver, probed once. */"),
        ("drv: call the helper", "\treturn 0;", "\treturn drv_helper();"),
    ])
    request = BuildRequest(kernel=str(kernel), series=str(patches), each_patch=True)
    with pytest.raises(KernelError, match='patch 2 "drv: call the helper" breaks the build'):
        build(request, tmp_path / "each", progress=False)
    resolved = build_mod.resolve(request, tmp_path / "again")
    assert build_mod.build_prefix(resolved, 1, tmp_path / "again").cache_hit  # patch 1 built and kept


def test_the_kernel_image_is_the_targets(tmp_path: Path, kernel: Path) -> None:
    built = build(BuildRequest(kernel=str(kernel), target=FAKE_ARM64), tmp_path / "out", progress=False)
    assert built.kernel_image == tmp_path / "out" / "Image" and built.kernel_image.read_bytes()
    assert built.target is FAKE_ARM64
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())["build"]
    assert meta["target"]["kernel_image"] == "arch/arm64/boot/Image"
    make = meta["reproduce"]["make"][1]
    assert "ARCH=arm64" in make and make.endswith(" Image vmlinux")
    assert "CONFIG_DRM_PANFROST=y" in built.config.read_text()
    # The same tree for x86_64 is another build, in another build directory.
    x86 = build(BuildRequest(kernel=str(kernel)), tmp_path / "x86", progress=False)
    assert not x86.cache_hit and x86.kernel_image.name == "bzImage" and x86.cache_key != built.cache_key
    assert len(list((tmp_path / "cache" / "build").iterdir())) == 2


def test_the_reproduce_command_comes_from_the_request(tmp_path: Path, kernel: Path) -> None:
    extra = tmp_path / "my options.config"
    extra.write_text("CONFIG_MINE=y\n")
    request = BuildRequest(kernel=str(kernel), profile="kasan", extra_configs=(extra,), target=ARM64)
    argv = build_mod.reproduce_argv(request)
    assert argv == ["rig", "build", "--kernel", str(kernel), "--arch", "arm64", "--profile", "kasan",
                    "--config", str(extra.resolve())]
    assert cli.main(["build", "--quiet", "--kernel", str(kernel), "--out", str(tmp_path / "out")]) == 0
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    expected = shlex.join(["rig", "build", "--kernel", str(kernel), "--arch", "x86_64", "--profile", "default"])
    assert meta["command"] == expected and meta["build"]["reproduce"]["rig"] == expected


def test_arch_option_takes_the_known_targets_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["build", "--arch", "riscv64", "--out", str(tmp_path / "out")])
    assert "riscv64" in capsys.readouterr().err


def test_other_inputs_that_give_the_same_config_reuse_the_finished_build(tmp_path: Path, kernel: Path) -> None:
    plain = build(BuildRequest(kernel=str(kernel)), tmp_path / "a", progress=False)
    extra = tmp_path / "same.config"
    extra.write_text("CONFIG_SLUB_DEBUG=y\n")  # the profile's last line again: the same .config
    again = build(BuildRequest(kernel=str(kernel), extra_configs=(extra,)), tmp_path / "b", progress=False)
    assert again.cache_hit and again.cache_key == plain.cache_key


def test_a_worktree_edited_by_hand_is_reset_before_the_next_prefix(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "one", [("drv: return one", "return 0;", "return 1;")])
    resolved = build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out")
    build_mod.build_prefix(resolved, 0, tmp_path / "k0")
    drv = resolved.worktree / "drv.c"
    drv.write_text(drv.read_text().replace("return 0;", "return 0; /* edited */"))
    build_mod.build_prefix(resolved, 1, tmp_path / "k1")  # would not apply on the edited file
    assert "edited" not in drv.read_text() and "return 1;" in drv.read_text()


# A series whose build reaches for the network, writes outside its build directory and
# reads the home directory: each step is allowed to fail (`-`), so the build goes on and
# every attempt shows in the log.
PROBES = """\
\t-python3 -c "import socket; socket.create_connection(('deb.debian.org', 80), 5)"
\t-touch $(CURDIR)/escaped /etc/rig-sandbox-escaped
\t-cat {home}/secret
"""


def test_a_sandboxed_build_cannot_reach_out_and_says_what_it_tried(
        tmp_path: Path, kernel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is missing: ./setup installs it")
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_text("a key\n")
    monkeypatch.setenv("HOME", str(home))
    probes = PROBES.format(home=home)
    patches = make_series(kernel, tmp_path, "probe", [("build: probe", "\t@echo \"  CC      drv.o\"\n",
                                                      "\t@echo \"  CC      drv.o\"\n" + probes)], file="Makefile")
    request = BuildRequest(kernel=str(kernel), series=str(patches), sandbox=True)
    artifacts = build(request, tmp_path / "out", progress=False)
    kinds = list(dict.fromkeys(d.split(":")[0] for d in artifacts.sandbox_denials))
    assert kinds == ["tried to reach the network", "tried to write outside its build directory",
                     "tried to read a hidden directory (home, rig's cache)"], artifacts.sandbox_denials
    assert not (kernel / "escaped").exists() and not Path("/etc/rig-sandbox-escaped").exists()
    assert "a key" not in artifacts.build_log.read_text()
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())["build"]
    assert meta["sandbox"] == {"used": True, "denied": list(artifacts.sandbox_denials)}
    # The same tree unsandboxed builds the same kernel: the fence changes nothing it makes.
    plain = build(dataclasses.replace(request, sandbox=False), tmp_path / "plain", progress=False)
    assert plain.cache_hit and plain.sandbox_denials == artifacts.sandbox_denials


def test_only_a_series_from_a_message_id_is_sandboxed_unless_asked(tmp_path: Path, kernel: Path) -> None:
    patches = make_series(kernel, tmp_path, "fix", [("drv: return one", "return 0;", "return 1;")])
    resolved = build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out")
    assert not resolved.sandboxed
    assert build_mod.resolve(BuildRequest(kernel=str(kernel), series=str(patches), sandbox=True),
                             tmp_path / "out2").sandboxed
    msgid = dataclasses.replace(resolved, series=dataclasses.replace(resolved.series, kind="msgid"))
    assert msgid.sandboxed


def test_a_disk_that_fills_up_during_the_build_is_the_hosts_fault(tmp_path: Path, kernel: Path, small_disk,  # type: ignore[no-untyped-def]
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The build directory on a small tmpfs with no room left: exit 3 naming the full disk,
    not a kernel that does not build."""
    small = small_disk(2 << 20)
    # rig's cache (worktree, build directory) on it, and the room taken but for a few KiB
    monkeypatch.setenv("RIG_CACHE_DIR", str(small / "cache"))
    (small / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 - 64 * 1024))
    patches = make_series(kernel, tmp_path, "big", [("drv: a big table", "return 0;",
                                                     "static const char t[1 << 20] = {1}; return t[0];")])
    with pytest.raises(InfraError) as info:
        build(BuildRequest(kernel=str(kernel), series=str(patches)), tmp_path / "out", progress=False)
    assert "the disk filled up during the kernel build" in info.value.message
    assert str(small) in info.value.message and "RIG_CACHE_DIR" in (info.value.hint or "")


def test_the_command_line_turns_a_full_disk_into_exit_3(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def full(_: object) -> int:
        raise OSError(28, "No space left on device", "/var/cache/rig/builds/x/vmlinux")

    monkeypatch.setattr(build_mod, "build", lambda *a, **k: full(None))
    monkeypatch.setattr("rig.commands.build.build", lambda *a, **k: full(None))
    assert cli.main(["build", "--quiet", "--out", "/tmp/rig-test-full"]) == 3
    err = capsys.readouterr().err
    assert "the disk is full writing /var/cache/rig/builds/x/vmlinux" in err and "Traceback" not in err
