"""Kernel builds: a source, a series, a profile and a target in; the kernel image,
vmlinux and System.map out.

A build runs in two steps:
- `resolve` turns a request into a `ResolvedBuild` once, before any long work: the
  source tree and base commit, the series and its patches, the merged fragments, the
  compiler's identity and the make variables of the target. Nothing later derives them
  again.
- `build_prefix(resolved, k, out)` builds the tree with the series' first k patches.
  `build` calls it once (all patches), `--each-patch` for k = 0..n, bisection for any k.

Finished builds are kept in the cache (rig.cache.Store "builds") under their key
(source, the k patches, the resulting .config, compiler); a cheap key of the inputs
(computed before any worktree or make) points at the finished build, so the same
request again only links its files into the output directory. Each source tree, profile
and target keeps one `make O=` directory and rig keeps one worktree per tree, so a
changed series or fragment rebuilds incrementally.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from rig import cache, kconfig, proc, sandbox, source
from rig.errors import DISK_FULL_HINT, InfraError, KernelError, UserError, disk_full_in
from rig.paths import user_path
from rig.progress import Reporter, quiet
from rig.sandbox import Sandbox
from rig.rundir import write_metadata
from rig import series as series_mod
from rig.series import PatchInfo, Series
from rig.target import DEFAULT_TARGET, Target

__all__ = ["BuildRequest", "BuildArtifacts", "PatchInfo", "ResolvedBuild", "build", "build_prefix", "resolve"]

# Bump when the way rig builds changes, so old cache entries are not reused.
RECIPE_VERSION = "1"

MAKE_TIMEOUT_S = 4 * 3600.0
CONFIG_TIMEOUT_S = 600.0
COMPILER_TIMEOUT_S = 30.0

# Compile steps of a cold build from scratch, per profile, measured on Debian's 6.1
# (they vary little between kernel versions): the bar's estimate until this tree has
# been built once.
COLD_UNITS = {"default": 1450, "kasan": 1450, "kunit": 1500}

# Lines of make's output that count as one unit of work on the bar.
UNIT_LINE = re.compile(r"^\s+(CC|AS)\s")
# "drivers/gpu/drm/foo.c:12:5: error: ..." (also "fatal error:"), or a linker error.
COMPILER_ERROR = re.compile(r"^(?P<where>[^\s:][^:]*:\d+(?::\d+)?): (?:fatal )?error: (?P<what>.*)$")
LINKER_ERROR = re.compile(r"^(?:ld|.*?ld(?:\.bfd)?): .*(undefined reference|multiple definition|error).*$")


@dataclass(frozen=True)
class BuildRequest:
    kernel: str  # "debian:6.1" | "debian:6.12" | "debian:7.2" | path to a local git checkout
    series: str | None = None  # mbox file | dir of *.patch | git range A..B | lore message-id (b4)
    base: str | None = None  # git rev for a local checkout (default HEAD)
    profile: str = "default"  # a profile of kernel-configs/profiles.toml
    extra_configs: tuple[Path, ...] = ()
    each_patch: bool = False
    target: Target = DEFAULT_TARGET  # the guest architecture (--arch)
    # Apply and build in rig.sandbox; None: only a series fetched by message-id (a stranger's).
    sandbox: bool | None = None


@dataclass(frozen=True)
class BuildArtifacts:
    kernel_image: Path  # what QEMU's -kernel boots: bzImage on x86_64, Image on arm64
    vmlinux: Path
    system_map: Path
    config: Path
    build_log: Path
    kernel_release: str
    cache_hit: bool
    patches: tuple[PatchInfo, ...]  # the patches this kernel has (the first k of the series)
    source: str  # source id, e.g. "debian:linux-source-6.1=6.1.176-1@<commit>"
    base_commit: str
    head_commit: str = ""  # commit of the tree that was built (base + patches)
    profile: str = "default"
    out_dir: Path = Path()
    cache_key: str = ""
    cache_entry: Path = Path()  # the cached build these files are links of
    config_warnings: tuple[str, ...] = ()
    sandbox_denials: tuple[str, ...] = ()  # what the series' build tried that the sandbox refused
    metadata: Path = Path()
    duration_s: float = 0.0
    target: Target = DEFAULT_TARGET
    source_repo: Path | None = None  # the git repository holding base_commit and head_commit


@dataclass(frozen=True)
class ResolvedBuild:
    """Every input of a build, resolved once: what `build_prefix` needs and nothing to look up again."""

    request: BuildRequest
    source: source.KernelSource
    series: Series | None
    fragments: tuple[Path, ...]  # the target's, the profile's, then --config's, in merge order
    settings: Mapping[str, kconfig.Setting]  # the merged fragments, for this target
    fragments_digest: str
    compiler: str  # first line of `<compiler> --version`
    make_variables: tuple[str, ...]  # ARCH=, CROSS_COMPILE=, CC= on every make command line
    resolve_timings: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    resolve_s: float = 0.0  # how long resolving took, counted into every build's duration

    @property
    def target(self) -> Target:
        return self.request.target

    @property
    def patches(self) -> tuple[PatchInfo, ...]:
        return self.series.patches if self.series else ()

    @property
    def sandboxed(self) -> bool:
        """Whether the series is applied and built in rig.sandbox (--sandbox; by default
        only for a series fetched by message-id, code from a stranger)."""
        if self.request.sandbox is not None:
            return self.request.sandbox
        return self.series is not None and self.series.kind == "msgid"

    @property
    def build_dir(self) -> Path:
        """The `make O=` directory of this tree, profile and target."""
        name = f"{self.source.tree_key}-{self.request.profile}"
        # x86_64's directories predate targets: their names stay, and so do their objects.
        if self.target != DEFAULT_TARGET:
            name += f"-{self.target.name}"
        return cache.cache_root() / "build" / name

    @property
    def worktree(self) -> Path:
        return cache.cache_root() / "worktrees" / self.source.tree_key

    @property
    def image_name(self) -> str:
        """The kernel image's file name in the output directory (bzImage, Image)."""
        return PurePosixPath(self.target.kernel_image).name

    def artifact_files(self) -> dict[str, Path]:
        """Output file name -> where make leaves it in the build directory."""
        return {
            self.image_name: Path(self.target.kernel_image),
            "vmlinux": Path("vmlinux"),
            "System.map": Path("System.map"),
            ".config": Path(".config"),
        }

    def prefix_digest(self, k: int) -> str:
        """Identity of the first k patches; k = 0 is the base tree, the same build as no series."""
        if k == 0:
            return "none"
        return cache.digest([p.digest for p in self.patches[:k]])

    def quick_key(self, k: int) -> str:
        """The key of the inputs, known before any worktree or make: points at a finished build."""
        return cache.digest(["quick", RECIPE_VERSION, self.source.source_id, self.prefix_digest(k),
                             self.fragments_digest, self.compiler, *self.target.make_variables()])

    def full_key(self, k: int, config_hash: str) -> str:
        """The key of a finished build. The target is in the .config (CONFIG_X86_64,
        CONFIG_ARM64) and in the compiler's identity."""
        return cache.digest(["full", RECIPE_VERSION, self.source.source_id, self.prefix_digest(k),
                             config_hash, self.compiler])

    def reproduce_argv(self) -> list[str]:
        return reproduce_argv(self.request)


def reproduce_argv(request: BuildRequest) -> list[str]:
    """The `rig build` command line that makes this request again (local paths absolute)."""
    argv = ["rig", "build", "--kernel", request.kernel, "--arch", request.target.name, "--profile", request.profile]
    if request.series:
        local = user_path(request.series)
        argv += ["--series", str(local.resolve()) if local.exists() else request.series]
    if request.base:
        argv += ["--base", request.base]
    for extra in request.extra_configs:
        argv += ["--config", str(Path(extra).resolve())]
    if request.each_patch:
        argv.append("--each-patch")
    if request.sandbox is not None:
        argv.append("--sandbox" if request.sandbox else "--no-sandbox")
    return argv


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


def compiler_package(target: Target) -> str:
    """The Debian package of a target's compiler, for the hint when it is missing."""
    return f"gcc-{target.cross_compile.rstrip('-')}" if target.cross_compile else "gcc"


def compiler_id(target: Target = DEFAULT_TARGET) -> str:
    """The first line of `<compiler> --version`: a new compiler is a new build."""
    compiler = proc.require_tool(target.compiler, compiler_package(target))
    return proc.run([compiler, "--version"], timeout=COMPILER_TIMEOUT_S,
                    what=f"{target.compiler} --version").stdout.splitlines()[0].strip()


def _jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def make_variables(target: Target) -> tuple[str, ...]:
    """The variables on every make command line for `target`: ARCH=, CROSS_COMPILE= and,
    with ccache installed, CC= through ccache (the target's compiler, cross or not)."""
    variables = [*target.make_variables()]
    if shutil.which("ccache"):
        variables.append(f"CC=ccache {target.compiler}")
    return tuple(variables)


def make_argv(worktree: Path, build_dir: Path, variables: tuple[str, ...] | list[str], *goals: str) -> list[str]:
    return ["make", "-C", str(worktree), f"O={build_dir}", f"-j{_jobs()}", *variables, *goals]


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


BUILDS = cache.Store("builds", _complete)


def _link_into(entry: Path, out: Path, names: list[str], linked: set[str]) -> dict[str, Path]:
    """The cached files in `out`: the big images hard-linked (a hit must take seconds),
    the small text files copied (users edit .config and logs in place)."""
    placed = {}
    for name in names:
        target = out / name
        if target.exists() or target.is_symlink():
            target.unlink()
        placed[name] = target
        if name in linked:
            try:
                os.link(entry / name, target)
                continue
            except OSError:
                pass  # another filesystem: copy
        shutil.copy2(entry / name, target)
    return placed


# --- resolving a request --------------------------------------------------------------


def resolve(request: BuildRequest, out: Path, *, reporter: Reporter | None = None) -> ResolvedBuild:
    """Everything a build of `request` needs, checked and fetched once; the series' patch
    files are written under `out`. Bad input fails here, before any source is fetched
    when it can be told without one."""
    reporter = reporter or quiet()
    timings = _Timings()
    target = request.target
    if request.each_patch and request.series is None:
        raise UserError("--each-patch needs a series", hint="pass --series with the patches to build one by one")
    chosen = kconfig.profile(request.profile)
    for extra in request.extra_configs:
        if not Path(extra).is_file():
            raise UserError(f"config fragment {extra} does not exist",
                            hint="pass --config with a file of CONFIG_FOO=y lines")
    fragments = (*(kconfig.CONFIGS_DIR / name for name in target.config_fragments), *chosen.fragments,
                 *(Path(p).resolve() for p in request.extra_configs))
    settings = kconfig.merge(list(fragments), target=target.name)
    out.mkdir(parents=True, exist_ok=True)

    # A series in a file or directory is read before fetching any source, so bad input
    # fails in a second; a git range needs the kernel checkout first.
    local_series = request.series is not None and user_path(request.series).exists()
    series = _load_series(request, out, None, timings) if local_series else None
    with timings.stage("source"):
        src = source.resolve(request.kernel, _base(request, local_series), reporter=reporter)
    if request.series is not None and series is None:
        series = _load_series(request, out, src, timings)
    _list_patches(series, reporter)
    return ResolvedBuild(
        request=request, source=src, series=series, fragments=fragments,
        settings=MappingProxyType(settings), fragments_digest=kconfig.fragments_digest(list(fragments)),
        compiler=compiler_id(target), make_variables=make_variables(target),
        resolve_timings=MappingProxyType(dict(timings.stages)), resolve_s=timings.total(),
    )


def request_problems(request: BuildRequest) -> list[str]:
    """Every problem of a request that can be told before anything is fetched, built or
    written (the kernel spec, the profile, each --config fragment line, the series read and
    checked for damage), each one line naming the option. `rig build`, `rig boot` and
    `rig run` ask before they make a run directory; `resolve` checks again what it uses."""
    problems: list[str] = []

    def note(check: Callable[[], object]) -> None:
        try:
            check()
        except UserError as exc:
            problems.append(" ".join(exc.message.split()) + (f" ({exc.hint})" if exc.hint else ""))

    if request.each_patch and request.series is None:
        problems.append("--each-patch needs a series (pass --series with the patches to build one by one)")
    local_series = request.series is not None and user_path(request.series).exists()
    note(lambda: source.check(request.kernel, _base(request, local_series)))
    note(lambda: kconfig.profile(request.profile))
    for extra in request.extra_configs:
        note(lambda extra=extra: _check_fragment(Path(extra)))
    if request.series is not None:
        note(lambda: series_mod.check(request.series or "", kernel=request.kernel))
    return problems


def _check_fragment(path: Path) -> None:
    hint = "pass --config with a file of CONFIG_FOO=y lines"
    if not path.exists():
        raise UserError(f"config fragment {path} does not exist", hint=hint)
    if not path.is_file():
        raise UserError(f"config fragment {path} is not a file", hint=hint)
    kconfig.parse_fragment(path)


def check_request(request: BuildRequest) -> None:
    """request_problems as one UserError (nothing when the request is good)."""
    problems = request_problems(request)
    if problems:
        raise UserError("cannot build this kernel:\n    " + "\n    ".join(problems),
                        hint="see `rig build --help`")


def _base(request: BuildRequest, local_series: bool) -> str | None:
    """--base, else the start of a git range series: `--series v6.12..topic` means the
    topic's patches on v6.12, whatever the checkout's HEAD is."""
    if request.base is not None or request.series is None or local_series:
        return request.base
    if request.kernel.startswith("debian:"):
        return None
    return series_mod.range_start(request.series)


def _load_series(request: BuildRequest, out: Path, src: source.KernelSource | None, timings: _Timings) -> Series:
    assert request.series is not None
    repo = src.repo if src is not None and src.kind == "git" else None
    with timings.stage("series"):
        return series_mod.load(request.series, out / "series", repo=repo)


def _list_patches(series: Series | None, reporter: Reporter) -> None:
    if series is None:
        return
    for subject in series.skipped:
        reporter.step(f"skipping {subject!r} (no diff: a cover letter or reply)")
    for patch in series.patches:
        reporter.step(f"[{patch.number}/{len(series.patches)}] {patch.subject} ({patch.author})")


# --- the build ------------------------------------------------------------------------


def build(request: BuildRequest, out: Path, *, progress: bool = True) -> BuildArtifacts:
    """Build the kernel `request` asks for; its files end up in `out`. With each_patch,
    the base and then every prefix of the series in turn: the first that does not
    build names its patch."""
    reporter = Reporter(enabled=progress)
    resolved = resolve(request, out, reporter=reporter)
    count = len(resolved.patches)
    if request.each_patch:
        for k in range(count):
            build_prefix(resolved, k, out, reporter=reporter)
    return build_prefix(resolved, count, out, reporter=reporter)


def build_prefix(resolved: ResolvedBuild, k: int, out: Path, *, reporter: Reporter | None = None) -> BuildArtifacts:
    """The tree of `resolved` with the series' first k patches, built (or taken from the
    cache); its files end up in `out`."""
    if not 0 <= k <= len(resolved.patches):
        raise ValueError(f"k={k}: the series has {len(resolved.patches)} patch(es)")
    return _PrefixBuild(resolved, k, out, reporter or quiet()).run()


class _PrefixBuild:
    def __init__(self, resolved: ResolvedBuild, k: int, out: Path, reporter: Reporter) -> None:
        self.resolved = resolved
        self.k = k
        self.out = out
        self.reporter = reporter
        self.timings = _Timings()
        self.optional_misses: tuple[str, ...] = ()
        self.optional_absent: tuple[str, ...] = ()
        self.denials: list[str] = []  # what the sandbox refused, in the order seen
        # The tree's and the machine's build locks, passed on to make: held until make's
        # last process ends, even if rig is killed first.
        self.held_locks: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        if self.k == 0:
            return "the base tree"
        if self.k == len(self.resolved.patches) and not self.resolved.request.each_patch:
            return f"base + {self.k} patch(es)"
        return self.resolved.patches[self.k - 1].title()

    def run(self) -> BuildArtifacts:
        resolved, reporter = self.resolved, self.reporter
        self.out.mkdir(parents=True, exist_ok=True)
        quick_key = resolved.quick_key(self.k)
        entry = BUILDS.resolve(quick_key)
        if entry is not None:
            return self._finish(entry, quick_key, cache_hit=True)
        # Two locks, always taken in this order: this tree's (its worktree and build
        # directory), then the machine's one build at a time. The series is applied under
        # the first only, so a series that does not apply says so at once instead of
        # waiting behind another tree's build (a matrix's not-applicable cells).
        with self._tree_lock() as tree_lock:
            entry = BUILDS.resolve(quick_key)  # another rig may have built it while we waited
            made = False
            if entry is None:
                tree = self._prepare_tree()
                lock = build_lock_path()
                if cache.is_locked(lock):
                    reporter.step(f"waiting for the build lock {lock}")
                with cache.locked(lock, timeout_s=MAKE_TIMEOUT_S, what="a kernel build") as build_lock:
                    self.held_locks = (tree_lock, build_lock)
                    entry, made = self._build_locked(quick_key, tree)
        return self._finish(entry, quick_key, cache_hit=not made)

    @contextmanager
    def _tree_lock(self) -> Iterator[int]:
        """The lock of this tree's worktree and build directories (in the cache: a rig
        pointed at another RIG_BUILD_LOCK shares them); its file descriptor."""
        tree_lock = cache.cache_dir("locks") / f"tree-{self.resolved.source.tree_key}.lock"
        with cache.locked(tree_lock, timeout_s=MAKE_TIMEOUT_S,
                          what=f"building {self.resolved.source.tree_key}") as descriptor:
            yield descriptor

    # --- building under the lock --------------------------------------------------------

    def _build_locked(self, quick_key: str, tree: Path) -> tuple[Path, bool]:
        """The entry of this build from the prepared `tree`, and whether make made it
        (else it was in the cache)."""
        build_dir = self.resolved.build_dir
        build_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = self.out / "build.log"
        log.write_text("")
        with self.timings.stage("config"):
            self._configure(tree, build_dir, log)
        # Different inputs can give the same .config (say, a fragment that only repeats
        # the profile, or rig's own earlier key of the same build): then the finished
        # build is already in the cache.
        full_key = self.resolved.full_key(self.k, cache.file_digest(build_dir / ".config"))
        if (entry := BUILDS.lookup(full_key)) is not None:
            BUILDS.alias(quick_key, full_key)
            return entry, False
        with self.timings.stage("make"):
            self._make(tree, build_dir, log)
        head = source.git(["rev-parse", "HEAD"], tree).stdout.strip()
        return self._store(build_dir, log, full_key, quick_key, head), True

    def _prepare_tree(self) -> Path:
        """rig's worktree at the base with the first k patches applied.

        When the worktree already holds a shorter prefix of the same series (the step
        before, in --each-patch or bisection), only the missing patches are applied:
        going back to the base would rewrite, and so recompile, every file the earlier
        patches touch.
        """
        resolved = self.resolved
        tree = resolved.worktree
        state_file = tree.with_name(f"{tree.name}.rig-applied.json")
        wanted = [p.digest for p in resolved.patches[:self.k]]
        state = _read_json(state_file)
        applied = state.get("patches")
        start = 0
        with self.timings.stage("worktree"):
            if (isinstance(applied, list) and len(applied) <= self.k and applied == wanted[:len(applied)]
                    and state.get("base") == resolved.source.base_commit and (tree / ".git").exists()
                    and source.git(["rev-parse", "HEAD"], tree, check=False).stdout.strip() == state.get("head")
                    and _clean(tree)):
                start = len(applied)
            else:
                self.reporter.step("preparing rig's worktree at the base commit")
                tree = source.worktree(resolved.source)
        state_file.unlink(missing_ok=True)  # unknown while patches are being applied
        with self.timings.stage("apply"):
            fence = self._sandbox_for_git(tree) if start < self.k else None
            for patch in resolved.patches[start:self.k]:
                series_mod.apply(patch, tree, sandbox=fence)
        head = source.git(["rev-parse", "HEAD"], tree).stdout.strip()
        state_file.write_text(json.dumps({"base": resolved.source.base_commit, "patches": wanted, "head": head}))
        return tree

    def _configure(self, tree: Path, build_dir: Path, log: Path) -> None:
        resolved = self.resolved
        rendered = kconfig.render(dict(resolved.settings))
        dot_config = build_dir / ".config"
        state_file = build_dir / "rig-config-state.json"
        # allnoconfig and the check give the same answer for the same fragment, Kconfig
        # files and compiler: skip both then (seconds on every incremental build).
        state = {"fragment": cache.digest([rendered]), "kconfig": kconfig_files_id(tree), "compiler": resolved.compiler}
        previous = _read_json(state_file)
        if (dot_config.exists() and all(previous.get(k) == v for k, v in state.items())
                and previous.get("config_hash") == cache.file_digest(dot_config)):
            self.optional_misses = tuple(previous.get("warn", ()))
            self.optional_absent = tuple(previous.get("absent", ()))
            return
        merged = build_dir / "rig-fragment.config"
        merged.write_text(rendered)
        try:
            proc.run(self._maybe_sandboxed(make_argv(tree, build_dir, resolved.make_variables,
                                                     f"KCONFIG_ALLCONFIG={merged}", "allnoconfig"), tree, build_dir),
                     env=make_env(), timeout=CONFIG_TIMEOUT_S, log=log, what="make allnoconfig", error=KernelError,
                     hint="the kernel's configuration step failed; see the log", dies_with_rig=True,
                     pass_fds=self.held_locks)
        except KernelError as exc:
            self._read_denials(log)
            if (full := disk_full_in(log.read_text(errors="replace")) or _out_of_space(build_dir)) is not None:
                raise InfraError(f"the disk filled up while configuring the kernel: {full}", log=log,
                                 hint=DISK_FULL_HINT) from None
            raise KernelError(exc.message, log=exc.log, hint=f"{exc.hint}{self._denied_note()}") from None
        self._read_denials(log)
        misses = kconfig.check(dict(resolved.settings), dot_config, tree,
                               f"the {resolved.request.profile} profile for {resolved.target.name}",
                               arch=resolved.target.kconfig_arch)
        # An optional symbol this version lacks is what `# rig: optional` is for: noted
        # in metadata.json only. One the version has but Kconfig refused is worth a
        # warning, said when the configuration is made (the summary lists them again).
        self.optional_misses = tuple(m.describe() for m in misses if not m.absent)
        self.optional_absent = tuple(m.describe() for m in misses if m.absent)
        for line in self.optional_misses:
            self.reporter.warn(f"optional option did not stick: {line}")
        state_file.write_text(json.dumps({**state, "config_hash": cache.file_digest(dot_config),
                                          "warn": list(self.optional_misses), "absent": list(self.optional_absent)}))

    def _make(self, tree: Path, build_dir: Path, log: Path) -> None:
        resolved = self.resolved
        estimate_file = build_dir / "rig-units.json"
        cold = not (build_dir / "vmlinux").exists()
        estimate = COLD_UNITS.get(resolved.request.profile, 2000) if cold else _previous_units(estimate_file)
        units = 0
        first_error: list[str] = []

        prefix = f"{tree}/"
        with self.reporter.task(f"building {self.label}", total=estimate) as bar:
            def on_line(line: str) -> None:
                nonlocal units
                if UNIT_LINE.match(line):
                    units += 1
                    bar.advance()
                elif not first_error and (COMPILER_ERROR.match(line) or LINKER_ERROR.match(line)):
                    # Paths relative to the kernel tree, as in the patch, not to rig's worktree.
                    first_error.append(line.strip().replace(prefix, ""))

            result = proc.run(self._maybe_sandboxed(make_argv(tree, build_dir, resolved.make_variables,
                                                              resolved.image_name, "vmlinux"), tree, build_dir),
                              env=make_env(), timeout=MAKE_TIMEOUT_S, log=log, on_line=on_line, check=False,
                              what="make", dies_with_rig=True, pass_fds=self.held_locks)
            if result.ok:
                bar.finish()
        self._read_denials(log)
        estimate_file.write_text(json.dumps({"units": units, "cold": cold}))
        if result.ok:
            return
        if (full := disk_full_in(log.read_text(errors="replace")) or _out_of_space(build_dir)) is not None:
            raise InfraError(f"the disk filled up during the kernel build: {full}", log=log, hint=DISK_FULL_HINT)
        tail = result.stdout.strip().splitlines() or ["(no output)"]
        make_errors = [line.strip() for line in tail if "*** " in line]  # make's "*** [target] Error 1"
        where = first_error[0] if first_error else (make_errors or tail)[0 if make_errors else -1]
        # The patch is to blame when the tree without it is known to build (in the cache).
        blamed = self.k > 0 and BUILDS.resolve(resolved.quick_key(self.k - 1)) is not None
        culprit = (f"{resolved.patches[self.k - 1].title()} breaks the build" if blamed
                   else f"the kernel does not build ({self.label})")
        raise KernelError(f"{culprit}:\n    {where}", log=log,
                          hint="fix the error above (the full make output is in the log)" + self._denied_note())

    # --- the sandbox (rig.sandbox) ------------------------------------------------------

    def _sandbox_for_git(self, tree: Path) -> Sandbox | None:
        """`git am` writes the worktree and the repository's objects, nothing else."""
        if not self.resolved.sandboxed:
            return None
        return Sandbox(writable=(tree, _git_dir(tree)), hidden=self._hidden())

    def _maybe_sandboxed(self, argv: list[str], tree: Path, build_dir: Path) -> list[str]:
        """make in the sandbox when the build is sandboxed: the tree and its git directory
        (Kbuild's setlocalversion reads it) read-only, only the build directory and
        ccache writable."""
        if not self.resolved.sandboxed:
            return argv
        fence = Sandbox(writable=(build_dir, cache.cache_dir("ccache")), hidden=self._hidden(),
                        readable=(tree, _git_dir(tree)))
        return fence.wrap(argv, cwd=build_dir, env=make_env())

    def _hidden(self) -> tuple[Path, ...]:
        return sandbox.hidden_dirs(cache.cache_dir(), self.out)

    def _read_denials(self, log: Path) -> None:
        if not self.resolved.sandboxed or not log.exists():
            return
        for denial in sandbox.denials(log.read_text(errors="replace"), self._hidden()):
            text = denial.describe()
            if text not in self.denials:
                self.denials.append(text)
                self.reporter.warn(f"the sandbox blocked it: the series' build {text}")

    def _denied_note(self) -> str:
        if not self.denials:
            return ""
        return ("; the sandbox blocked what the build tried:\n    " + "\n    ".join(self.denials)
                + "\n(a series must build without the network and write only to its build directory)")

    def _store(self, build_dir: Path, log: Path, full_key: str, quick_key: str, head: str) -> Path:
        staging = BUILDS.staging(full_key)
        sizes = {}
        for name, relative in self.resolved.artifact_files().items():
            shutil.copy2(build_dir / relative, staging / name)
            sizes[name] = (staging / name).stat().st_size
        shutil.copy2(log, staging / "build.log")
        sizes["build.log"] = (staging / "build.log").stat().st_size
        release = (build_dir / "include" / "config" / "kernel.release").read_text().strip()
        (staging / "entry.json").write_text(json.dumps({
            "sizes": sizes, "kernel_release": release, "head_commit": head,
            "config_hash": cache.file_digest(build_dir / ".config"),
            "source": self.resolved.source.source_id, "target": self.resolved.target.name,
            "optional_misses": list(self.optional_misses), "optional_absent": list(self.optional_absent),
            "sandbox_denials": self.denials,
            "make_units": json.loads((build_dir / "rig-units.json").read_text()).get("units"),
            "timings": dict(self.timings.stages),
        }, indent=2))
        entry = BUILDS.publish(staging, full_key)
        BUILDS.alias(quick_key, full_key)
        return entry

    # --- output -------------------------------------------------------------------------

    def _finish(self, entry: Path, quick_key: str, *, cache_hit: bool) -> BuildArtifacts:
        resolved = self.resolved
        if cache_hit:
            self.reporter.step(f"cache hit: {self.label} is the build in {entry}")
        elif self.resolved.request.each_patch and self.k < len(self.resolved.patches):
            self.reporter.step(f"{self.label} builds")
        files = resolved.artifact_files()
        placed = _link_into(entry, self.out, [*files, "build.log"], {resolved.image_name, "vmlinux"})
        facts = json.loads((entry / "entry.json").read_text())
        artifacts = BuildArtifacts(
            kernel_image=placed[resolved.image_name], vmlinux=placed["vmlinux"], system_map=placed["System.map"],
            config=placed[".config"], build_log=placed["build.log"], kernel_release=facts["kernel_release"],
            cache_hit=cache_hit, patches=resolved.patches[:self.k], source=resolved.source.source_id,
            base_commit=resolved.source.base_commit, head_commit=facts["head_commit"],
            profile=resolved.request.profile, out_dir=self.out.resolve(), cache_key=entry.name, cache_entry=entry,
            config_warnings=tuple(facts.get("optional_misses", ())),
            sandbox_denials=tuple(facts.get("sandbox_denials", ())), metadata=self.out / "metadata.json",
            duration_s=round(self.timings.total() + resolved.resolve_s, 2), target=resolved.target,
            source_repo=resolved.source.repo,
        )
        write_metadata(self.out, {"build": self._metadata(artifacts, quick_key, facts)})
        return artifacts

    def _metadata(self, artifacts: BuildArtifacts, quick_key: str, facts: dict[str, Any]) -> dict[str, Any]:
        resolved = self.resolved
        request, src, series = resolved.request, resolved.source, resolved.series
        build_dir, tree = resolved.build_dir, resolved.worktree
        variables = resolved.make_variables
        return {
            "request": {"kernel": request.kernel, "series": request.series, "base": request.base,
                        "profile": request.profile, "extra_configs": [str(p) for p in request.extra_configs],
                        "each_patch": request.each_patch, "arch": request.target.name},
            "target": {"name": resolved.target.name, "kernel_image": resolved.target.kernel_image,
                       "make_variables": list(resolved.target.make_variables())},
            "source": {"id": src.source_id, "kind": src.kind, "repo": str(src.repo), "version": src.version,
                       "package": src.package, "package_version": src.package_version,
                       "base_commit": src.base_commit, "head_commit": artifacts.head_commit},
            "series": None if series is None else {
                "spec": series.spec, "kind": series.kind, "digest": series.digest, "skipped": list(series.skipped),
                "patches": [{"number": p.number, "subject": p.subject, "author": p.author, "digest": p.digest}
                            for p in series.patches]},
            "patches_built": self.k,
            "fragments": {str(f): cache.file_digest(f)[:16] for f in resolved.fragments},
            "config_hash": facts.get("config_hash"),
            "optional_options_missing": list(artifacts.config_warnings),
            "sandbox": {"used": resolved.sandboxed, "denied": list(artifacts.sandbox_denials)},
            "optional_options_not_in_this_version": facts.get("optional_absent", []),
            "compiler": resolved.compiler,
            "kernel_release": artifacts.kernel_release,
            "cache": {"hit": artifacts.cache_hit, "quick_key": quick_key, "entry": str(artifacts.cache_entry)},
            "reproduce": {
                "rig": shlex.join(resolved.reproduce_argv()),
                "make": [
                    shlex.join(make_argv(tree, build_dir, variables,
                                         f"KCONFIG_ALLCONFIG={build_dir}/rig-fragment.config", "allnoconfig")),
                    shlex.join(make_argv(tree, build_dir, variables, resolved.image_name, "vmlinux")),
                ],
                "env": make_env(),
            },
            "timings_s": {**resolved.resolve_timings, **self.timings.stages,
                          "total": artifacts.duration_s, "built_in": facts.get("timings", {})},
            "make_units": facts.get("make_units"),
        }


# Less free space than this where the build writes, after a failed build: the disk is the
# likely cause (a kernel build needs well over a GiB), even when no program said so (ccache
# fails quietly when it cannot write its temporary files).
LOW_SPACE_BYTES = 256 << 20


def _out_of_space(build_dir: Path) -> str | None:
    for path in (build_dir, cache.cache_dir("ccache")):
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            continue
        if free < LOW_SPACE_BYTES:
            return f"{free >> 20} MiB left on the disk holding {path}"
    return None


def _git_dir(tree: Path) -> Path:
    """The repository directory a worktree's commits and objects live in."""
    common = source.git(["rev-parse", "--git-common-dir"], tree).stdout.strip()
    return (tree / common).resolve()


def kconfig_files_id(tree: Path) -> str:
    """Identity of the tree's Kconfig files and kconfig tool, from git's index (fast)."""
    listing = proc.run(["git", "ls-files", "-s", "--", ":(glob)**/Kconfig*", ":(glob)scripts/kconfig/**"],
                       cwd=tree, timeout=120, what="git ls-files").stdout
    return cache.digest([listing])


def _clean(tree: Path) -> bool:
    """Whether the worktree's tracked files are as its HEAD has them (nobody edited them
    by hand since rig applied its patches)."""
    status = source.git(["status", "--porcelain", "--untracked-files=no"], tree, check=False)
    return status.ok and not status.stdout.strip()


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

