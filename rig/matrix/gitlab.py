"""A matrix as a GitLab CI pipeline (drm-ci's own engine), for when one machine is not enough.

    build-<kernel>   one job per distinct kernel: `rig matrix run --build`, the kernel image
                     as artifact (vmlinux stays in rig's cache: it is hundreds of MB)
    cell-<id>        one job per cell, `needs` its kernel's build (and its base kernel's):
                     `rig matrix run --cell`, the cell's run directory as artifact, its junit.xml
                     as the job's test report
    matrix-report    merges every cell's directory: `rig matrix report`, the matrix reports
                     as artifacts

Every job calls rig with the same matrix file, so a cell in CI is the cell on a laptop.
rig's cache is the job cache (or the runner's own, for shell runners that keep one).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rig.matrix.cells import Cell
from rig.matrix.runner import base_build_key, base_id, build_id
from rig.matrix.spec import MatrixSpec


@dataclass(frozen=True)
class ExportOptions:
    matrix_file: str  # as the jobs see it: relative to the project directory
    rig: str = "rig"
    out: str = "matrix"
    tags: tuple[str, ...] = ()
    image: str | None = None
    before_script: tuple[str, ...] = ()
    cache: str | None = ".rig-cache"  # None: the runner's own ~/.cache/rig


def _job_name(prefix: str, name: str) -> str:
    return f"{prefix}-{name}"


def pipeline(spec: MatrixSpec, cells: Sequence[Cell], options: ExportOptions) -> dict[str, Any]:
    rig = shlex.split(options.rig)
    run = [*rig, "matrix", "run", options.matrix_file, "--out", options.out, "--quiet"]
    doc: dict[str, Any] = {"stages": ["build", "test", "report"]}
    default: dict[str, Any] = {}
    if options.tags:
        default["tags"] = list(options.tags)
    if options.image:
        default["image"] = options.image
    if options.before_script:
        default["before_script"] = list(options.before_script)
    if options.cache:
        # GitLab caches directories of the project only: rig's cache moves there
        doc["variables"] = {"RIG_CACHE_DIR": f"$CI_PROJECT_DIR/{options.cache}"}
        default["cache"] = {"key": "rig", "paths": [f"{options.cache}/"], "when": "always"}
    if default:
        doc["default"] = default
    builds: dict[tuple[str, str, str, str], str] = {}
    for cell in cells:
        keys = [cell.build_key] + ([base_build_key(cell)] if cell.series and spec.settings.compare_base else [])
        for key in keys:
            builds.setdefault(key, build_id(key))
    for name in builds.values():
        directory = f"{options.out}/builds/{name}"
        doc[_job_name("build", name)] = {
            "stage": "build",
            "script": [shlex.join([*run, "--builds-only", "--build", name])],
            "artifacts": {"when": "always", "paths": [f"{directory}/bzImage", f"{directory}/Image",
                                                      f"{directory}/.config", f"{directory}/build.log",
                                                      f"{directory}/metadata.json",
                                                      f"{directory}/job-outcome.json"]},
        }
    cell_jobs = []
    for cell in cells:
        needs = [_job_name("build", builds[cell.build_key])]
        paths = [f"{options.out}/cells/{cell.id}/"]
        if cell.series and spec.settings.compare_base:
            needs.append(_job_name("build", builds[base_build_key(cell)]))
            paths.append(f"{options.out}/base/{base_id(cell.base_key)}/")
        name = _job_name("cell", cell.id)
        cell_jobs.append(name)
        doc[name] = {
            "stage": "test",
            "needs": [{"job": need, "artifacts": True} for need in dict.fromkeys(needs)],
            "script": [shlex.join([*run, "--cell", cell.id])],
            # vmlinux stays in rig's cache: hundreds of MB, and the merge needs none of it
            "artifacts": {"when": "always", "paths": paths,
                          "exclude": [f"{path}**/vmlinux" for path in paths],
                          "reports": {"junit": f"{options.out}/cells/{cell.id}/junit.xml"}},
        }
    doc["matrix-report"] = {
        "stage": "report",
        "when": "always",
        "needs": [{"job": name, "artifacts": True} for name in cell_jobs],
        "script": [shlex.join([*rig, "matrix", "report", options.out])],
        "artifacts": {"when": "always",
                      "paths": [f"{options.out}/matrix.{ext}" for ext in ("json", "html", "md")]
                      + [f"{options.out}/junit.xml", f"{options.out}/kcidb.json"],
                      "reports": {"junit": f"{options.out}/junit.xml"}},
    }
    return doc


def export(spec: MatrixSpec, cells: Sequence[Cell], options: ExportOptions) -> str:
    header = (f"# GitLab CI pipeline of the rig matrix {options.matrix_file}: a build job per kernel, a job per\n"
              f"# cell, and matrix-report merging them. Written by `rig matrix export`; write it again when\n"
              f"# the matrix file changes.\n")
    return header + to_yaml(pipeline(spec, cells, options))


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars; every string JSON-quoted (valid YAML),
    so no value is read back as a number, a boolean or a comment."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1).rstrip("\n"))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
            if indent == 0:
                lines.append("")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1).rstrip("\n").splitlines()
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))
