"""Safe extraction of tar (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) and zip archives.

Every entry is checked *before* anything is written: names that are absolute or contain
``..`` (after normalisation), symlinks or hardlinks whose target lies outside the
destination, and device files / FIFOs are refused with a :class:`~mgr.errors.DataError`
naming the entry. Extraction goes into a temporary sibling directory that is renamed onto
``dest`` only when complete, so an interrupted extraction never looks finished.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from mgr.errors import DataError
from mgr.io import atomic_path


def _bad_name(name: str) -> str | None:
    """Why an archive member name is unsafe (None if it is fine)."""
    if not name or "\x00" in name:
        return "has an empty or invalid name"
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":") or n.startswith("//"):
        return "has an absolute path"
    if ".." in n.split("/"):
        return "contains '..'"
    return None


def _inside(base_rel: str, target: str) -> bool:
    """Does ``target`` (relative to the archive root, may contain ..) stay inside the root?"""
    norm = posixpath.normpath(posixpath.join(base_rel, target))
    return not (norm == ".." or norm.startswith("../") or norm.startswith("/"))


def _check_tar_member(m: tarfile.TarInfo) -> str | None:
    why = _bad_name(m.name)
    if why:
        return why
    if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
        return "is a device file or FIFO"
    if m.issym():
        link = m.linkname.replace("\\", "/")
        if link.startswith("/") or not _inside(posixpath.dirname(m.name.replace("\\", "/")), link):
            return f"is a symlink pointing outside the target ({m.linkname!r})"
    if m.islnk():
        link = m.linkname.replace("\\", "/")
        if link.startswith("/") or not _inside("", link):
            return f"is a hardlink pointing outside the target ({m.linkname!r})"
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        return "is not a regular file, directory or link"
    return None


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _check_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    why = _bad_name(info.filename)
    if why:
        return why
    mode = _zip_mode(info)
    if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return "is a device file or FIFO"
    if mode and stat.S_ISLNK(mode):
        target = zf.read(info).decode("utf-8", "replace").replace("\\", "/")
        if target.startswith("/") or not _inside(posixpath.dirname(info.filename.rstrip("/")), target):
            return f"is a symlink pointing outside the target ({target!r})"
    return None


def archive_kind(path: str | os.PathLike) -> str | None:
    """``'zip'``, ``'tar'`` or None (not an archive this module can read)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, tarfile.TarError):
        return None
    return None


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract ``archive`` (tar family or zip) into ``dest`` safely; return ``dest``.

    Raises :class:`DataError` for an unreadable or unknown archive and for any unsafe entry
    (nothing is written in that case). ``dest`` is replaced if it exists.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"archive {archive} not found")
    kind = archive_kind(archive)
    if kind is None:
        raise DataError(f"{archive.name} is not a tar or zip archive (or is corrupt)")
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    why = _check_zip_member(zf, info)
                    if why:
                        raise DataError(f"unsafe archive {archive.name}: entry {info.filename!r} {why}")
                with atomic_path(dest, is_dir=True) as tmp:
                    for info in infos:
                        mode = _zip_mode(info)
                        if mode and stat.S_ISLNK(mode):
                            target = zf.read(info).decode("utf-8")
                            link = tmp / info.filename
                            link.parent.mkdir(parents=True, exist_ok=True)
                            os.symlink(target, link)
                            continue
                        out = tmp / info.filename
                        if info.is_dir():
                            out.mkdir(parents=True, exist_ok=True)
                            continue
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as src, open(out, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    why = _check_tar_member(m)
                    if why:
                        raise DataError(f"unsafe archive {archive.name}: entry {m.name!r} {why}")
                with atomic_path(dest, is_dir=True) as tmp:
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python < 3.11.4
                        tf.extractall(tmp, members=members)
    except DataError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        raise DataError(f"cannot extract {archive.name}: {type(e).__name__}: {e}") from None
    except OSError as e:
        raise DataError(f"cannot extract {archive.name}: {e.strerror or e}") from None
    return dest
