"""Guest images: a recipe in images/<name>.toml -> a Debian root filesystem made by
mmdebstrap -> an ext4 disk image with rig's init, its own SSH keys, rig's guest programs
the recipe names (`programs`, rig.guest_programs) and a manifest.

Images are cached by the hash of everything that goes into them (the recipe, rig's init,
the sshd settings, the sources of its guest programs). The disk image is never written after it is published: every boot
runs on a copy-on-write overlay (see `overlay()`).

A recipe names its guest architecture (`arch`, a target of rig.target; x86_64 when left
out). A foreign one (arm64 on an x86_64 host) is built by mmdebstrap in its usual chroot
mode, its programs run by qemu-user through a binfmt_misc entry that rig registers for
the build only (rig.binfmt).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rig import binfmt, cache, guest_programs, proc
from rig.errors import UserError
from rig.target import DEFAULT_TARGET, TARGETS

# Where recipes and the files rig puts into every image live (the repository's images/).
IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
INIT_SCRIPT = IMAGES_DIR / "rig-init"
SSHD_CONFIG = IMAGES_DIR / "sshd_config.conf"
# rig-init's data: what it mounts (one `mount -a`) and how it sets up eth0 (one `ip -batch`).
INIT_FSTAB = IMAGES_DIR / "fstab"
INIT_NETWORK = IMAGES_DIR / "network"
IMAGE_FILES = (INIT_SCRIPT, SSHD_CONFIG, INIT_FSTAB, INIT_NETWORK)

# Bumped when the way an image is assembled changes, so old cache entries are not reused.
IMAGE_FORMAT = "3"

# The guest's init as the kernel command line names it.
GUEST_INIT = "/sbin/rig-init"

# mmdebstrap of sid minbase + IGT took 75 s here; a slow mirror may need much longer.
MMDEBSTRAP_TIMEOUT_S = 1800.0
MKFS_TIMEOUT_S = 300.0
# A foreign root runs every maintainer script under qemu-user: allow that much longer.
FOREIGN_SLOWDOWN = 3

RECIPE_KEYS = {"suite", "variant", "mirror", "packages", "hostname", "headroom_mib", "arch", "programs"}
VARIANTS = {"extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "standard"}

# rig's architecture names (rig.target, --arch) -> Debian's (mmdebstrap --architectures).
DEBIAN_ARCH = {t.name: t.debian_arch for t in TARGETS.values()}
# The recipe `rig image build --arch A` builds, and the guests of that architecture boot.
DEFAULT_RECIPES = {t.name: t.image_recipe for t in TARGETS.values()}


@dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    variant: str
    mirror: str  # empty: the host's Debian mirror
    packages: tuple[str, ...]
    hostname: str
    headroom_mib: int
    arch: str = DEFAULT_TARGET.name  # rig's name of the guest architecture (rig.target)
    # rig's guest programs (images/programs/<name>/), installed as /usr/local/bin/rig-<name>
    programs: tuple[str, ...] = ()

    def canonical(self) -> str:
        fields = asdict(self)
        # Recipes from before `arch` and `programs` existed were all x86_64 without programs:
        # leaving the defaults out keeps their hash, so the images in rig's cache stay valid.
        if self.arch == DEFAULT_TARGET.name:
            del fields["arch"]
        if not self.programs:
            del fields["programs"]
        return json.dumps(fields, sort_keys=True)

    @property
    def debian_arch(self) -> str:
        return DEBIAN_ARCH[self.arch]

    @property
    def foreign(self) -> bool:
        """True when this host cannot run the guest's programs natively."""
        return TARGETS[self.arch].uname_machine != platform.machine()


@dataclass(frozen=True)
class GuestImage:
    disk: Path  # base image (raw ext4), never written: each boot uses a qcow2 overlay
    ssh_key: Path  # private client key (0600)
    known_hosts: Path  # pinned host key line(s) for the guest
    manifest: Path  # JSON: packages and versions (IGT's among them), size, recipe hash
    recipe_hash: str

    @property
    def root(self) -> Path:
        return self.disk.parent

    def read_manifest(self) -> dict[str, object]:
        return json.loads(self.manifest.read_text())


# ---------------------------------------------------------------- recipes


def recipe_path(recipe: str) -> Path:
    """A recipe name (images/<name>.toml) or a path to a .toml file."""
    if recipe.endswith(".toml") or os.sep in recipe:
        path = Path(recipe)
    else:
        path = IMAGES_DIR / f"{recipe}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in IMAGES_DIR.glob("*.toml"))) or "none"
        raise UserError(f"guest image recipe '{recipe}' not found ({path})",
                        hint=f"use one of the recipes in {IMAGES_DIR} ({known}) or a path to a .toml file")
    return path


def parse_recipe(text: str, name: str) -> Recipe:
    """Validate a recipe, listing every problem at once."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: brackets nested too deep
        raise UserError(f"guest image recipe '{name}' is not valid TOML: {exc}",
                        hint="fix the syntax; images/default.toml is an example") from exc
    problems: list[str] = []
    unknown = sorted(set(data) - RECIPE_KEYS)
    if unknown:
        problems.append(f"unknown keys {', '.join(unknown)} (known: {', '.join(sorted(RECIPE_KEYS))})")

    def text_field(key: str, default: str | None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            problems.append(f"'{key}' must be a non-empty string")
            return ""
        return value

    suite = text_field("suite", None)
    arch = text_field("arch", DEFAULT_TARGET.name)
    if arch and arch not in DEBIAN_ARCH:
        problems.append(f"arch '{arch}' is not one rig builds images for ({', '.join(DEBIAN_ARCH)})")
        arch = DEFAULT_TARGET.name
    variant = text_field("variant", "minbase")
    if variant and variant not in VARIANTS:
        problems.append(f"variant '{variant}' is not one of mmdebstrap's ({', '.join(sorted(VARIANTS))})")
    mirror = text_field("mirror", "")
    hostname = text_field("hostname", "rig-guest")
    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) and p and "," not in p for p in packages):
        problems.append("'packages' must be a list of package names")
        packages = []
    elif "openssh-server" not in packages:
        problems.append("'packages' must include openssh-server: rig reaches the guest over SSH")
    programs = data.get("programs", [])
    if not isinstance(programs, list) or not all(isinstance(p, str) for p in programs):
        problems.append("'programs' must be a list of rig's guest program names (images/programs/<name>)")
        programs = []
    for program in programs:
        try:
            guest_programs.program_dir(program)
        except UserError as exc:
            problems.append(f"{exc.message} ({exc.hint})")
    if programs and arch in DEBIAN_ARCH and arch not in guest_programs.TOOLCHAINS:
        problems.append(f"'programs': rig builds guest programs for {', '.join(guest_programs.TOOLCHAINS)} only")
    headroom = data.get("headroom_mib", 1024)
    if not isinstance(headroom, int) or isinstance(headroom, bool) or headroom < 64:
        problems.append("'headroom_mib' must be an integer of at least 64")
        headroom = 1024
    if problems:
        raise UserError(f"guest image recipe '{name}' has problems:\n    " + "\n    ".join(problems),
                        hint="see images/default.toml for every key with its meaning (and images/arm64.toml for arch)")
    return Recipe(name, suite, variant, mirror, tuple(packages), hostname, headroom, arch, tuple(programs))


def load_recipe(recipe: str) -> Recipe:
    path = recipe_path(recipe)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read guest image recipe {path}: {exc}",
                        hint="give a readable UTF-8 .toml recipe; images/default.toml is an example") from exc
    return parse_recipe(text, path.stem)


def recipe_problems(recipe: str, arch: str) -> list[str]:
    """What keeps the recipe `recipe` from making a guest of `arch`, each in one line (none:
    it can); read before anything is built, so a wrong --image fails in a second."""
    try:
        check_arch(load_recipe(recipe), arch)
    except UserError as exc:
        return [" ".join(exc.message.split())]
    return []


def default_recipe(arch: str) -> str:
    """The recipe of an architecture's guests (`rig image build --arch`)."""
    try:
        return DEFAULT_RECIPES[arch]
    except KeyError:
        raise UserError(f"--arch {arch}: rig has no guest image recipe for this architecture",
                        hint=f"give one of {', '.join(DEFAULT_RECIPES)}") from None


def check_arch(recipe: Recipe, arch: str) -> None:
    """Refuse to boot a guest of one architecture on another's image."""
    if recipe.arch != arch:
        raise UserError(f"guest image recipe '{recipe.name}' is for {recipe.arch}, not {arch}",
                        hint=f"use the {arch} recipe ({default_recipe(arch)}) or one with arch = \"{arch}\"")


def recipe_hash(recipe: Recipe) -> str:
    """What makes two images the same: the recipe and every file rig puts in the image,
    the sources of its guest programs among them."""
    programs = [guest_programs.sources_digest(recipe.programs, recipe.arch)] if recipe.programs else []
    return cache.digest([IMAGE_FORMAT, recipe.canonical(), *(path.read_bytes() for path in IMAGE_FILES), *programs])


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt uses (deb822 .sources or one-line .list files)."""
    files = sorted(sources_dir.glob("sources.list.d/*.sources")) + sorted(sources_dir.glob("sources.list.d/*.list"))
    main = sources_dir / "sources.list"
    if main.is_file():
        files.insert(0, main)
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in _uris(text):
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def _uris(text: str) -> list[str]:
    found: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("URIs:"):
            found.extend(line.split()[1:])
        elif line.startswith("deb "):
            words = re.sub(r"\[[^]]*\]", " ", line).split()[1:]  # drop [arch=... signed-by=...]
            if words:
                found.append(words[0])
    return found


# ---------------------------------------------------------------- the cache


# Complete once manifest.json is in: _build writes it last.
IMAGES = cache.Store("images", lambda entry: (entry / "manifest.json").is_file())


def images_root() -> Path:
    return IMAGES.root()


def image_key(recipe: Recipe) -> str:
    """The cache key of a recipe's image: its name (for people listing the cache) and hash."""
    return f"{recipe.name}-{recipe_hash(recipe)}"


def image_at(directory: Path) -> GuestImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    return GuestImage(
        disk=directory / "disk.raw",
        ssh_key=directory / "ssh" / "id_ed25519",
        known_hosts=directory / "ssh" / "known_hosts",
        manifest=directory / "manifest.json",
        recipe_hash=str(manifest["recipe_hash"]),
    )


def list_images() -> list[GuestImage]:
    return [image_at(entry) for entry in IMAGES.entries()]


def find_image(recipe: str) -> GuestImage | None:
    """The cached image of a recipe (name or path), or of a recipe hash, if built."""
    for image in list_images():
        if image.recipe_hash.startswith(recipe) and len(recipe) >= 6:
            return image
    entry = IMAGES.lookup(image_key(load_recipe(recipe)))
    return image_at(entry) if entry is not None else None


def stale_images() -> list[GuestImage]:
    """Cached images no recipe builds any more (the recipe or rig's init changed since)."""
    stale = []
    for item in list_images():
        name = str(item.read_manifest().get("recipe", ""))
        try:
            current = recipe_hash(load_recipe(name))
        except UserError:
            current = None  # the recipe is gone altogether
        if item.recipe_hash != current:
            stale.append(item)
    return stale


def remove_image(item: GuestImage) -> None:
    """Delete a cached image (a QEMU still using it keeps its open file until it exits)."""
    IMAGES.remove(item.root.name)


def ensure_image(recipe: str = "default", *, progress: bool = True, rebuild: bool = False,
                 arch: str | None = None) -> GuestImage:
    """The guest image of `recipe`, built once and then taken from rig's cache. With
    `arch`, the recipe must be for that architecture."""
    loaded = load_recipe(recipe)
    if arch is not None:
        check_arch(loaded, arch)
    key = image_key(loaded)
    if not rebuild and (entry := IMAGES.lookup(key)) is not None:
        return image_at(entry)
    with IMAGES.lock(key, what=f"building guest image {loaded.name}"):
        if not rebuild and (entry := IMAGES.lookup(key)) is not None:
            return image_at(entry)  # another rig built it while we waited
        staging = IMAGES.staging(key)
        try:
            _build(loaded, recipe_hash(loaded), staging, _reporter(progress))
            entry = IMAGES.publish(staging, key)
        except BaseException:
            _discard(staging)
            raise
    return image_at(entry)


def _reporter(progress: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if progress:
            print(f"  image: {line}", file=sys.stderr, flush=True)

    return say


def _mounts_below(directory: Path, mounts: Path = Path("/proc/self/mounts")) -> list[Path]:
    """Mount points inside `directory`, deepest first (octal escapes of /proc/mounts undone)."""
    prefix = str(directory.resolve()).rstrip("/") + "/"
    found = []
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _discard(staging: Path) -> None:
    """Delete a failed build's directory, but never through a mount: a killed mmdebstrap
    can leave the host's /sys (rbind) or /dev nodes mounted in its chroot, and deleting
    through those would delete the host's."""
    try:
        for point in _mounts_below(staging):
            proc.run(["umount", "--recursive", "--lazy", point], timeout=60, check=False,
                     what=f"umount of {point} left by mmdebstrap")
        left = _mounts_below(staging)
    except OSError:
        left = [staging]  # cannot tell: keep it rather than risk the host's files
    if left:
        print(f"rig: kept {staging}: still mounted inside it: {', '.join(map(str, left))}", file=sys.stderr)
        return
    shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- building


def _build(recipe: Recipe, digest: str, out: Path, say: Callable[[str], None]) -> None:
    proc.require_tool("mmdebstrap", "mmdebstrap")
    proc.require_tool("mkfs.ext4", "e2fsprogs")
    proc.require_tool("ssh-keygen", "openssh-client")
    log = out / "build.log"
    rootfs = out / "rootfs"
    # First: a missing cross compiler stops the build before ten minutes of mmdebstrap.
    programs = [guest_programs.build_program(name, recipe.arch, out / "programs") for name in recipe.programs]
    if programs:
        say(f"built {', '.join(p.name for p in programs)} for {recipe.arch}")
    mirror = recipe.mirror or host_mirror()
    say(f"mmdebstrap {recipe.suite} {recipe.variant} {recipe.debian_arch} from {mirror} "
        f"({len(recipe.packages)} packages; log: {log})")
    with _emulation(recipe, say):
        proc.run(
            mmdebstrap_argv(recipe, rootfs, mirror),
            timeout=MMDEBSTRAP_TIMEOUT_S * (FOREIGN_SLOWDOWN if recipe.foreign else 1),
            log=log,
            what=f"mmdebstrap of guest image '{recipe.name}'",
            hint="check the mirror is reachable and the package names exist in the suite"
                 + (f" for {recipe.debian_arch}" if recipe.foreign else ""),
        )
    say("installing rig's init, sshd settings and keys")
    _generate_keys(out / "ssh", recipe.hostname, log)
    _customise(rootfs, recipe, out / "ssh")
    installed = install_programs(rootfs, programs)
    packages = _packages(rootfs)
    content = _du_bytes(rootfs)
    size_mib = content // (1 << 20) + content // (1 << 20) // 5 + recipe.headroom_mib
    say(f"mkfs.ext4 -d ({size_mib} MiB)")
    disk = out / "disk.raw"
    proc.run(
        ["mkfs.ext4", "-q", "-F", "-L", "rig-root", "-E", "lazy_itable_init=1,root_owner=0:0",
         "-d", rootfs, disk, f"{size_mib}M"],
        timeout=MKFS_TIMEOUT_S, log=log, what="mkfs.ext4 of the guest image",
    )
    disk.chmod(0o444)  # a reminder: boots write to overlays only
    shutil.rmtree(rootfs)
    manifest = {
        "recipe": recipe.name,
        "recipe_hash": digest,
        "recipe_content": asdict(recipe),
        "mirror": mirror,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "disk_bytes": disk.stat().st_size,
        "content_bytes": content,
        "arch": recipe.arch,
        # None where the image has no IGT (Debian builds it for amd64 and i386 only).
        "igt_version": packages.get("igt-gpu-tools-tests") or packages.get("igt-gpu-tools"),
        "init": GUEST_INIT,
        "packages": packages,
        "programs": installed,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _emulation(recipe: Recipe, say: Callable[[str], None]) -> contextlib.AbstractContextManager[object]:
    """qemu-user for the chroot's programs while mmdebstrap runs, if the guest is foreign."""
    if not recipe.foreign:
        return contextlib.nullcontext()
    # qemu-user names an architecture as `uname -m` does (qemu-aarch64).
    return binfmt.registered(TARGETS[recipe.arch].uname_machine, say=say)


def mmdebstrap_argv(recipe: Recipe, target: Path, mirror: str) -> list[str]:
    return [
        "mmdebstrap",
        f"--variant={recipe.variant}",
        f"--architectures={recipe.debian_arch}",
        # mmdebstrap's own check of a foreign architecture needs arch-test and a binfmt
        # entry named qemu-<arch>; rig registered its own (rig.binfmt) with the F flag,
        # which also spares the copy of qemu into the chroot.
        *(["--skip=check/qemu"] if recipe.foreign else []),
        # sid's Release file on a snapshot mirror may be past its Valid-Until date.
        "--aptopt=Acquire::Check-Valid-Until \"false\"",
        "--aptopt=Acquire::Languages \"none\"",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        *(["--include=" + ",".join(recipe.packages)] if recipe.packages else []),
        "--format=directory",
        recipe.suite,
        str(target),
        f"deb {mirror} {recipe.suite} main",
    ]


def _generate_keys(ssh_dir: Path, hostname: str, log: Path) -> None:
    ssh_dir.mkdir(mode=0o700)
    for name, comment in (("id_ed25519", "rig-client"), ("host_ed25519", f"root@{hostname}")):
        proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", ssh_dir / name],
                 timeout=60, log=log, what="ssh-keygen")
        (ssh_dir / name).chmod(0o600)
    host_pub = (ssh_dir / "host_ed25519.pub").read_text().split()
    # Pinned under the guest's name; rig matches the key itself, whatever port it forwards.
    (ssh_dir / "known_hosts").write_text(f"{hostname} {host_pub[0]} {host_pub[1]}\n")


def _customise(rootfs: Path, recipe: Recipe, ssh_dir: Path) -> None:
    init = rootfs / GUEST_INIT.lstrip("/")
    shutil.copyfile(INIT_SCRIPT, init)
    init.chmod(0o755)
    rig_etc = rootfs / "etc/rig"
    rig_etc.mkdir(exist_ok=True)
    shutil.copyfile(INIT_FSTAB, rig_etc / "fstab")
    shutil.copyfile(INIT_NETWORK, rig_etc / "network")
    # sshd's privilege separation directory; /run is not a tmpfs in the guest, and each
    # boot starts from the pristine image, so nothing stale can accumulate there.
    (rootfs / "run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    conf_dir = rootfs / "etc/ssh/sshd_config.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SSHD_CONFIG, conf_dir / "rig.conf")
    # openssh-server's postinst made host keys of its own: only rig's pinned key stays.
    for old in (rootfs / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    shutil.copyfile(ssh_dir / "host_ed25519", rootfs / "etc/ssh/ssh_host_ed25519_key")
    (rootfs / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
    shutil.copyfile(ssh_dir / "host_ed25519.pub", rootfs / "etc/ssh/ssh_host_ed25519_key.pub")
    root_ssh = rootfs / "root/.ssh"
    root_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(ssh_dir / "id_ed25519.pub", root_ssh / "authorized_keys")
    (root_ssh / "authorized_keys").chmod(0o600)
    (rootfs / "etc/hostname").write_text(recipe.hostname + "\n")
    (rootfs / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {recipe.hostname}\n")
    (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf").write_text("nameserver 10.0.2.3\n")  # QEMU user networking's DNS
    (rootfs / "etc/fstab").write_text("# rig-init mounts everything itself\n")


def install_programs(rootfs: Path, binaries: list[Path]) -> dict[str, str]:
    """rig's guest programs into the root filesystem: path in the guest -> sha256 digest."""
    target = rootfs / guest_programs.INSTALL_DIR.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    installed = {}
    for binary in binaries:
        shutil.copyfile(binary, target / binary.name)
        (target / binary.name).chmod(0o755)
        installed[f"{guest_programs.INSTALL_DIR}/{binary.name}"] = cache.file_digest(binary)
    return installed


def _packages(rootfs: Path) -> dict[str, str]:
    result = proc.run(
        ["dpkg-query", f"--admindir={rootfs / 'var/lib/dpkg'}", "-W", "-f", "${Package}\t${Version}\n"],
        timeout=60, what="dpkg-query of the guest image",
    )
    pairs = (line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
    return {name: version for name, version in sorted(pairs)}


def _du_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- per-boot overlays


def overlay(image: GuestImage, path: Path) -> Path:
    """A qcow2 file over the base image: the guest writes there, the base stays pristine."""
    proc.require_tool("qemu-img", "qemu-utils")
    proc.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image.disk.resolve(), path],
             timeout=60, what="qemu-img create of the boot overlay")
    return path
