"""Kernel sources: a local git checkout, or Debian's linux-source packages.

rig never touches a user's working tree or branches: every build happens in rig's own
detached worktree (one per source tree, kept so rebuilds stay incremental). Debian's
sources are fetched once with a private apt state (own sources list, own lists dir; the
host's apt configuration is only read, to find its mirror), extracted into rig's cache
and committed to a git repository so a series applies with `git am`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rig import cache, proc
from rig.errors import InfraError, UserError
from rig.paths import user_path
from rig.progress import Reporter, quiet

# Debian release that ships each linux-source package.
DEBIAN_KERNELS: dict[str, tuple[str, str]] = {
    "6.1": ("linux-source-6.1", "bookworm"),
    "6.12": ("linux-source-6.12", "trixie"),
    "7.2": ("linux-source-7.2", "sid"),
}
DEFAULT_MIRROR = "http://deb.debian.org/debian"

KERNEL_FORMS = (
    "debian:6.1, debian:6.12, debian:7.2 (Debian's linux-source packages), "
    "or the path of a local kernel git checkout"
)

# Package lists younger than this are trusted without asking the mirror again, so a
# cached build needs no network.
APT_LISTS_MAX_AGE_S = 24 * 3600

# Fixed identity and date for the commit of an extracted tree: the same package gives
# the same commit id on every machine, and so the same kernel release string.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "rig",
    "GIT_AUTHOR_EMAIL": "rig@localhost",
    "GIT_COMMITTER_NAME": "rig",
    "GIT_COMMITTER_EMAIL": "rig@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}

GIT_TIMEOUT_S = 600.0
APT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class KernelSource:
    spec: str  # as the user gave it
    kind: str  # "debian" | "git"
    repo: Path  # the git repository holding the tree
    base_commit: str  # full commit id the series applies on
    source_id: str  # stable identity for caching ("debian:linux-source-6.1=6.1.176-1", "git:<commit>")
    tree_key: str  # names rig's worktree and build directory for this tree
    version: str  # upstream version from the Makefile, e.g. "6.1.176"
    package: str | None = None  # Debian package name and version, for Debian sources
    package_version: str | None = None


def git(args: list[str], cwd: Path, *, timeout: float = GIT_TIMEOUT_S, check: bool = True,
        env: dict[str, str] | None = None, error: type = InfraError, what: str | None = None) -> proc.Result:
    return proc.run(["git", *args], cwd=cwd, timeout=timeout, check=check, env=env, error=error,
                    what=what or f"git {' '.join(args[:2])}")


def makefile_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from a kernel tree's top Makefile."""
    fields: dict[str, str] = {}
    try:
        with open(tree / "Makefile") as f:
            for _ in range(20):
                match = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", f.readline())
                if match:
                    fields[match.group(1)] = match.group(2)
    except OSError:
        return "unknown"
    if "VERSION" not in fields:
        return "unknown"
    return f"{fields['VERSION']}.{fields.get('PATCHLEVEL', '0')}.{fields.get('SUBLEVEL', '0')}{fields.get('EXTRAVERSION', '')}"


# --- Debian mirror and private apt state ---------------------------------------------


def host_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian archive the host already uses (one-line or deb822 sources), else deb.debian.org."""
    candidates: list[str] = []
    files = [etc_apt / "sources.list"]
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                if re.search(r"^Enabled:\s*no", stanza, re.M | re.I):
                    continue
                types = re.search(r"^Types:\s*(.*)$", stanza, re.M)
                uris = re.search(r"^URIs:\s*(.*)$", stanza, re.M)
                if types and uris and "deb" in types.group(1).split():
                    candidates += uris.group(1).split()
        else:
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # type: ignore[assignment]
                if len(line) >= 3 and line[0] == "deb":
                    candidates.append(line[1])
    for uri in candidates:
        uri = uri.rstrip("/")
        # The main archive, not debian-security or a third-party repository.
        if re.match(r"^https?://", uri) and uri.endswith("/debian"):
            return uri
    return DEFAULT_MIRROR


class PrivateApt:
    """apt-get/apt-cache with rig's own sources list, lists and archives, never the host's."""

    def __init__(self, root: Path, mirror: str, *, entries: tuple[tuple[str, str], ...] | None = None) -> None:
        """`entries`: (type, suite) pairs of the sources list, ("deb-src", "trixie") for
        source packages; by default the binary suites of Debian's kernel packages."""
        self.root = root
        self.mirror = mirror
        self.sources = root / "sources.list"
        self.lists = root / "lists"
        (self.lists / "partial").mkdir(parents=True, exist_ok=True)
        (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        if entries is None:
            entries = tuple(("deb", suite) for suite in sorted({suite for _, suite in DEBIAN_KERNELS.values()}))
        text = "".join(f"{kind} {mirror} {suite} main\n" for kind, suite in entries)
        if not self.sources.exists() or self.sources.read_text() != text:
            self.sources.write_text(text)
            for stale in self._index_files():
                stale.unlink()

    def _index_files(self) -> list[Path]:
        # Packages lists for deb lines, Sources lists for deb-src lines.
        return [*self.lists.glob("*_Packages*"), *self.lists.glob("*_Sources*")]

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": str(self.sources),
            "Dir::Etc::SourceParts": str(self.root / "sources.list.d"),
            "Dir::State::Lists": str(self.lists),
            "Dir::State::status": str(self.root / "status"),
            "Dir::Cache": str(self.root / "cache"),
            # sid's Release file on mirrors is routinely past its Valid-Until date.
            "Acquire::Check-Valid-Until": "false",
            "Debug::NoLocking": "1",
            "APT::Get::List-Cleanup": "0",
        }
        if os.geteuid() == 0:
            # apt would drop to the _apt user, which cannot write into rig's private cache.
            opts["APT::Sandbox::User"] = "root"
        (self.root / "sources.list.d").mkdir(exist_ok=True)
        (self.root / "status").touch(exist_ok=True)
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def lists_age_s(self) -> float:
        # A stamp of rig's own: apt leaves unchanged lists with their old dates.
        stamp = self.lists / ".rig-updated"
        if not stamp.exists() or not self._index_files():
            return float("inf")
        return time.time() - stamp.stat().st_mtime

    def update(self) -> None:
        with cache.locked(self.root / "update.lock", timeout_s=APT_TIMEOUT_S, what="apt-get update"):
            # --error-on=any: without it an unreachable mirror exits 0 ("Some index files
            # failed to download. They have been ignored"), and rig trusts empty lists.
            proc.run(["apt-get", *self.options(), "-q", "--error-on=any", "update"], timeout=APT_TIMEOUT_S,
                     what="apt-get update",
                     hint=f"check that the Debian mirror {self.mirror} is reachable")
            (self.lists / ".rig-updated").touch()

    def candidate(self, package: str) -> str | None:
        # Remembered until the next update: apt-cache takes a second, a cache hit should not.
        memo = self.lists / ".rig-candidates.json"
        stamp = self.lists / ".rig-updated"
        known: dict[str, str | None] = {}
        if memo.exists() and stamp.exists() and memo.stat().st_mtime >= stamp.stat().st_mtime:
            try:
                known = json.loads(memo.read_text())
            except ValueError:
                known = {}
        if package in known:
            return known[package]
        result = proc.run(["apt-cache", *self.options(), "policy", package], timeout=120, what="apt-cache policy")
        match = re.search(r"^\s*Candidate:\s*(\S+)", result.stdout, re.M)
        version = None if match is None or match.group(1) == "(none)" else match.group(1)
        if stamp.exists():
            tmp = memo.with_suffix(".tmp")
            tmp.write_text(json.dumps({**known, package: version}))
            os.replace(tmp, memo)
        return version

    def download(self, package: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        proc.run(["apt-get", *self.options(), "-q", "download", f"{package}={version}"], cwd=dest,
                 timeout=APT_TIMEOUT_S, what=f"downloading {package} {version}",
                 hint=f"check that the Debian mirror {self.mirror} is reachable")
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if not debs:
            raise InfraError(f"apt-get download of {package} {version} left no .deb in {dest}")
        return debs[0]


# --- resolving a --kernel spec --------------------------------------------------------


def resolve(spec: str, base: str | None = None, *, reporter: Reporter | None = None) -> KernelSource:
    """Turn a --kernel spec into a ready git repository and base commit."""
    reporter = reporter or quiet()
    if spec.startswith("debian:"):
        if base is not None:
            raise UserError(f"--base {base} applies to a local git checkout, not to {spec}",
                            hint="drop --base, or pass --kernel PATH of a kernel git checkout")
        return _debian(spec, reporter)
    path = user_path(spec)
    if path.exists():
        return _local(spec, path, base)
    raise UserError(f"unknown kernel '{spec}'", hint=f"pass --kernel as one of: {KERNEL_FORMS}")


def check(spec: str, base: str | None = None) -> None:
    """The --kernel (and --base) problems told without fetching anything, as a UserError:
    a Debian release rig does not know, --base with one, a path that is no kernel checkout
    or lacks the commit. Reads only (git rev-parse); `resolve` repeats what it needs."""
    if spec.startswith("debian:"):
        if base is not None:
            raise UserError(f"--base {base} applies to a local git checkout, not to {spec}",
                            hint="drop --base, or pass --kernel PATH of a kernel git checkout")
        _debian_release(spec)
        return
    path = user_path(spec)
    if not path.exists():
        raise UserError(f"unknown kernel '{spec}'", hint=f"pass --kernel as one of: {KERNEL_FORMS}")
    if not path.is_dir():
        raise UserError(f"--kernel {spec} is a file, not a kernel git checkout",
                        hint=f"pass --kernel as one of: {KERNEL_FORMS}")
    _local(spec, path, base)


def _debian_release(spec: str) -> str:
    release = spec.split(":", 1)[1]
    if release not in DEBIAN_KERNELS:
        raise UserError(f"unknown kernel '{spec}': rig knows Debian's {', '.join(DEBIAN_KERNELS)}",
                        hint=f"pass --kernel as one of: {KERNEL_FORMS}")
    return release


def _debian(spec: str, reporter: Reporter) -> KernelSource:
    release = _debian_release(spec)
    package, _suite = DEBIAN_KERNELS[release]
    apt = PrivateApt(cache.cache_dir("apt"), host_mirror())
    version = _debian_version(apt, package, reporter)
    tree = cache.cache_dir("sources") / f"{package}_{version}"
    with cache.locked(tree.parent / f"{tree.name}.lock", what=f"extracting {package}"):
        if not (tree / ".git").exists():
            _extract_debian(apt, package, version, tree, reporter)
    commit = git(["rev-parse", "HEAD"], tree).stdout.strip()
    return KernelSource(
        spec=spec, kind="debian", repo=tree, base_commit=commit,
        source_id=f"debian:{package}={version}@{commit}", tree_key=f"{package}_{version}",
        version=makefile_version(tree), package=package, package_version=version,
    )


def _debian_version(apt: PrivateApt, package: str, reporter: Reporter) -> str:
    """The mirror's current version; offline, the newest one already in the cache."""
    if apt.lists_age_s() > APT_LISTS_MAX_AGE_S:
        try:
            reporter.step(f"asking {apt.mirror} for Debian's kernel sources")
            apt.update()
        except InfraError as exc:
            cached = sorted((cache.cache_root() / "sources").glob(f"{package}_*/.git"))
            if cached:
                version = cached[-1].parent.name.split("_", 1)[1]
                reporter.warn(f"cannot reach {apt.mirror}; using {package} {version} from rig's cache")
                return version
            raise InfraError(f"cannot fetch Debian's package lists from {apt.mirror}",
                             hint="check the network or the mirror in /etc/apt/sources.list", log=exc.log) from exc
    version = apt.candidate(package)
    if version is None:
        raise InfraError(f"the Debian mirror {apt.mirror} has no {package}",
                         hint=f"remove {apt.lists} to refresh rig's package lists, or use another --kernel")
    return version


def _extract_debian(apt: PrivateApt, package: str, version: str, tree: Path, reporter: Reporter) -> None:
    staging = tree.parent / f".{tree.name}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    reporter.step(f"downloading {package} {version}")
    deb = apt.download(package, version, staging / "deb")
    unpacked = staging / "unpacked"
    proc.run(["dpkg-deb", "-x", deb, unpacked], timeout=600, what=f"unpacking {deb.name}")
    tarballs = sorted((unpacked / "usr" / "src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise InfraError(f"{deb.name} holds no kernel tarball under /usr/src")
    reporter.step(f"extracting {tarballs[0].name} (about 1.5 GB)")
    proc.run(["tar", "-xf", tarballs[0], "-C", staging], timeout=1800, what=f"extracting {tarballs[0].name}")
    top = staging / tarballs[0].name.split(".tar")[0]
    if not (top / "Makefile").exists():
        raise InfraError(f"{tarballs[0].name} did not unpack into {top.name}/")
    shutil.rmtree(staging / "deb")
    shutil.rmtree(unpacked)
    reporter.step("committing the tree to a git repository (about a minute)")
    git(["init", "-q"], top)
    # A commit of ~80,000 files would start `git gc --auto` in the background, which
    # competes with the kernel build for the CPUs; loose objects do no harm here.
    git(["config", "gc.auto", "0"], top)
    # Debian's tarball ignores everything at its top level ("/*" in .gitignore): add with -f.
    git(["add", "-f", "-A"], top, timeout=1800)
    git(["commit", "-q", "--no-verify", "-m", f"{package} {version}"], top, env=GIT_IDENTITY, timeout=1800)
    os.replace(top, tree)
    shutil.rmtree(staging)


def _local(spec: str, path: Path, base: str | None) -> KernelSource:
    result = git(["rev-parse", "--show-toplevel"], path, check=False)
    if not result.ok:
        raise UserError(f"--kernel {spec} is not a git checkout",
                        hint=f"pass --kernel as one of: {KERNEL_FORMS}")
    top = Path(result.stdout.strip())
    if not (top / "Kconfig").exists() or not (top / "arch").is_dir():
        raise UserError(f"--kernel {spec} is a git checkout but not a Linux kernel tree",
                        hint=f"pass --kernel as one of: {KERNEL_FORMS}")
    rev = base or "HEAD"
    resolved = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top, check=False)
    if not resolved.ok:
        raise UserError(f"--base {rev} is not a commit in {top}",
                        hint="pass --base as a branch, tag or commit id of that checkout")
    commit = resolved.stdout.strip()
    version = git(["show", f"{commit}:Makefile"], top, check=False).stdout
    return KernelSource(
        spec=spec, kind="git", repo=top, base_commit=commit, source_id=f"git:{commit}",
        tree_key="git-" + cache.digest([str(top.resolve())]), version=_version_from_text(version),
    )


def _version_from_text(makefile: str) -> str:
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\S*)", makefile, re.M))
    if "VERSION" not in fields:
        return "unknown"
    return f"{fields['VERSION']}.{fields.get('PATCHLEVEL', '0')}.{fields.get('SUBLEVEL', '0')}"


# --- rig's worktree -------------------------------------------------------------------


def worktree(source: KernelSource) -> Path:
    """rig's own worktree for this tree, reset to the base commit, clean.

    Kept between runs: checking out another commit rewrites only the files that differ,
    so make rebuilds only what the series changed. Callers hold the tree's lock (rig.build).
    """
    path = cache.cache_dir("worktrees") / source.tree_key
    if not (path / ".git").exists():
        if path.exists():
            shutil.rmtree(path)
        # --force also takes over a registration whose directory is gone, without
        # `git worktree prune`, which would tidy the user's other worktrees too.
        git(["worktree", "add", "--detach", "--force", path, source.base_commit], source.repo, timeout=1800,
            what="git worktree add")
        return path
    # A run killed half-way through `git am` leaves it in progress; drop it.
    if (path / git(["rev-parse", "--git-path", "rebase-apply"], path).stdout.strip()).exists():
        git(["am", "--abort"], path, check=False, env=GIT_IDENTITY)  # the reflog entry needs an identity
    git(["checkout", "-q", "--detach", "--force", source.base_commit], path, timeout=1800, what="git checkout")
    git(["clean", "-q", "-f", "-d", "-x"], path, timeout=1800, what="git clean")
    return path
