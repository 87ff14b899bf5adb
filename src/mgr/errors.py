"""Errors a user can cause (bad params, bad input files, missing data).

Everything that is the user's fault raises a subclass of :class:`UserError`; the CLI and the
stage runner print its message as one line on stderr and exit non-zero, without a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable


class UserError(Exception):
    """An error caused by input, configuration or environment: shown as one line."""

    exit_code = 1


class ParamsError(UserError):
    """A value in params.yaml is unknown, of the wrong type or out of range."""

    exit_code = 2


class DataError(UserError):
    """A dataset, archive, download or table is missing, corrupt or inconsistent."""


class AudioError(UserError):
    """An audio file cannot be decoded (or is too short to use)."""


class ArtifactError(UserError):
    """A model artifact is missing, tampered with, foreign or inconsistent with its inputs."""


class StorageError(UserError):
    """An output cannot be written: disk full, quota exceeded, read-only file system, no permission.

    Built by :func:`storage_error` from the ``OSError`` (or the HDF5 / libsndfile error that wraps
    one) that a write raised anywhere in a stage.
    """


# errno -> what the one-line message calls the condition
STORAGE_ERRNOS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
# libraries that wrap the OSError in their own message (HDF5: "errno = 28, error message = 'No
# space left on device'"; libsndfile: "System error : No space left on device.")
_STORAGE_TEXT = {os.strerror(n).lower(): n for n in STORAGE_ERRNOS}
_ERRNO_RE = re.compile(r"errno\s*=\s*(\d+)")
_PATH_RES = (
    re.compile(r"(?:file)?name\s*=\s*'([^']+)'"),  # HDF5
    re.compile(r"Error (?:opening|writing) '([^']+)'"),  # libsndfile
)


def _storage_errno(e: BaseException) -> int | None:
    if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        return e.errno
    text = str(e)
    for m in _ERRNO_RE.finditer(text):
        if int(m.group(1)) in STORAGE_ERRNOS:
            return int(m.group(1))
    low = text.lower()
    for msg, n in _STORAGE_TEXT.items():
        if msg in low:
            return n
    return None


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in out and len(out) < 20:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def storage_error(e: BaseException, path: str | os.PathLike | None = None) -> StorageError | None:
    """A one-line :class:`StorageError` if ``e`` (or an exception in its chain) is a disk-full,
    quota, read-only or permission failure, else ``None``.

    The path named is the failing file when the error carries one (``OSError.filename``, or the
    file name in an HDF5 / libsndfile message), else ``path`` (the output being written).
    """
    if isinstance(e, StorageError):
        return e
    for link in _chain(e):
        if isinstance(link, (StorageError, KeyboardInterrupt)):
            return link if isinstance(link, StorageError) else None
        n = _storage_errno(link)
        if n is None:
            continue
        where = getattr(link, "filename", None) if isinstance(link, OSError) else None
        if where is None:
            for rx in _PATH_RES:
                m = rx.search(str(link))
                if m:
                    where = m.group(1)
                    break
        if where is None:
            where = path
        what = STORAGE_ERRNOS[n]
        hint = " (free some space or write elsewhere)" if n in (errno.ENOSPC, errno.EDQUOT) else ""
        return StorageError(f"{what}: cannot write {os.fspath(where) if where is not None else 'an output'}{hint}")
    return None


NEARLY_FULL_BYTES = 4 << 20


def free_bytes_if_nearly_full(path: str | os.PathLike) -> int | None:
    """Free bytes on ``path``'s file system if fewer than :data:`NEARLY_FULL_BYTES` are left.

    Some writers lose the errno of a full disk (libsndfile's FLAC encoder reports "problem with
    initialization of the flac decoder"); a failed write next to a nearly full file system is
    then taken for what it almost surely is.
    """
    p = os.fspath(path)
    while p and not os.path.isdir(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    try:
        st = os.statvfs(p or ".")
    except (OSError, AttributeError):
        return None
    free = st.f_bavail * st.f_frsize
    return free if free < NEARLY_FULL_BYTES else None


def run_reporting_user_errors(main: Callable[[], object]) -> None:
    """Call ``main``; a :class:`UserError` becomes one ``error: ...`` line and its exit code.

    So does any exception that is (or wraps) a disk-full, quota, read-only or permission failure
    (:func:`storage_error`): a full disk is the environment's fault, not a bug, and deserves one
    line naming the path rather than a traceback. Outputs are written through
    :func:`mgr.io.atomic_path`, which removed its temporary file before we get here.
    """
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, StorageError):
            _storage_exit(e.exit_code)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        se = storage_error(e)
        if se is None:
            raise
        print(f"error: {se}", file=sys.stderr)
        _storage_exit(se.exit_code)


def _storage_exit(code: int) -> None:
    """Leave at once after a storage failure: HDF5 crashes (SIGSEGV) in its finalizers when a
    file whose write failed with ENOSPC is released at interpreter exit, which would turn the
    one-line error into exit status 139. The outputs' temporaries are already removed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
