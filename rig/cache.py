"""rig's cache: content-addressed directories under the XDG cache dir, published
atomically and guarded by file locks so two rigs never build the same thing at once."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rig.errors import InfraError


def cache_root() -> Path:
    """$RIG_CACHE_DIR, else $XDG_CACHE_HOME/rig, else ~/.cache/rig; created private."""
    explicit = os.environ.get("RIG_CACHE_DIR")
    if explicit:
        root = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "rig"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InfraError(f"cannot create rig's cache directory {root}: {exc.strerror}",
                         hint="set RIG_CACHE_DIR to a writable directory") from exc
    return root


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def digest(items: Iterable[str | bytes]) -> str:
    """A short, stable hash of an ordered sequence of strings or bytes."""
    h = hashlib.sha256()
    for item in items:
        data = item.encode() if isinstance(item, str) else item
        h.update(len(data).to_bytes(8, "little"))  # length prefix: ("ab","c") != ("a","bc")
        h.update(data)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _lock_file(path: Path) -> IO[str]:
    """The lock file `path` opened, its directory made: a place rig cannot write it (a
    RIG_BUILD_LOCK on a read-only or missing mount) is the host's problem, said with the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a")
    except OSError as exc:
        raise InfraError(f"cannot open the lock file {path}: {exc.strerror or exc}",
                         hint="point RIG_BUILD_LOCK (or RIG_CACHE_DIR) at a directory rig can write") from exc


@contextlib.contextmanager
def locked(path: Path, *, timeout_s: float = 3600.0, what: str = "") -> Iterator[int]:
    """Hold an exclusive lock on `path` (a lock file beside the thing it guards); yields
    the lock's file descriptor. A program started with it (proc.run's pass_fds) holds the
    lock with rig, and after rig until the program's last process ends: a SIGKILLed
    rig's make cannot go on writing while the next rig takes the lock."""
    with _lock_file(path) as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InfraError(
                        f"another rig has held {path} for over {timeout_s:.0f} s{' (' + what + ')' if what else ''}",
                        hint="wait for the other rig to finish, or remove the lock file if no rig is running",
                    ) from None
                time.sleep(0.5)
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock `locked(path)` takes (to say why rig waits)."""
    with _lock_file(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def publish(staging: Path, final: Path) -> Path:
    """Move a fully written staging directory or file into place in one rename."""
    if final.exists():
        if final.is_dir():
            shutil.rmtree(final)
        else:
            final.unlink()
    os.replace(staging, final)
    return final


# --- stores: one API for every kind of finished, cached result -------------------------


@dataclass(frozen=True)
class Store:
    """One kind of cached result (kernel builds, guest images): each entry a directory
    `<cache>/<kind>/<key>/`, written elsewhere and published whole with one rename, so a
    reader sees a complete entry or none. Aliases in `<kind>/index/` point cheap keys
    (computed before any work) at an entry (whose key may only be known after it).
    """

    kind: str  # the directory under the cache root: "builds", "images"
    # Whether an entry directory is whole (a marker file, or sizes recorded in it).
    is_complete: Callable[[Path], bool]

    def root(self) -> Path:
        return cache_dir(self.kind)

    def entry(self, key: str) -> Path:
        return self.root() / key

    def lookup(self, key: str) -> Path | None:
        """The complete entry of `key`, or None."""
        entry = self.entry(key)
        return entry if entry.is_dir() and self.is_complete(entry) else None

    def entries(self) -> list[Path]:
        """Every complete entry, sorted (staging directories and the index left out)."""
        return [d for d in sorted(self.root().iterdir())
                if not d.name.startswith(".") and d.name != "index" and d.is_dir() and self.is_complete(d)]

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout_s: float = 3600.0, what: str = "") -> Iterator[None]:
        """The lock of one entry (beside it): one rig makes it, the others wait and reuse it."""
        with locked(self.root() / f"{key}.lock", timeout_s=timeout_s, what=what):
            yield

    def staging(self, key: str) -> Path:
        """A fresh, private directory to write the entry of `key` in before publishing it."""
        staging = self.root() / f".{key}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        return staging

    def publish(self, staging: Path, key: str) -> Path:
        return publish(staging, self.entry(key))

    def remove(self, key: str) -> None:
        """Delete an entry (a process still reading its files keeps them until it closes them)."""
        with self.lock(key, timeout_s=60, what=f"removing {self.kind} entry {key}"):
            shutil.rmtree(self.entry(key), ignore_errors=True)
        (self.root() / f"{key}.lock").unlink(missing_ok=True)

    def alias(self, alias: str, key: str) -> None:
        """Point `alias` at the entry of `key` (atomically: a reader sees the old or the new)."""
        index = self.root() / "index" / f"{alias}.json"
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"entry": key}))
        os.replace(tmp, index)

    def resolve(self, alias: str) -> Path | None:
        """The complete entry `alias` points at, or None."""
        try:
            key = json.loads((self.root() / "index" / f"{alias}.json").read_text())["entry"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self.lookup(str(key))
