"""Paths as users write them on the command line and in matrix files."""

from __future__ import annotations

from pathlib import Path


def user_path(text: str) -> Path:
    """`text` with a leading ~ or ~user expanded, as a shell would; left as written when
    there is no such user or home (Path.expanduser raises then), so the path is simply
    one that does not exist, and the caller's own check names it."""
    path = Path(text)
    try:
        return path.expanduser()
    except RuntimeError:
        return path
