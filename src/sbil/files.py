"""Atomic files and folders, locks and provenance, shared by every part of sbil (stdlib only).

Every result, checkpoint and report file is written to a temporary file in its destination
folder and moved into place with ``os.replace``, so a crash never leaves a half-written file
behind, and it gets the permissions a plain ``open`` would give (``tempfile`` makes files
private, which would hide results from the other users of a shared folder).

A folder (a dataset, a run, a report) is written the same way: into a hidden *staging* sibling
(:func:`staging_folder`, :func:`staged_folder`) that is swapped in whole when complete
(:func:`replace_folder`). Staging names carry the writer's host and process id, so a folder
left behind by a killed writer is recognised as stale and removed by the next writer in that
folder (:func:`remove_stale_staging`), never one another live process is still writing. Two
writers of one destination exclude each other with :func:`lock`.

Longer than ~400 lines: every writer in sbil uses these atomic writes, staged folders and
locks, stdlib only, so they are one module that the stale-staging and lock tests cover as one.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's file-mode creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a temporary sibling, then renaming it.

    Args:
        path: the destination; its folder is created if needed.
        write: writes the whole content to the temporary path it is given.

    Returns:
        The destination path. On any error the temporary file is removed and ``path`` is left
        as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return write_atomic(path, write)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, allow_nan: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically.

    NaN and infinity are not JSON and are refused unless ``allow_nan`` (then written as
    JavaScript's ``NaN``/``Infinity``, which Python's json reads back), e.g. for a training
    record whose loss diverged: better a record than lost work.
    """
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=allow_nan) + "\n")


def git_commit() -> str | None:
    """The git commit of the checkout holding this sbil package, ``-dirty`` appended when that
    checkout has uncommitted changes; None for an installed wheel or without git."""
    package = Path(__file__).resolve().parent
    if "site-packages" in package.parts or "dist-packages" in package.parts:
        return None

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=package, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0 or len(head.stdout.strip()) != 40:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = status is not None and status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


#: The packages whose versions :func:`provenance` records by default.
PROVENANCE_PACKAGES: tuple[str, ...] = ("gymnasium", "numpy", "sbil", "torch")


def provenance(packages: Iterable[str] = PROVENANCE_PACKAGES) -> dict[str, Any]:
    """Where a result came from: ``{"git_commit": git_commit(), "versions": {...}}``.

    Versions are the installed distributions' (``importlib.metadata``), so nothing is
    imported: recording torch's version does not load torch.

    Args:
        packages: distribution names; one that is not installed is recorded as None.

    Example:
        >>> provenance(["numpy"])["versions"]  # doctest: +SKIP
        {'numpy': '2.4.6'}
    """
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"git_commit": git_commit(), "versions": dict(sorted(versions.items()))}


def check_writable_file(path: str | os.PathLike[str], *, what: str = "the file") -> Path:
    """Check, before long work, that ``path`` can be written later; return it as a Path.

    Creates the missing parent folders and probes them with a temporary file (removed).

    Args:
        path: the file that will be written (e.g. with :func:`write_json_atomic`).
        what: how to name it in the message, e.g. ``"--output"``.

    Raises:
        NotWritableError: (a ValueError) if ``path`` is a folder or its folder cannot be
            created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise NotWritableError(
            f"Cannot write {what} {path}: it is a folder; give a file path.", "a folder"
        )
    _probe_folder(path.parent, f"{what} {path}")
    return path


def check_writable_folder(folder: str | os.PathLike[str], *, what: str = "the folder") -> Path:
    """Check, before long work, that files can be written in ``folder`` (created if missing).

    Raises:
        NotWritableError: (a ValueError) if it cannot be created or written, saying why.
    """
    folder = Path(folder)
    _probe_folder(folder, f"{what} {folder}")
    return folder


class NotWritableError(ValueError):
    """A destination cannot be written; ``reason`` is the system's word for why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _probe_folder(folder: Path, description: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sbil-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise NotWritableError(
            f"Cannot write {description} ({reason}); pass a writable path.", reason
        ) from None


# --- staged folders ---------------------------------------------------------------------------

_STAGING_RE = re.compile(
    r"^\.sbil-(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<host>[A-Za-z0-9._]+)-[a-z0-9_]{8}$"
)
_LOCK_SUFFIX = ".sbil-lock"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"


def _sibling(target: Path, kind: str) -> Path:
    """A new empty hidden folder next to ``target``: ``.sbil-<kind>-<pid>-<host>-<random>``."""
    return Path(
        tempfile.mkdtemp(prefix=f".sbil-{kind}-{os.getpid()}-{_host()}-", dir=target.parent)
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or an absurd number): never touch it
    return True


def remove_stale_staging(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed sbil writers left in ``folder``; return what was removed or restored.

    Only sbil's own hidden entries are touched, and only those of a process of this host that
    no longer runs: a staging folder (``.sbil-tmp-*``) is deleted; a folder moved aside during
    a swap (``.sbil-old-*``) is moved back if its destination is missing (the writer died
    between moving the old folder out and the new one in), else deleted; a lock file
    (``*.sbil-lock``) that nobody holds is deleted. Everything else is left alone.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        if entry.name.endswith(_LOCK_SUFFIX) and entry.name.startswith("."):
            if _remove_free_lock(entry):
                removed.append(entry)
            continue
        match = _STAGING_RE.match(entry.name)
        if match is None or match["host"] != host or _pid_alive(int(match["pid"])):
            continue
        if not entry.is_dir() or entry.is_symlink():
            continue
        if match["kind"] == "old":
            inside = list(entry.iterdir())
            if len(inside) == 1 and not (folder / inside[0].name).exists():
                with contextlib.suppress(OSError):
                    os.rename(inside[0], folder / inside[0].name)
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def staging_folder(target: str | os.PathLike[str]) -> Path:
    """Create an empty hidden staging folder next to ``target`` (its parent is created).

    Write the new content into it, then swap it in with :func:`replace_folder` (or use
    :func:`staged_folder`, which does both). Stale staging folders of killed writers in the
    same parent are removed first (:func:`remove_stale_staging`). The folder gets the
    permissions the umask gives any new folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target.parent)
    staging = _sibling(target, "tmp")
    os.chmod(staging, 0o777 & ~umask())  # mkdtemp makes it private (0700)
    return staging


def replace_folder(
    new: str | os.PathLike[str], target: str | os.PathLike[str], *, overwrite: bool = True
) -> Path:
    """Rename the folder ``new`` to ``target`` in one step; return ``target``.

    An empty ``target`` folder is replaced. A non-empty one is replaced only with
    ``overwrite``: it is moved aside into a hidden ``.sbil-old-*`` sibling, ``new`` is renamed
    into place, then the old folder is deleted (if the rename fails, the old folder is moved
    back). Without ``overwrite`` the rename itself is exclusive: if another writer created a
    non-empty ``target`` meanwhile, it is kept and :class:`FileExistsError` is raised.

    Raises:
        FileExistsError: ``target`` exists and is not a folder, or is a non-empty folder and
            ``overwrite`` is False.
    """
    new, target = Path(new), Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(errno.EEXIST, "exists and is not a folder", str(target))
    aside = None
    if overwrite and target.is_dir() and any(target.iterdir()):
        aside = _sibling(target, "old")
        os.replace(target, aside / target.name)
    try:
        os.replace(new, target)  # onto a missing or empty folder only: never merges
    except OSError as error:
        if aside is not None and not target.exists():
            os.replace(aside / target.name, target)
            aside.rmdir()
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(errno.EEXIST, "exists and is not empty", str(target)) from None
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a staging folder for ``target``; swap it in when the block ends without error.

    On an error (or Ctrl-C) the staging folder is deleted and ``target`` is left as it was.

    Example:
        >>> with staged_folder("runs/a") as tmp:  # doctest: +SKIP
        ...     write_json_atomic(tmp / "config.json", config)
    """
    staging = staging_folder(target)
    try:
        yield staging
        replace_folder(staging, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- locks ------------------------------------------------------------------------------------


class LockHeldError(RuntimeError):
    """Another process holds the lock on a destination (see :func:`lock`).

    Attributes:
        holder: ``"process <pid> on <host>"`` when known, else ``"another process"``.
    """

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The hidden lock file of ``target``: ``<parent>/.<name>.sbil-lock``."""
    target = Path(target)
    return target.parent / f".{target.name}{_LOCK_SUFFIX}"


@contextlib.contextmanager
def lock(target: str | os.PathLike[str], *, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a path, existing or not) for the ``with`` block.

    The lock is an ``flock`` on a hidden sibling file (:func:`lock_path`) that names its holder
    (``<pid> <host>``), removed on release; the kernel releases it when the holder dies, even
    by SIGKILL, so a lock is never stale. One exception: a process that the holder forked
    keeps the descriptor, and the flock with it, after the holder died. A lock whose named
    holder is a dead process of this host is therefore taken over (its file is replaced by a
    new one), never one whose holder runs. Where ``flock`` is unavailable (Windows, some
    network file systems) the block runs unlocked.

    Args:
        target: the path to lock.
        wait: seconds to wait for a live holder to let go (0: refuse at once).

    Raises:
        LockHeldError: another process (or another ``lock`` in this one) holds it, and did not
            let go within ``wait`` seconds; the message names the holder's process id when
            known.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    fd = None
    while fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            orphaned = _held_by_dead_process(fd)
            if orphaned:
                _unlink_if_same(path, fd)  # the next open makes a new, free lock file
            os.close(fd)
            fd = None
            if orphaned:
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(
                    f"{target} is in use by {holder}; wait for it to finish, or write "
                    "somewhere else.",
                    holder,
                ) from None
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))
            continue
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            fd = -1  # no flock on this file system: run unlocked
            break
        # The previous holder may have removed the file between our open and our flock.
        if not _is_current(path, fd):
            os.close(fd)
            fd = None
    if fd < 0:
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {_host()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: see the inode check above
        os.close(fd)


def _is_current(path: Path, fd: int) -> bool:
    """Whether ``fd`` is the file now at ``path`` (not one removed or replaced since)."""
    try:
        current, opened = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def _held_by_dead_process(fd: int) -> bool:
    """Whether the lock file ``fd`` names a process of this host that no longer runs."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return False
    if len(text) < 2 or not text[0].isdigit() or text[1] != _host():
        return False
    return int(text[0]) != os.getpid() and not _pid_alive(int(text[0]))


def _unlink_if_same(path: Path, fd: int) -> None:
    if _is_current(path, fd):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return "another process"
    if len(text) >= 2 and text[0].isdigit():
        return f"process {text[0]} on {text[1]}"
    return "another process"


def _remove_free_lock(path: Path) -> bool:
    """Delete the lock file ``path`` if no process holds it (taking it first)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDWR)
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        opened, current = os.fstat(fd), os.stat(path)
        if (opened.st_dev, opened.st_ino) != (current.st_dev, current.st_ino):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
