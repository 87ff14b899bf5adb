"""Resumable, checksum-verified downloads with the standard library (urllib).

:func:`download` streams a URL to ``dest.part`` with a progress bar on stderr, resumes an
interrupted transfer with an HTTP ``Range`` request (also across calls: a ``.part`` left by a
killed process is continued), retries transient errors with exponential backoff, times out on
a stalled connection, verifies the checksum and only then renames ``.part`` to ``dest``.
``file://`` URLs and plain local paths are accepted too (copied the same way).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mgr.errors import DataError
from mgr.io import file_hash

CHUNK = 1 << 16
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "mgr-fetch/0.1 (+https://github.com/; python-urllib)"


class _Transient(Exception):
    """A failure worth retrying (connection dropped, timeout, 5xx, short body)."""


def is_url(s: str | os.PathLike) -> bool:
    """True for ``http(s)://``, ``ftp://`` and ``file://`` strings."""
    return urllib.parse.urlsplit(str(s)).scheme.lower() in ("http", "https", "ftp", "file")


def url_basename(url: str) -> str:
    """The file name at the end of a URL's path (``''`` if none)."""
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name


def verify_checksum(path: str | os.PathLike, *, md5: str | None = None, sha1: str | None = None,
                    name: str | None = None, remove: bool = False) -> None:
    """Raise :class:`DataError` (naming the file, expected and actual digest) on a mismatch.

    With ``remove=True`` the offending file is deleted first (used for downloads, so a bad
    file is never mistaken for a good one later).
    """
    path = Path(path)
    for algo, expected in (("md5", md5), ("sha1", sha1)):
        if not expected:
            continue
        actual = file_hash(path, algo)
        if actual.lower() != expected.strip().lower():
            if remove:
                path.unlink(missing_ok=True)
            gone = " (the file was removed)" if remove else ""
            raise DataError(
                f"checksum mismatch for {name or path.name}: expected {algo} {expected.strip().lower()}, "
                f"got {actual}{gone}"
            )


def _local_source(url: str) -> Path | None:
    """The local file a ``file://`` URL or a plain path names (None for network URLs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if is_url(url):
        return None
    return Path(url).expanduser()


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
        desc=desc, file=sys.stderr, disable=not enabled, leave=False,
    )


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool, desc: str) -> None:
    """One HTTP attempt: continue ``part`` from its current size. Raises _Transient to retry."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # Range not satisfiable: either the part is already complete or it is bogus;
            # the checksum (or the size check below on the next attempt) decides.
            total = _parse_content_range(e.headers.get("Content-Range"))
            if total and total[1] == offset:
                return
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 for a resumed download of {url}; restarting") from None
        if e.code in _RETRY_HTTP:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DataError(f"download failed: HTTP {e.code} {e.reason} for {url}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, socket.gaierror):  # unknown host / no DNS: retrying will not help
            host = urllib.parse.urlsplit(url).hostname
            raise DataError(f"download failed: cannot resolve host {host!r} for {url} (offline?)") from None
        if isinstance(reason, (socket.timeout, TimeoutError, ConnectionError, OSError)):
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        raise DataError(f"download failed for {url}: {reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from None

    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            cr = _parse_content_range(resp.headers.get("Content-Range"))
            if cr is not None and cr[0] != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"server resumed at byte {cr[0]}, expected {offset}; restarting")
            mode, start = "ab", offset
            total = cr[1] if cr and cr[1] is not None else (offset + length if length is not None else None)
        else:  # 200: the server ignored the Range header (or there was none): start over
            mode, start = "wb", 0
            total = length
        received = 0
        with open(part, mode) as f, _progress(total, start, desc, progress) as bar:
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
                f.flush()
                raise _Transient(f"connection lost after {start + received} bytes: {type(e).__name__}: {e}") from None
        if length is not None and received < length:
            raise _Transient(f"connection closed after {start + received} of {start + length} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha1: str | None = None,
    timeout: float = 30,
    retries: int = 5,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Parameters
    ----------
    url
        ``http(s)://``, ``ftp://``, ``file://`` or a plain local path.
    dest
        Target file. If it already exists and matches the checksum (or no checksum is given)
        nothing is downloaded; a stale ``dest`` that does not match is replaced.
    md5, sha1
        Expected hex digests; verified before ``dest`` appears. A mismatch raises
        :class:`~mgr.errors.DataError` naming the file, expected and actual digest, and the
        bad download is removed.
    timeout
        Seconds without data before an attempt is abandoned (then retried).
    retries
        Consecutive failed attempts allowed (an attempt that made progress resets the count).
    backoff
        Base of the exponential backoff: waits ``backoff * 2**k`` seconds (capped at 60).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    name = dest.name

    if dest.exists():
        try:
            verify_checksum(dest, md5=md5, sha1=sha1, name=name)
            return dest
        except DataError:
            dest.unlink()  # a stale or corrupt earlier download: fetch it again

    local = _local_source(url)
    if local is not None:
        if not local.is_file():
            raise DataError(f"download: {local} does not exist (or is not a file)")
        verify_checksum(local, md5=md5, sha1=sha1, name=str(local))
        tmp = dest.with_name(dest.name + ".copy-part")
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, desc=name)
            break
        except _Transient as e:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise DataError(
                    f"download of {url} failed after {retries} retries: {e} "
                    f"(partial file kept as {part}; run again to resume)"
                ) from None
            wait = min(60.0, backoff * (2 ** max(0, failures - 1)))
            print(f"download: {e}; retrying in {wait:.1f} s", file=sys.stderr)
            time.sleep(wait)
    if not part.exists():
        raise DataError(f"download of {url} produced no data")
    verify_checksum(part, md5=md5, sha1=sha1, name=name, remove=True)
    os.replace(part, dest)
    return dest
