"""Kernel builds: a source, a series and a profile in; bzImage, vmlinux, System.map out.

Builds are cached twice over:
- a finished build is kept under its key (source + series, resulting .config, compiler)
  and the same request again only links its files into the output directory, without
  even creating a worktree (a cheap key of the inputs points at the finished build);
- each source tree and profile keeps one `make O=` directory and rig keeps one worktree
  per tree, so a changed series or fragment rebuilds incrementally.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rig import cache, kconfig, proc, source
from rig.errors import KernelError, UserError
from rig.progress import Reporter
from rig.rundir import write_metadata
from rig import series as series_mod
from rig.series import PatchInfo, Series

__all__ = ["BuildRequest", "BuildArtifacts", "PatchInfo", "build"]

# Bump when the way rig builds changes, so old cache entries are not reused.
RECIPE_VERSION = "1"

MAKE_TIMEOUT_S = 4 * 3600.0
CONFIG_TIMEOUT_S = 600.0

# Compile steps of a cold build from scratch, per profile, measured on Debian's 6.1
# (they vary little between kernel versions): the bar's estimate until this tree has
# been built once.
COLD_UNITS = {"default": 1450, "kasan": 1450, "kunit": 1500}

# Lines of make's output that count as one unit of work on the bar.
UNIT_LINE = re.compile(r"^\s+(CC|AS)\s")
# "drivers/gpu/drm/foo.c:12:5: error: ..." (also "fatal error:"), or a linker error.
COMPILER_ERROR = re.compile(r"^(?P<where>[^\s:][^:]*:\d+(?::\d+)?): (?:fatal )?error: (?P<what>.*)$")
LINKER_ERROR = re.compile(r"^(?:ld|.*?ld(?:\.bfd)?): .*(undefined reference|multiple definition|error).*$")

ARTIFACT_FILES = {
    "bzImage": Path("arch/x86/boot/bzImage"),
    "vmlinux": Path("vmlinux"),
    "System.map": Path("System.map"),
    ".config": Path(".config"),
}


@dataclass(frozen=True)
class BuildRequest:
    kernel: str  # "debian:6.1" | "debian:6.12" | "debian:7.2" | path to a local git checkout
    series: str | None = None  # mbox file | dir of *.patch | git range A..B | lore message-id (b4)
    base: str | None = None  # git rev for a local checkout (default HEAD)
    profile: str = "default"  # a profile of kernel-configs/profiles.toml
    extra_configs: tuple[Path, ...] = ()
    each_patch: bool = False


@dataclass(frozen=True)
class BuildArtifacts:
    bzimage: Path
    vmlinux: Path
    system_map: Path
    config: Path
    build_log: Path
    kernel_release: str
    cache_hit: bool
    patches: tuple[PatchInfo, ...]
    source: str  # source id, e.g. "debian:linux-source-6.1=6.1.176-1@<commit>"
    base_commit: str
    head_commit: str = ""  # commit of the tree that was built (base + series)
    profile: str = "default"
    out_dir: Path = Path()
    cache_key: str = ""
    cache_entry: Path = Path()  # the cached build these files are links of
    config_warnings: tuple[str, ...] = ()
    metadata: Path = Path()
    duration_s: float = 0.0


@dataclass
class _Timings:
    started: float = field(default_factory=time.monotonic)
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        begun = time.monotonic()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.monotonic() - begun, 2)

    def total(self) -> float:
        return round(time.monotonic() - self.started, 2)


# --- environment ----------------------------------------------------------------------


def build_lock_path() -> Path:
    """One kernel build at a time per machine: $RIG_BUILD_LOCK, else a lock in the cache."""
    explicit = os.environ.get("RIG_BUILD_LOCK")
    return Path(explicit) if explicit else cache.cache_dir("locks") / "build.lock"


def compiler_id() -> str:
    gcc = proc.require_tool("gcc", "gcc")
    return proc.run([gcc, "--version"], timeout=30).stdout.splitlines()[0].strip()


def _jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def make_argv(worktree: Path, build_dir: Path, *targets: str) -> list[str]:
    argv = ["make", "-C", str(worktree), f"O={build_dir}", f"-j{_jobs()}", "ARCH=x86_64"]
    if shutil.which("ccache"):
        argv.append("CC=ccache gcc")
    return [*argv, *targets]


def make_env() -> dict[str, str]:
    return {
        "CCACHE_DIR": str(cache.cache_dir("ccache")),
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "20G"),
        # Depend mode hashes the compiler's own dependency list instead of running the
        # preprocessor first: a miss (every file a new patch touches) costs no extra cpp.
        "CCACHE_DEPEND": "1",
        # A fixed build stamp: the same inputs give the same vmlinux, and ccache hits.
        "KBUILD_BUILD_USER": "rig",
        "KBUILD_BUILD_HOST": "rig",
        "KBUILD_BUILD_TIMESTAMP": "Sat Jan  1 00:00:00 UTC 2000",
        "LC_ALL": "C",
    }


# --- the cache of finished builds -----------------------------------------------------


def _entry_dir(full_key: str) -> Path:
    return cache.cache_root() / "builds" / full_key


def _index_path(quick_key: str) -> Path:
    return cache.cache_root() / "builds" / "index" / f"{quick_key}.json"


def _complete(entry: Path) -> bool:
    meta = entry / "entry.json"
    if not meta.exists():
        return False
    try:
        recorded = json.loads(meta.read_text())["sizes"]
    except (ValueError, KeyError):
        return False
    # Sizes, not hashes: cheap enough for a cache hit, and catches truncated files.
    return all((entry / name).exists() and (entry / name).stat().st_size == size for name, size in recorded.items())


def _lookup(quick_key: str) -> Path | None:
    index = _index_path(quick_key)
    if not index.exists():
        return None
    try:
        entry = _entry_dir(json.loads(index.read_text())["entry"])
    except (ValueError, KeyError):
        return None
    return entry if _complete(entry) else None


# The big images are hard-linked from the cache (a hit must take seconds); the small
# text files are copied, since users edit .config and logs in place.
LINKED = {"bzImage", "vmlinux"}


def _link_into(entry: Path, out: Path) -> dict[str, Path]:
    """The cached files in `out`: hard links or copies."""
    placed = {}
    for name in [*ARTIFACT_FILES, "build.log"]:
        target = out / name
        if target.exists() or target.is_symlink():
            target.unlink()
        placed[name] = target
        if name in LINKED:
            try:
                os.link(entry / name, target)
                continue
            except OSError:
                pass  # another filesystem: copy
        shutil.copy2(entry / name, target)
    return placed


# --- the build ------------------------------------------------------------------------


def build(request: BuildRequest, out: Path, *, progress: bool = True) -> BuildArtifacts:
    """Build the kernel `request` asks for; its files end up in `out`."""
    return Builder(request, out, Reporter(enabled=progress)).run()


class Builder:
    def __init__(self, request: BuildRequest, out: Path, reporter: Reporter) -> None:
        self.request = request
        self.out = out
        self.reporter = reporter
        self.timings = _Timings()
        self._optional_misses: tuple[str, ...] | None = None
        self._optional_absent: tuple[str, ...] = ()
        self._compiler = ""

    def run(self) -> BuildArtifacts:
        request, reporter = self.request, self.reporter
        self.out.mkdir(parents=True, exist_ok=True)
        # Everything that can be checked without the network or a worktree, first.
        if request.each_patch and request.series is None:
            raise UserError("--each-patch needs a series", hint="pass --series with the patches to build one by one")
        chosen = kconfig.profile(request.profile)
        for extra in request.extra_configs:
            if not Path(extra).is_file():
                raise UserError(f"config fragment {extra} does not exist",
                                hint="pass --config with a file of CONFIG_FOO=y lines")
        fragments = [*chosen.fragments, *(Path(p).resolve() for p in request.extra_configs)]
        settings = kconfig.merge(fragments)

        # A series in a file or directory is read before fetching any source, so bad
        # input fails in a second; a git range needs the kernel checkout first.
        series = self._load_series(None) if self._series_is_local() else None
        with self.timings.stage("source"):
            src = source.resolve(request.kernel, self._base(), reporter=reporter)
        if series is None:
            series = self._load_series(src)
        self._list_patches(series)
        compiler = self._compiler = compiler_id()
        series_digest = series.digest if series else "none"
        quick_key = cache.digest(["quick", RECIPE_VERSION, src.source_id, series_digest,
                                  kconfig.fragments_digest(fragments), compiler, str(request.each_patch)])

        entry = _lookup(quick_key)
        if entry is not None:
            return self._finish(entry, src, series, settings, fragments, compiler, quick_key, cache_hit=True)

        reporter.step(f"waiting for the build lock {build_lock_path()}" if cache.is_locked(build_lock_path()) else "building")
        with self._locks(src):
            entry = _lookup(quick_key)  # another rig may have built it while we waited
            if entry is None:
                entry = self._build_locked(src, series, settings, fragments, compiler, quick_key)
        return self._finish(entry, src, series, settings, fragments, compiler, quick_key, cache_hit=False)

    @contextmanager
    def _locks(self, src: source.KernelSource) -> Iterator[None]:
        """The machine-wide build lock, and the lock of this tree's worktree and build
        directories (in the cache: a rig pointed at another RIG_BUILD_LOCK shares them)."""
        tree_lock = cache.cache_dir("locks") / f"tree-{src.tree_key}.lock"
        with cache.locked(build_lock_path(), timeout_s=MAKE_TIMEOUT_S, what="a kernel build"):
            with cache.locked(tree_lock, timeout_s=MAKE_TIMEOUT_S, what=f"building {src.tree_key}"):
                yield

    # --- inputs -----------------------------------------------------------------------

    def _base(self) -> str | None:
        """--base, else the start of a git range series: `--series v6.12..topic` means
        the topic's patches on v6.12, whatever the checkout's HEAD is."""
        if self.request.base is not None or self.request.series is None or self._series_is_local():
            return self.request.base
        if self.request.kernel.startswith("debian:"):
            return None
        return series_mod.range_start(self.request.series)

    def _series_is_local(self) -> bool:
        return self.request.series is not None and Path(self.request.series).expanduser().exists()

    def _load_series(self, src: source.KernelSource | None) -> Series | None:
        if self.request.series is None:
            return None
        workdir = self.out / "series"
        repo = src.repo if src is not None and src.kind == "git" else None
        with self.timings.stage("series"):
            return series_mod.load(self.request.series, workdir, repo=repo)

    def _list_patches(self, series: Series | None) -> None:
        if series is None:
            return
        for subject in series.skipped:
            self.reporter.step(f"skipping {subject!r} (no diff: a cover letter or reply)")
        for patch in series.patches:
            self.reporter.step(f"[{patch.number}/{len(series.patches)}] {patch.subject} ({patch.author})")

    # --- building under the lock --------------------------------------------------------

    def _build_locked(self, src: source.KernelSource, series: Series | None, settings: dict[str, kconfig.Setting],
                      fragments: list[Path], compiler: str, quick_key: str) -> Path:
        build_dir = cache.cache_dir("build", f"{src.tree_key}-{self.request.profile}")
        log = self.out / "build.log"
        log.write_text("")
        with self.timings.stage("worktree"):
            self.reporter.step("preparing rig's worktree at the base commit")
            tree = source.worktree(src)
        patches = series.patches if series else ()
        if self.request.each_patch:
            # The base first, then one patch at a time: the first broken build names its patch.
            self._configure_and_make(tree, build_dir, settings, log, "the base tree")
            for patch in patches:
                self._apply(patch, tree)
                self._configure_and_make(tree, build_dir, settings, log, patch.title(), patch=patch)
        else:
            for patch in patches:
                self._apply(patch, tree)
            label = f"base + {len(patches)} patch(es)" if patches else "the base tree"
            with self.timings.stage("config"):
                self._configure(tree, build_dir, settings, log)
            # Different inputs can give the same .config (say, a fragment that only
            # repeats the profile): then the finished build is already in the cache.
            entry = _entry_dir(self._full_key(build_dir, src, series, compiler))
            if _complete(entry):
                self._index(quick_key, entry)
                return entry
            with self.timings.stage("make"):
                self._make(tree, build_dir, log, label, None)
        head = source.git(["rev-parse", "HEAD"], tree).stdout.strip()
        return self._store(build_dir, log, src, series, compiler, quick_key, head)

    def _full_key(self, build_dir: Path, src: source.KernelSource, series: Series | None, compiler: str) -> str:
        config_hash = cache.file_digest(build_dir / ".config")
        return cache.digest(["full", RECIPE_VERSION, src.source_id, series.digest if series else "none",
                             config_hash, compiler])

    def _index(self, quick_key: str, entry: Path) -> None:
        index = _index_path(quick_key)
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(".tmp")
        tmp.write_text(json.dumps({"entry": entry.name}))
        os.replace(tmp, index)

    def _apply(self, patch: PatchInfo, tree: Path) -> None:
        with self.timings.stage("apply"):
            series_mod.apply(patch, tree)

    def _configure_and_make(self, tree: Path, build_dir: Path, settings: dict[str, kconfig.Setting],
                            log: Path, label: str, *, patch: PatchInfo | None = None) -> None:
        with self.timings.stage("config"):
            self._configure(tree, build_dir, settings, log)
        with self.timings.stage("make"):
            self._make(tree, build_dir, log, label, patch)

    def _configure(self, tree: Path, build_dir: Path, settings: dict[str, kconfig.Setting], log: Path) -> None:
        rendered = kconfig.render(settings)
        dot_config = build_dir / ".config"
        state_file = build_dir / "rig-config-state.json"
        # allnoconfig and the check give the same answer for the same fragment, Kconfig
        # files and compiler: skip both then (seconds on every incremental build).
        state = {"fragment": cache.digest([rendered]), "kconfig": kconfig_files_id(tree), "compiler": self._compiler}
        previous = _read_json(state_file)
        if (dot_config.exists() and all(previous.get(k) == v for k, v in state.items())
                and previous.get("config_hash") == cache.file_digest(dot_config)):
            self._note_optional(tuple(previous.get("warn", ())), tuple(previous.get("absent", ())))
            return
        merged = build_dir / "rig-fragment.config"
        merged.write_text(rendered)
        proc.run(make_argv(tree, build_dir, f"KCONFIG_ALLCONFIG={merged}", "allnoconfig"), env=make_env(),
                 timeout=CONFIG_TIMEOUT_S, log=log, what="make allnoconfig", error=KernelError,
                 hint="the kernel's configuration step failed; see the log")
        misses = kconfig.check(settings, dot_config, tree, f"the {self.request.profile} profile")
        # An optional symbol this version lacks is what `# rig: optional` is for: noted
        # in metadata.json only. One the version has but Kconfig refused is worth a warning.
        warn = tuple(m.describe() for m in misses if not m.absent)
        absent = tuple(m.describe() for m in misses if m.absent)
        self._note_optional(warn, absent)
        state_file.write_text(json.dumps({**state, "config_hash": cache.file_digest(dot_config),
                                          "warn": list(warn), "absent": list(absent)}))

    def _note_optional(self, warn: tuple[str, ...], absent: tuple[str, ...]) -> None:
        if warn != self._optional_misses:  # once, not after every patch
            for line in warn:
                self.reporter.warn(f"optional option did not stick: {line}")
        self._optional_misses = warn
        self._optional_absent = absent

    def _make(self, tree: Path, build_dir: Path, log: Path, label: str, patch: PatchInfo | None) -> None:
        estimate_file = build_dir / "rig-units.json"
        cold = not (build_dir / "vmlinux").exists()
        estimate = COLD_UNITS.get(self.request.profile, 2000) if cold else _previous_units(estimate_file)
        units = 0
        first_error: list[str] = []

        prefix = f"{tree}/"
        with self.reporter.task(f"building {label}", total=estimate) as bar:
            def on_line(line: str) -> None:
                nonlocal units
                if UNIT_LINE.match(line):
                    units += 1
                    bar.advance()
                elif not first_error and (COMPILER_ERROR.match(line) or LINKER_ERROR.match(line)):
                    # Paths relative to the kernel tree, as in the patch, not to rig's worktree.
                    first_error.append(line.strip().replace(prefix, ""))

            result = proc.run(make_argv(tree, build_dir, "bzImage", "vmlinux"), env=make_env(),
                              timeout=MAKE_TIMEOUT_S, log=log, on_line=on_line, check=False, what="make")
            if result.ok:
                bar.finish()
        estimate_file.write_text(json.dumps({"units": units, "cold": cold}))
        if result.ok:
            return
        tail = result.stdout.strip().splitlines() or ["(no output)"]
        make_errors = [line.strip() for line in tail if "*** " in line]  # make's "*** [target] Error 1"
        where = first_error[0] if first_error else (make_errors or tail)[0 if make_errors else -1]
        culprit = f"{patch.title()} breaks the build" if patch else f"the kernel does not build ({label})"
        raise KernelError(f"{culprit}:\n    {where}", log=log,
                          hint="fix the error above (the full make output is in the log)")

    def _store(self, build_dir: Path, log: Path, src: source.KernelSource, series: Series | None, compiler: str,
               quick_key: str, head: str) -> Path:
        config_hash = cache.file_digest(build_dir / ".config")
        full_key = self._full_key(build_dir, src, series, compiler)
        entry = _entry_dir(full_key)
        staging = entry.parent / f".{full_key}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        sizes = {}
        for name, relative in ARTIFACT_FILES.items():
            shutil.copy2(build_dir / relative, staging / name)
            sizes[name] = (staging / name).stat().st_size
        shutil.copy2(log, staging / "build.log")
        sizes["build.log"] = (staging / "build.log").stat().st_size
        release = (build_dir / "include" / "config" / "kernel.release").read_text().strip()
        (staging / "entry.json").write_text(json.dumps({
            "sizes": sizes, "kernel_release": release, "head_commit": head, "config_hash": config_hash,
            "source": src.source_id, "optional_misses": list(self._optional_misses or ()),
            "optional_absent": list(self._optional_absent),
            "make_units": json.loads((build_dir / "rig-units.json").read_text()).get("units"),
            "timings": dict(self.timings.stages),
        }, indent=2))
        cache.publish(staging, entry)
        self._index(quick_key, entry)
        return entry

    # --- output -------------------------------------------------------------------------

    def _finish(self, entry: Path, src: source.KernelSource, series: Series | None,
                settings: dict[str, kconfig.Setting], fragments: list[Path], compiler: str, quick_key: str,
                *, cache_hit: bool) -> BuildArtifacts:
        if cache_hit:
            self.reporter.step(f"cache hit: reusing the build in {entry}")
        placed = _link_into(entry, self.out)
        facts = json.loads((entry / "entry.json").read_text())
        patches = series.patches if series else ()
        artifacts = BuildArtifacts(
            bzimage=placed["bzImage"], vmlinux=placed["vmlinux"], system_map=placed["System.map"],
            config=placed[".config"], build_log=placed["build.log"], kernel_release=facts["kernel_release"],
            cache_hit=cache_hit, patches=patches, source=src.source_id, base_commit=src.base_commit,
            head_commit=facts["head_commit"], profile=self.request.profile, out_dir=self.out.resolve(),
            cache_key=entry.name, cache_entry=entry, config_warnings=tuple(facts.get("optional_misses", ())),
            metadata=self.out / "metadata.json", duration_s=self.timings.total(),
        )
        write_metadata(self.out, {"build": self._metadata(artifacts, src, series, fragments, compiler, quick_key,
                                                          facts)})
        return artifacts

    def _metadata(self, artifacts: BuildArtifacts, src: source.KernelSource, series: Series | None,
                  fragments: list[Path], compiler: str, quick_key: str, facts: dict[str, Any]) -> dict[str, Any]:
        request = self.request
        command = ["rig", "build", "--kernel", request.kernel, "--profile", request.profile]
        if request.series:
            local = Path(request.series).expanduser()
            command += ["--series", str(local.resolve()) if local.exists() else request.series]
        if request.base:
            command += ["--base", request.base]
        for extra in request.extra_configs:
            command += ["--config", str(Path(extra).resolve())]
        if request.each_patch:
            command.append("--each-patch")
        build_dir = cache.cache_root() / "build" / f"{src.tree_key}-{request.profile}"
        tree = cache.cache_root() / "worktrees" / src.tree_key
        return {
            "request": {**asdict(request), "extra_configs": [str(p) for p in request.extra_configs]},
            "source": {"id": src.source_id, "kind": src.kind, "repo": str(src.repo), "version": src.version,
                       "package": src.package, "package_version": src.package_version,
                       "base_commit": src.base_commit, "head_commit": artifacts.head_commit},
            "series": None if series is None else {
                "spec": series.spec, "kind": series.kind, "digest": series.digest, "skipped": list(series.skipped),
                "patches": [{"number": p.number, "subject": p.subject, "author": p.author, "digest": p.digest}
                            for p in series.patches]},
            "fragments": {str(f): cache.file_digest(f)[:16] for f in fragments},
            "config_hash": facts.get("config_hash"),
            "optional_options_missing": list(artifacts.config_warnings),
            "optional_options_not_in_this_version": facts.get("optional_absent", []),
            "compiler": compiler,
            "kernel_release": artifacts.kernel_release,
            "cache": {"hit": artifacts.cache_hit, "quick_key": quick_key, "entry": str(artifacts.cache_entry)},
            "reproduce": {
                "rig": " ".join(_quote(c) for c in command),
                "make": [
                    " ".join(_quote(a) for a in make_argv(tree, build_dir, f"KCONFIG_ALLCONFIG={build_dir}/rig-fragment.config", "allnoconfig")),
                    " ".join(_quote(a) for a in make_argv(tree, build_dir, "bzImage", "vmlinux")),
                ],
                "env": make_env(),
            },
            "timings_s": {**self.timings.stages, "total": self.timings.total(),
                          "built_in": facts.get("timings", {})},
            "make_units": facts.get("make_units"),
        }


def kconfig_files_id(tree: Path) -> str:
    """Identity of the tree's Kconfig files and kconfig tool, from git's index (fast)."""
    listing = proc.run(["git", "ls-files", "-s", "--", ":(glob)**/Kconfig*", ":(glob)scripts/kconfig/**"],
                       cwd=tree, timeout=120, what="git ls-files").stdout
    return cache.digest([listing])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _previous_units(path: Path) -> float | None:
    try:
        units = json.loads(path.read_text()).get("units")
    except (OSError, ValueError):
        return None
    return float(units) if units else None


def _quote(arg: str) -> str:
    return shlex.quote(arg)
