"""Small shared helpers: atomic writes, hashing, JSON, library versions, worker counts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mgr.errors import StorageError, UserError, free_bytes_if_nearly_full, storage_error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False, clean_stale: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name lives in the same directory (same filesystem), so the final
    ``os.replace`` is atomic: a killed process never leaves something at ``path`` that looks
    complete. On error the temporary file or directory is removed and ``path`` is untouched.

    The temporary name is ``.<name>.tmp-<pid>-<random>``: a process killed with SIGKILL cannot
    clean up, so every call first removes the siblings ``.<name>.tmp-*`` whose owning PID is no
    longer alive (:func:`clean_stale_temps`; ``clean_stale=False`` skips that scan, for callers
    that write many files into a directory that is itself a temporary). A disk-full, quota,
    read-only or permission error in the block becomes a one-line
    :class:`mgr.errors.StorageError` naming ``path``.
    """

    path = Path(path)
    prefix = f".{path.name}.tmp-{os.getpid()}-"
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if clean_stale:
            clean_stale_temps(path)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent, suffix=path.suffix)
            os.close(fd)
            tmp = Path(name)
        # mkstemp/mkdtemp create private (0600/0700) entries; give the result the permissions
        # a plain open()/mkdir() would have had under the current umask.
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
        yield tmp
        if is_dir and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        # measured before the temporary is removed: it may be what filled the disk
        full = free_bytes_if_nearly_full(path.parent) if isinstance(e, Exception) else None
        if tmp is not None:
            _remove(tmp)
        se = storage_error(e, path) if isinstance(e, Exception) else None
        if se is None and full is not None and not isinstance(e, UserError):
            se = StorageError(
                f"disk full (no space left on device): cannot write {path} (free some space or write elsewhere; "
                f"{full} bytes were left when the write failed with {type(e).__name__})"
            )
        if se is None:
            raise
        # name the output, not our temporary (".<name>.tmp-<pid>-<random><suffix>")
        msg = re.sub(re.escape(prefix) + r"[^\s/'\"]*", lambda _: path.name, str(se))
        if se is e and msg == str(se):
            raise
        raise type(se)(msg) from e


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


_TMP_PID = re.compile(r"\.tmp-(\d+)-")
LEGACY_TEMP_MAX_AGE_S = 24 * 3600.0


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine, in this PID namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the leftovers ``.<name>.tmp-*`` of ``path`` that no live process owns.

    A temporary whose name carries a PID (``.<name>.tmp-<pid>-...``, what :func:`atomic_path`
    writes) is removed when that PID is dead; one without a PID (written before PIDs were
    encoded) when it is older than a day. A live PID is never touched, even if it was reused by
    an unrelated process (so a leftover may survive until that process ends). Returns what
    was removed.
    """
    import time

    path = Path(path)
    removed: list[Path] = []
    prefix = f".{path.name}.tmp-"
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for ent in entries:
        if not ent.name.startswith(prefix):
            continue
        m = _TMP_PID.match(ent.name, len(path.name) + 1)
        if m:
            stale = not pid_alive(int(m.group(1)))
        else:
            try:
                stale = now - ent.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_MAX_AGE_S
            except OSError:
                continue
        if stale:
            _remove(Path(ent.path))
            removed.append(Path(ent.path))
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as pretty, key-sorted JSON atomically (stable bytes for DVC/git diffs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def file_hash(path: str | os.PathLike, algo: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold


def rezip(path: str | os.PathLike, edit: Any = None) -> None:
    """Rewrite the zip archive ``path`` in place so that its bytes depend on its contents only:
    every entry dated :data:`ZIP_EPOCH` with fixed permissions, in the original order, deflated.
    ``edit(name, data) -> (name, data)`` may rewrite entries on the way (e.g. a save date inside
    a Keras archive, object ids inside a skops file). Libraries that write zips (Keras, skops)
    stamp the current time, so the same model gave a new file -- and a new hash -- on every run."""
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    if edit is not None:
        entries = [edit(n, d) for n, d in entries]
    tmp = path.with_name(path.name + ".rezip")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    os.replace(tmp, path)


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def n_workers(requested: int = 0) -> int:
    """Worker processes to use: ``requested`` if > 0, else the CPUs this process may use."""
    if requested and requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------------------ worker pools
def _set_pdeathsig() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (even by SIGKILL)."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:  # pragma: no cover - no libc / no prctl: best effort
        pass


def _pool_init(parent_pid: int, initializer: Any, initargs: tuple) -> None:
    _set_pdeathsig()
    # the parent may have died between fork and prctl: then nobody will signal us
    if os.getppid() != parent_pid:
        os._exit(1)
    if initializer is not None:
        initializer(*initargs)


def process_pool(max_workers: int, *, initializer: Any = None, initargs: tuple = (), mp_context: Any = None):
    """A :class:`~concurrent.futures.ProcessPoolExecutor` whose workers die with this process.

    Each worker first asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, Linux) to kill it
    when its parent dies, so a ``kill -9`` of a stage does not leave its workers running; then it
    runs ``initializer(*initargs)`` (e.g. thread limits). Elsewhere it is a plain pool.
    """
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=mp_context,
        initializer=_pool_init,
        initargs=(os.getpid(), initializer, tuple(initargs)),
    )
