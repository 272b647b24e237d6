"""The matrix file (TOML): axes, settings shared by every cell, include and exclude.

    [axes]
    kernel = ["debian:6.1", "debian:6.12"]
    gpu = ["virtio-gpu", "bochs"]
    series = ["patches/v2/"]
    [settings]
    plan = "smoke"
    [[exclude]]
    kernel = "debian:6.12"
    gpu = "bochs"

Every problem of a file is listed at once (as for plans), before anything is built.
Relative paths (series, plan files, kernel checkouts) are relative to the matrix file,
so a matrix file travels with its patches.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rig import series
from rig.errors import UserError
from rig.guest_spec import ACCELERATORS, CPUS, MAX_WAIT_S, MEMORY_MIB
from rig.paths import user_path
from rig.pipeline import DEFAULT_DEADLINE_S
from rig.source import DEBIAN_KERNELS, KERNEL_FORMS
from rig.target import DEFAULT_TARGET, TARGETS

# The axes a cell varies over, in the order cell names and tables show them.
AXES = ("kernel", "arch", "gpu", "series", "profile", "plan", "pressure")
# What a cell takes for an axis neither [axes] nor [settings] gives (rig run's defaults).
AXIS_DEFAULTS: Mapping[str, str] = MappingProxyType({
    "kernel": "debian:6.1", "arch": DEFAULT_TARGET.name, "gpu": DEFAULT_TARGET.gpu_default,
    "series": "", "profile": "default", "plan": "default", "pressure": "balloon"})

TOP_LEVEL = ("axes", "settings", "include", "exclude")


@dataclass(frozen=True)
class Settings:
    """What every cell shares beyond its axes (rig run's options of the same names)."""

    deadline_s: float = DEFAULT_DEADLINE_S
    retries: int = 1
    memory_mib: int = 2048
    cpus: int = 2
    accel: str | None = None  # None: probe KVM, fall back to TCG
    image: str | None = None  # None: the architecture's default recipe
    # Run each cell's plan on its kernel without the series first (rig run --compare-base);
    # one base run serves every cell that differs only in its series.
    compare_base: bool = True


# [settings] key -> (Settings field, type, check returning a problem or None)
def _range(low: float, high: float):  # type: ignore[no-untyped-def]
    return lambda v: None if low <= v <= high else f"give {low:g} to {high:g}"


_SETTINGS: dict[str, tuple[str, type | tuple[type, ...], Any]] = {
    "deadline": ("deadline_s", (int, float),
                 lambda v: None if 300 <= v <= MAX_WAIT_S else f"give at least 300 seconds, at most {MAX_WAIT_S:g}"),
    "retries": ("retries", int, _range(0, 5)),
    "memory": ("memory_mib", int, _range(*MEMORY_MIB)),
    "cpus": ("cpus", int, _range(*CPUS)),
    "accel": ("accel", str, lambda v: None if v in ("auto", *ACCELERATORS) else
              f"give auto, {' or '.join(ACCELERATORS)}"),
    "image": ("image", str, lambda v: None if v and "\0" not in v else "give a recipe name from images/"),
    "compare_base": ("compare_base", bool, lambda v: None),
}
# Keys of portable matrix files that this rig reads but cannot honour yet: named, not ignored.
_NOT_YET = {
    "repeat": (1, "rig runs each cell once for now; give repeat = 1"),
    "known": (None, "known-issue lists are not supported by this rig yet; remove the key"),
}


@dataclass(frozen=True)
class MatrixSpec:
    source: Path  # the matrix file
    axes: Mapping[str, tuple[str, ...]]  # only the axes [axes] gives, in file order
    defaults: Mapping[str, str]  # every axis's value where [axes] does not vary it
    settings: Settings
    include: tuple[Mapping[str, str], ...] = ()
    exclude: tuple[Mapping[str, str], ...] = ()
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def resolve(self, axis: str, value: str) -> str:
        """A value as a cell runs it: paths relative to the matrix file made absolute."""
        if axis == "series" and value and _looks_like_path(value):
            return str((self.base_dir / value).resolve())
        if axis == "plan" and value.endswith(".toml"):
            return str((self.base_dir / value).resolve())
        if axis == "kernel" and not value.startswith("debian:"):
            return str((self.base_dir / user_path(value)).resolve())
        return value


def _looks_like_path(value: str) -> bool:
    # a git range (A..B) or a lore message-id (<x@y> or x@y) is not a path
    return ".." not in value.replace("../", "") and "@" not in value


def load(path: Path) -> MatrixSpec:
    """Read and check a matrix file: one UserError lists every problem."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read matrix file {path}: {exc}", hint="pass a readable UTF-8 .toml file") from exc
    return parse(text, path)


def parse(text: str, source: Path) -> MatrixSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"matrix file {source} is not valid TOML: {exc}", hint="fix the TOML syntax") from exc
    except RecursionError as exc:  # tomllib reads nested arrays and inline tables recursively
        raise UserError(f"matrix file {source} nests arrays or tables too deeply to read",
                        hint="a matrix file nests a few levels at most; fix the brackets") from exc
    problems: list[str] = []
    spec = _build(data, source.resolve(), problems)
    # exclude entries that match no cell are mistakes too; they need the expansion
    from rig.matrix.cells import expansion_problems

    problems += expansion_problems(spec)
    if problems:
        raise UserError(
            f"matrix file {source} has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n    "
            + "\n    ".join(problems),
            hint="fix each listed entry; the matrix format is described in `rig matrix run --help`")
    return spec


def _build(data: dict[str, Any], source: Path, problems: list[str]) -> MatrixSpec:
    for key in data:
        if key not in TOP_LEVEL:
            problems.append(f"unknown table [{key}] (a matrix file has {', '.join(f'[{k}]' for k in TOP_LEVEL)})")
    axes = _axes(data.get("axes", {}), problems)
    defaults, settings = _settings(data.get("settings", {}), problems)
    base_dir = source.parent
    include = _entries(data, "include", problems)
    exclude = _entries(data, "exclude", problems)
    for index, entry in enumerate(exclude, 1):
        for key in entry:
            if key in AXES and key not in axes:
                problems.append(f"[[exclude]] {index}: {key} is not an axis of [axes] (only axes can be excluded)")
    # Every value any cell may take, checked once with the place it came from.
    values: dict[tuple[str, str], str] = {}
    for axis, listed in axes.items():
        for value in listed:
            values.setdefault((axis, value), f"axes.{axis}")
    for axis, value in defaults.items():
        values.setdefault((axis, value), f"settings.{axis}")
    for index, entry in enumerate(include, 1):
        for axis, value in entry.items():
            values.setdefault((axis, value), f"[[include]] {index}: {axis}")
    arches = set(axes.get("arch", ())) | {defaults["arch"]} | {e["arch"] for e in include if "arch" in e}
    for (axis, value), where in values.items():
        problem = _value_problem(axis, value, base_dir, arches, settings.memory_mib)
        if problem:
            problems.append(f"{where} = {value!r}: {problem}")
    return MatrixSpec(source=source, axes=MappingProxyType(axes), defaults=MappingProxyType(defaults),
                      settings=settings, include=tuple(include), exclude=tuple(exclude),
                      problems=tuple(problems))


def _axes(table: Any, problems: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        problems.append("[axes] must be a table of axis = [values]")
        return {}
    axes: dict[str, tuple[str, ...]] = {}
    for name, listed in table.items():
        if name not in AXES:
            problems.append(f"axes.{name}: unknown axis (give {', '.join(AXES)})")
            continue
        if isinstance(listed, str):
            listed = [listed]
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            problems.append(f"axes.{name}: give a list of strings")
            continue
        if not listed:
            problems.append(f"axes.{name}: empty axis (give at least one value, or remove it)")
            continue
        if len(set(listed)) != len(listed):
            problems.append(f"axes.{name}: a value is listed twice")
        axes[name] = tuple(dict.fromkeys(listed))
    return axes


def _settings(table: Any, problems: list[str]) -> tuple[dict[str, str], Settings]:
    defaults = dict(AXIS_DEFAULTS)
    if not isinstance(table, dict):
        problems.append("[settings] must be a table")
        return defaults, Settings()
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in AXES:
            if isinstance(value, str):
                defaults[key] = value
            else:
                problems.append(f"settings.{key}: give one string (several values go in [axes])")
        elif key in _SETTINGS:
            name, kind, check = _SETTINGS[key]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                problems.append(f"settings.{key} = {value!r}: wrong type")
            elif (problem := check(value)) is not None:
                problems.append(f"settings.{key} = {value!r}: {problem}")
            else:
                values[name] = (None if value == "auto" else value) if key == "accel" else value
        elif key in _NOT_YET:
            accepted, problem = _NOT_YET[key]
            if value != accepted:
                problems.append(f"settings.{key} = {value!r}: {problem}")
        else:
            known = [*AXES, *_SETTINGS, *_NOT_YET]
            problems.append(f"settings.{key}: unknown setting (give one of {', '.join(known)})")
    if isinstance(values.get("deadline_s"), int):
        values["deadline_s"] = float(values["deadline_s"])
    return defaults, Settings(**values)


def _entries(data: dict[str, Any], key: str, problems: list[str]) -> list[dict[str, str]]:
    listed = data.get(key, [])
    if not isinstance(listed, list):
        problems.append(f"{key}: write each entry as [[{key}]]")
        return []
    entries: list[dict[str, str]] = []
    for index, entry in enumerate(listed, 1):
        if not isinstance(entry, dict) or not entry:
            problems.append(f"[[{key}]] {index}: give axis = value pairs")
            continue
        good: dict[str, str] = {}
        for name, value in entry.items():
            if name not in AXES:
                problems.append(f"[[{key}]] {index}: {name} is not an axis (give {', '.join(AXES)})")
            elif not isinstance(value, str):
                problems.append(f"[[{key}]] {index}: {name} must be one string")
            else:
                good[name] = value
        if good:
            entries.append(good)
    return entries


def _value_problem(axis: str, value: str, base_dir: Path, arches: set[str], memory_mib: int) -> str | None:
    """What is wrong with one axis value, found without building or booting anything."""
    if "\0" in value:  # no path, range or name holds one (and the OS refuses it in a path)
        return "holds a NUL character"
    if axis == "kernel":
        if value.startswith("debian:"):
            release = value.removeprefix("debian:")
            return None if release in DEBIAN_KERNELS else f"unknown kernel spec (give {KERNEL_FORMS})"
        path = base_dir / user_path(value)
        return None if (path / ".git").exists() else f"unknown kernel spec: not {KERNEL_FORMS}"
    if axis == "arch":
        return None if value in TARGETS else f"no such guest architecture (give {', '.join(TARGETS)})"
    if axis == "gpu":
        on = [a for a in sorted(arches) if a in TARGETS and value in TARGETS[a].gpus]
        if not on:
            known = sorted({g for a in arches if a in TARGETS for g in TARGETS[a].gpus})
            return f"not a GPU model of {', '.join(sorted(arches))} (give one of {', '.join(known)})"
        return None
    if axis == "series":
        if value and _looks_like_path(value):
            if not (base_dir / value).exists():
                return "no such file or directory (relative paths are relative to the matrix file)"
            try:  # read now: an empty, truncated or mangled series fails here, not in every cell
                series.check(str(base_dir / value), kernel="debian:6.1")
            except UserError as exc:
                return " ".join(exc.message.split())
        elif value and series.classify(value) == "msgid":
            problem = series.msgid_problem(value)
            return f"not a message-id: {problem}" if problem else None
        return None
    if axis == "profile":
        from rig.kconfig import load_profiles

        profiles = load_profiles()
        return None if value in profiles else f"unknown profile (give {', '.join(profiles)})"
    if axis == "plan":
        from rig.plan import load_plan

        spec = str((base_dir / value).resolve()) if value.endswith(".toml") else value
        try:
            load_plan(spec)
        except UserError as exc:
            return " ".join(exc.message.split())
        return None
    if axis == "pressure":
        from rig.workloads.pressure import parse_pressure

        try:
            parse_pressure(value, memory_mib)  # sizes are checked against the cells' guest memory
        except UserError as exc:
            return exc.message.split(": ", 1)[-1]
        return None
    return None
