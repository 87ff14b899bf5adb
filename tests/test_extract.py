"""mgr.data.archive.safe_extract: good archives extract, every escape kind is refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mgr.data.archive import safe_extract
from mgr.errors import DataError


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for e in entries:
            if isinstance(e, tuple):
                name, data = e
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(e)
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    return ti


def _zip(path: Path, entries: list[tuple[str, bytes] | zipfile.ZipInfo], payloads: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for e in entries:
            if isinstance(e, zipfile.ZipInfo):
                zf.writestr(e, (payloads or {}).get(e.filename, b""))
            else:
                zf.writestr(e[0], e[1])
    return path


def _zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, dict]:
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zi, {name: target.encode()}


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_good_tar_extracts(tmp_path, mode):
    arc = _tar(tmp_path / "a.tar", [("genres/blues/blues.00000.au", b"x" * 10), ("genres/rock/r.au", b"y"),
                                    _link("genres/link.au", "blues/blues.00000.au", tarfile.SYMTYPE)], mode)
    out = safe_extract(arc, tmp_path / "out")
    assert (out / "genres/blues/blues.00000.au").read_bytes() == b"x" * 10
    assert (out / "genres/link.au").read_bytes() == b"x" * 10  # an in-tree symlink is fine
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_good_zip_extracts(tmp_path):
    zi, pay = _zip_symlink("Data/link.wav", "genres_original/a.wav")
    arc = _zip(tmp_path / "k.zip", [("Data/genres_original/a.wav", b"abc"), ("Data/empty/", b""), zi], pay)
    out = safe_extract(arc, tmp_path / "out")
    assert (out / "Data/genres_original/a.wav").read_bytes() == b"abc"
    assert (out / "Data/empty").is_dir()
    assert (out / "Data/link.wav").read_bytes() == b"abc"


TAR_ESCAPES = {
    "dotdot": [("ok.txt", b"ok"), ("../evil.txt", b"evil")],
    "nested_dotdot": [("a/b/../../../evil.txt", b"evil")],
    "absolute": [("ok.txt", b"ok"), (None, b"evil")],  # filled with an absolute path in the test
    "symlink_out": [_link("a/link", "../../evil.txt", tarfile.SYMTYPE), ("ok.txt", b"ok")],
    "symlink_abs": [_link("link", "/etc/passwd", tarfile.SYMTYPE)],
    "hardlink_out": [_link("hl", "../evil.txt", tarfile.LNKTYPE)],
    "hardlink_abs": [_link("hl", "/etc/passwd", tarfile.LNKTYPE)],
    "chardev": [_link("dev", "", tarfile.CHRTYPE)],
    "fifo": [_link("fifo", "", tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("kind", sorted(TAR_ESCAPES))
def test_malicious_tar_refused(tmp_path, kind):
    victim_dir = tmp_path / "sandbox"
    victim_dir.mkdir()
    entries = [(str(tmp_path / "abs_evil.txt"), d) if isinstance(e, tuple) and e[0] is None else e
               for e in TAR_ESCAPES[kind] for d in [e[1] if isinstance(e, tuple) else None]]
    arc = _tar(victim_dir / "evil.tar.gz", entries)
    before = _all_files(tmp_path)
    dest = victim_dir / "out"
    with pytest.raises(DataError) as ei:
        safe_extract(arc, dest)
    msg = str(ei.value)
    assert msg.startswith("unsafe archive evil.tar.gz: entry ")
    bad = [e for e in entries if not (isinstance(e, tuple) and e[0] == "ok.txt")][0]
    bad_name = bad[0] if isinstance(bad, tuple) else bad.name
    assert repr(bad_name) in msg
    assert _all_files(tmp_path) == before  # nothing written anywhere
    assert not dest.exists()


ZIP_ESCAPES = {
    "dotdot": [("ok.txt", b"ok"), ("../evil.txt", b"evil")],
    "absolute": [("/tmp/mgr_abs_evil.txt", b"evil")],
    "backslash_dotdot": [("..\\evil.txt", b"evil")],
}


@pytest.mark.parametrize("kind", sorted(ZIP_ESCAPES))
def test_malicious_zip_refused(tmp_path, kind):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    arc = sandbox / "evil.zip"
    # zipfile.writestr sanitises nothing on write, so the raw names end up in the archive
    with zipfile.ZipFile(arc, "w") as zf:
        for name, data in ZIP_ESCAPES[kind]:
            zi = zipfile.ZipInfo("placeholder")
            zi.filename = name  # bypass ZipInfo's normalisation
            zf.writestr(zi, data)
    before = _all_files(tmp_path)
    with pytest.raises(DataError, match=r"unsafe archive evil\.zip: entry '.*(evil\.txt)'"):
        safe_extract(arc, sandbox / "out")
    assert _all_files(tmp_path) == before
    assert not Path("/tmp/mgr_abs_evil.txt").exists()


def test_zip_symlink_pointing_outside_refused(tmp_path):
    zi, pay = _zip_symlink("Data/link", "../../outside.txt")
    arc = _zip(tmp_path / "evil.zip", [("Data/a.wav", b"a"), zi], pay)
    with pytest.raises(DataError, match=r"entry 'Data/link' is a symlink pointing outside"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_device_entry_refused(tmp_path):
    zi = zipfile.ZipInfo("dev")
    zi.create_system = 3
    zi.external_attr = (stat.S_IFCHR | 0o644) << 16
    arc = _zip(tmp_path / "dev.zip", [zi])
    with pytest.raises(DataError, match="device file"):
        safe_extract(arc, tmp_path / "out")


def test_not_an_archive_and_corrupt_archive(tmp_path):
    f = tmp_path / "x.tar.gz"
    f.write_bytes(b"definitely not an archive")
    with pytest.raises(DataError, match="not a tar or zip"):
        safe_extract(f, tmp_path / "out")
    good = _tar(tmp_path / "g.tar.gz", [("a.bin", bytes(range(256)) * 400)])
    trunc = tmp_path / "t.tar.gz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError):
        safe_extract(trunc, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    with pytest.raises(DataError, match="not found"):
        safe_extract(tmp_path / "missing.zip", tmp_path / "out3")
