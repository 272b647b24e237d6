from __future__ import annotations

from pathlib import Path

import pytest

from rig import kconfig
from rig.errors import UserError
from rig.target import ARM64, X86_64

KCONFIG = """\
menu "Graphics"

config DRM
\ttristate "DRM"
\tdepends on PCI && MMU

config DRM_VGEM
\ttristate "vgem"
\tdepends on DRM && MMU
\tselect DRM_GEM_SHMEM_HELPER

config DRM_GEM_SHMEM_HELPER
\ttristate
\tdepends on DRM

config LOCKDEP_BITS
\tint "bits"
\trange 10 30
\tdefault 15

endmenu
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "linux"
    write(root / "drivers" / "gpu" / "drm" / "Kconfig", KCONFIG)
    # Only the Kconfig files of the architecture being built count.
    write(root / "arch" / "arm64" / "Kconfig", "config ARM64_ONLY\n\tbool \"arm64\"\n")
    write(root / "arch" / "x86" / "Kconfig", "config X86\n\tdef_bool y\n")
    return root


def test_fragment_lines_optional_tag_and_unset_lines(tmp_path: Path) -> None:
    fragment = write(tmp_path / "f.config", """\
# a comment
CONFIG_DRM=y
# rig: optional
CONFIG_DRM_VKMS=y
# CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN is not set
CONFIG_CMDLINE="console=ttyS0"
""")
    settings = kconfig.parse_fragment(fragment)
    assert [(s.symbol, s.value, s.optional) for s in settings] == [
        ("DRM", "y", False),
        ("DRM_VKMS", "y", True),
        ("DEBUG_KMEMLEAK_AUTO_SCAN", "n", False),
        ("CMDLINE", '"console=ttyS0"', False),
    ]
    assert settings[1].origin == "f.config:4"


def test_a_line_that_is_not_config_names_file_and_line(tmp_path: Path) -> None:
    fragment = write(tmp_path / "bad.config", "CONFIG_DRM=y\nDRM_VGEM=y\n")
    with pytest.raises(UserError, match=r"bad.config:2 is not a kernel config line"):
        kconfig.parse_fragment(fragment)


def test_later_fragment_wins_and_render_round_trips(tmp_path: Path) -> None:
    a = write(tmp_path / "a.config", "CONFIG_DRM=y\nCONFIG_KASAN=y\n")
    b = write(tmp_path / "b.config", "# CONFIG_KASAN is not set\n")
    merged = kconfig.merge([a, b], target="x86_64")
    assert merged["KASAN"].value == "n"
    rendered = write(tmp_path / "merged.config", kconfig.render(merged))
    assert kconfig.read_config(rendered) == {"DRM": "y", "KASAN": "n"}


def test_shipped_profiles_parse_and_carry_the_debug_options() -> None:
    profiles = kconfig.load_profiles()
    assert {"default", "kasan", "kunit"} <= set(profiles)
    default = kconfig.merge(list(profiles["default"].fragments), target="x86_64")
    for symbol in ("PROVE_LOCKING", "DEBUG_KMEMLEAK", "DRM_VIRTIO_GPU", "DRM_VGEM", "DRM_VKMS",
                   "SHRINKER_DEBUG", "PVPANIC", "PRINTK_CALLER", "DEBUG_WW_MUTEX_SLOWPATH"):
        assert default[symbol].value == "y" and not default[symbol].optional, symbol
    assert default["DEBUG_KMEMLEAK_AUTO_SCAN"].value == "n"
    assert "KASAN" not in default
    assert kconfig.merge(list(profiles["kasan"].fragments), target="x86_64")["KASAN"].value == "y"
    assert kconfig.merge(list(profiles["kunit"].fragments), target="x86_64")["DRM_KUNIT_TEST"].value == "y"


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match="unknown profile 'fast'") as info:
        kconfig.profile("fast")
    assert "default" in (info.value.hint or "") and "kasan" in (info.value.hint or "")


@pytest.mark.parametrize("expression, value", [
    ("PCI && MMU", 2),
    ("PCI && !MMU", 0),
    ("DRM", 1),
    ("!DRM", 1),
    ("(NOPE || PCI) && DRM=m", 2),
    ("FB=y || FB=DRM_KMS_HELPER", 2),  # both n: equal
    ("LOCKDEP_BITS > 12", 2),
    ("X86_64 && FRAME_POINTER || X86", 2),
])
def test_dependency_expressions_evaluate_like_kconfig(expression: str, value: int) -> None:
    config = {"PCI": "y", "MMU": "y", "DRM": "m", "LOCKDEP_BITS": "15", "X86": "y"}
    assert kconfig.evaluate(expression, config) == value


def test_verify_says_why_each_symbol_did_not_stick(tmp_path: Path, tree: Path) -> None:
    fragment = write(tmp_path / "f.config", """\
CONFIG_DRM=y
CONFIG_DRM_VGEM=y
CONFIG_NOT_IN_THIS_KERNEL=y
CONFIG_ARM64_ONLY=y
CONFIG_LOCKDEP_BITS=40
# CONFIG_DRM_GEM_SHMEM_HELPER is not set
""")
    dot_config = write(tmp_path / ".config", """\
CONFIG_MMU=y
# CONFIG_PCI is not set
CONFIG_LOCKDEP_BITS=15
CONFIG_DRM_GEM_SHMEM_HELPER=y
""")
    misses = {m.setting.symbol: m for m in kconfig.verify(kconfig.merge([fragment], target="x86_64"), dot_config, tree, arch="x86")}
    assert set(misses) == {"DRM", "DRM_VGEM", "NOT_IN_THIS_KERNEL", "ARM64_ONLY", "LOCKDEP_BITS",
                           "DRM_GEM_SHMEM_HELPER"}
    assert "unmet dependency: depends on PCI && MMU [PCI=n, MMU=y]" in misses["DRM"].reason
    assert "DRM=n" in misses["DRM_VGEM"].reason
    assert "not in this kernel version" in misses["NOT_IN_THIS_KERNEL"].reason
    assert "not in this kernel version" in misses["ARM64_ONLY"].reason
    assert "Kconfig chose 15" in misses["LOCKDEP_BITS"].reason
    assert "selects it" in misses["DRM_GEM_SHMEM_HELPER"].reason


def test_check_fails_on_required_and_returns_optional_misses(tmp_path: Path, tree: Path) -> None:
    dot_config = write(tmp_path / ".config", "CONFIG_MMU=y\nCONFIG_PCI=y\nCONFIG_DRM=y\n")
    optional = write(tmp_path / "opt.config", "CONFIG_DRM=y\n# rig: optional\nCONFIG_NOT_IN_THIS_KERNEL=y\n")
    misses = kconfig.check(kconfig.merge([optional], target="x86_64"), dot_config, tree, "test", arch="x86")
    assert [m.setting.symbol for m in misses] == ["NOT_IN_THIS_KERNEL"]

    required = write(tmp_path / "req.config", "CONFIG_DRM=y\nCONFIG_NOT_IN_THIS_KERNEL=y\n")
    with pytest.raises(UserError) as info:
        kconfig.check(kconfig.merge([required], target="x86_64"), dot_config, tree, "test", arch="x86")
    assert "CONFIG_NOT_IN_THIS_KERNEL=y (req.config:2)" in info.value.message
    assert "not in this kernel version" in info.value.message
    assert "# rig: optional" in (info.value.hint or "")


def test_only_tag_keeps_a_line_to_its_targets(tmp_path: Path) -> None:
    fragment = write(tmp_path / "f.config", """\
CONFIG_DRM=y
# rig: only x86_64
CONFIG_UNWINDER_ORC=y
# rig: only x86_64 arm64
# rig: optional
CONFIG_KVM_GUEST=y
CONFIG_PRINTK=y
""")
    settings = kconfig.parse_fragment(fragment)
    assert [(s.symbol, s.only, s.optional) for s in settings] == [
        ("DRM", (), False), ("UNWINDER_ORC", ("x86_64",), False), ("KVM_GUEST", ("x86_64", "arm64"), True),
        ("PRINTK", (), False)]
    assert list(kconfig.merge([fragment], target="x86_64")) == ["DRM", "UNWINDER_ORC", "KVM_GUEST", "PRINTK"]
    assert list(kconfig.merge([fragment], target="arm64")) == ["DRM", "KVM_GUEST", "PRINTK"]
    assert list(kconfig.merge([fragment], target="riscv64")) == ["DRM", "PRINTK"]


def test_shipped_fragments_for_arm64_leave_the_pc_out() -> None:
    fragments = [kconfig.CONFIGS_DIR / name for name in ARM64.config_fragments]
    merged = kconfig.merge([*fragments, *kconfig.profile("default").fragments], target=ARM64.name)
    for symbol in ("ARM64", "SERIAL_AMBA_PL011_CONSOLE", "DRM_PANFROST", "PROVE_LOCKING", "DEBUG_KMEMLEAK",
                   "DRM_VIRTIO_GPU", "VIRTIO_BLK"):
        assert merged[symbol].value == "y", symbol
    for symbol in ("ACPI", "UNWINDER_ORC", "SERIAL_8250", "HYPERVISOR_GUEST", "DRM_BOCHS"):
        assert symbol not in merged, symbol
    assert "ARM64" not in kconfig.merge(list(kconfig.profile("default").fragments), target=X86_64.name)


def test_kconfig_definitions_read_the_targets_arch_directory_only(tree: Path) -> None:
    on_x86 = kconfig.kconfig_definitions(tree, X86_64.kconfig_arch)
    on_arm64 = kconfig.kconfig_definitions(tree, ARM64.kconfig_arch)
    assert "X86" in on_x86 and "ARM64_ONLY" not in on_x86
    assert "ARM64_ONLY" in on_arm64 and "X86" not in on_arm64
    assert "DRM" in on_x86 and "DRM" in on_arm64  # the generic Kconfig files count for every target
