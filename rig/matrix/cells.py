"""A matrix file expanded into its cells, with include and exclude as in GitHub's matrices.

The cross product of [axes] comes first; an [[exclude]] entry removes every cell whose
axes match all of its pairs; then each [[include]] entry either adds its other pairs to
the cells whose [axes] values it matches, or, when it matches none, becomes a cell of its
own (axes it does not name take [settings] or rig run's defaults).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath

from rig.matrix.spec import AXES, MatrixSpec
from rig.target import TARGETS


@dataclass(frozen=True)
class Cell:
    """One run of the matrix: a value for every axis, as the matrix file writes it."""

    id: str  # stable across runs of the same file: names its directory, its CI job
    kernel: str
    arch: str
    gpu: str
    series: str  # "" for none
    profile: str
    plan: str
    pressure: str

    @property
    def axes(self) -> dict[str, str]:
        return {axis: getattr(self, axis) for axis in AXES}

    def label(self, varying: Iterable[str] = AXES) -> str:
        """The cell's name in tables: its values on the axes that vary, "/"-joined."""
        return "/".join(_short(axis, getattr(self, axis)) for axis in varying) or self.id

    @property
    def build_key(self) -> tuple[str, str, str, str]:
        """Cells with the same key boot the same kernel: it is built once."""
        return (self.kernel, self.arch, self.profile, self.series)

    @property
    def base_key(self) -> tuple[str, ...]:
        """Cells with the same key share one base run (their plan on the kernel without the series)."""
        return (self.kernel, self.arch, self.gpu, self.profile, self.plan, self.pressure)


def _short(axis: str, value: str) -> str:
    if axis == "kernel":
        return value.removeprefix("debian:") if value.startswith("debian:") else PurePath(value).name
    if axis in ("series", "plan") and value:
        return PurePath(value.rstrip("/")).name.removesuffix(".toml") or value
    return value or "none"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "none"


def _matches(values: Mapping[str, str], entry: Mapping[str, str]) -> bool:
    return all(values.get(axis) == value for axis, value in entry.items())


def _combinations(spec: MatrixSpec) -> tuple[list[dict[str, str]], list[int]]:
    """The cells' axis values, and for each exclude entry how many cells it removed."""
    names = list(spec.axes)
    product = [dict(spec.defaults, **dict(zip(names, values, strict=True)))
               for values in itertools.product(*(spec.axes[n] for n in names))]
    removed = [0] * len(spec.exclude)
    kept = []
    for values in product:
        hits = [i for i, entry in enumerate(spec.exclude) if _matches(values, entry)]
        for i in hits:
            removed[i] += 1
        if not hits:
            kept.append(values)
    for entry in spec.include:
        on_axes = {k: v for k, v in entry.items() if k in spec.axes}
        extra = {k: v for k, v in entry.items() if k not in spec.axes}
        targets = [values for values in kept if _matches(values, on_axes)] if on_axes else []
        if targets and extra:
            for values in targets:
                values.update(extra)
        elif not targets:
            kept.append(dict(spec.defaults, **entry))
    unique = list({tuple(v[a] for a in AXES): v for v in kept}.values())
    return unique, removed


def expansion_problems(spec: MatrixSpec) -> list[str]:
    problems: list[str] = []
    cells, removed = _combinations(spec)
    for index, (entry, count) in enumerate(zip(spec.exclude, removed, strict=True), 1):
        if count == 0:
            pairs = ", ".join(f"{k} = {v!r}" for k, v in entry.items())
            problems.append(f"[[exclude]] {index} ({pairs}) matches no cell")
    if not cells:
        problems.append("the matrix has no cells left (every combination is excluded)")
    for values in cells:
        target = TARGETS.get(values["arch"])
        if target is not None and values["gpu"] in {g for t in TARGETS.values() for g in t.gpus} \
                and values["gpu"] not in target.gpus:
            problems.append(f"the cell {'/'.join(values[a] for a in AXES if values[a])} asks for gpu "
                            f"{values['gpu']} on {values['arch']}, which does not have it (exclude it)")
    return problems


def expand(spec: MatrixSpec) -> tuple[Cell, ...]:
    """Every cell of a checked matrix, in file order, each with its stable id."""
    combos, _ = _combinations(spec)
    varying = varying_axes(combos)
    ids: list[str] = []
    for values in combos:
        ids.append("_".join(_slug(_short(axis, values[axis])) for axis in varying) or "cell")
    # Two values can shorten to one name (a/v2 and b/v2): the full values tell them apart.
    for name in {i for i in ids if ids.count(i) > 1}:
        for index, values in enumerate(combos):
            if ids[index] == name:
                digest = hashlib.sha256("\0".join(values[a] for a in AXES).encode()).hexdigest()[:6]
                ids[index] = f"{name}-{digest}"
    return tuple(Cell(id=cell_id, **{axis: values[axis] for axis in AXES})
                 for cell_id, values in zip(ids, combos, strict=True))


def varying_axes(cells: Iterable[Mapping[str, str] | Cell]) -> tuple[str, ...]:
    """The axes whose value differs between cells: the ones worth showing."""
    rows = [c.axes if isinstance(c, Cell) else c for c in cells]
    return tuple(axis for axis in AXES if len({row[axis] for row in rows}) > 1)
