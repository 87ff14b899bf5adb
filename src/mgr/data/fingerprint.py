"""Audio fingerprints for duplicate detection at fetch time (decode once, in the probe).

Two keys per track, both computed while :func:`mgr.data.probe.probe_file` decodes the file
(no second decode, no resampling):

``fingerprint`` (exact)
    The first 128 bits (32 hex digits) of the SHA-256 of ``"<sample rate>:<channels>:"``
    followed by the decoded float32 samples at the file's native rate. Two files with the same
    samples match whatever their container or codec (a WAV and a lossless FLAC of it, or the
    same file filed twice); a lossy re-encode or a resampled copy does not.

``near_fingerprint`` (coarse spectral, 128 bits as 32 hex digits)
    The mono signal is cut into 128-256 equal frames over its whole length (a power-of-two
    frame length derived from the file's frame count); each frame's power
    spectrum is summed into :data:`BANDS_HZ` (4 bands); the log energies are averaged into
    :data:`TIME_BINS` (32) equal time bins; bit ``(t, b)`` says whether band ``b`` at time bin
    ``t`` is louder than that band's median over the track. It ignores gain, codec noise and
    small edits, and tracks whose bit patterns differ in at most :data:`NEAR_MAX_BITS` bits are
    near duplicates. Frames are Hann-windowed and at least :data:`MIN_FRAME_S` long. A band with
    less than :data:`MIN_BAND_SHARE` of the track's energy, or whose level varies by less than
    :data:`MIN_SPREAD_DB`, gives zero bits; a track with no such band (a steady tone, silence)
    gets no key at all (``""``), since its bits would be noise. Tracks under ~1 s (fewer than
    :data:`TIME_BINS` frames) get none either.
    Limits: the time bins span the whole track, so two different excerpts of one song, or a copy
    shifted by more than a few percent of its length, are *not* found.

:func:`find_duplicates` groups the tracks: exact sets (same ``fingerprint``) and near pairs
(Hamming distance of ``near_fingerprint``s, all pairs by a blocked ±1 matrix product: O(N²·128)
flops, ~1 s for 10 000 tracks), joined into connected components (``dup_group``: the smallest
track id of the component).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

BANDS_HZ = (0.0, 300.0, 1200.0, 4000.0, 11025.0)
TIME_BINS = 32
FRAMES_TARGET = 128
NEAR_BITS = TIME_BINS * (len(BANDS_HZ) - 1)
NEAR_MAX_BITS = 16  # of 128: distinct tracks differ in ~64 +- 6 bits
MIN_SPREAD_DB = 1.5
MIN_BAND_SHARE = 1e-3  # bands with less of the track's energy (-30 dB) give no bits
MIN_FRAME_S = 0.025
EXACT_HEX = 32


class Fingerprinter:
    """Feed decoded blocks ``(n, channels)`` float32 in order; read :meth:`exact` / :meth:`near`."""

    def __init__(self, sample_rate: int, channels: int, total_frames: int | None = None) -> None:
        self.sr = int(sample_rate)
        self._h = hashlib.sha256(f"{self.sr}:{int(channels)}:".encode())
        known = total_frames is not None and 0 < total_frames < 1 << 40
        # a power of two (fast FFT) giving FRAMES_TARGET..2*FRAMES_TARGET frames over the track,
        # but at least MIN_FRAME_S long (a short frame measures the phase of steady tones)
        want = int(total_frames) // FRAMES_TARGET if known else self.sr // 10
        floor = 1 << max(6, int(want).bit_length() - 1)
        least = 1 << max(6, int(np.ceil(np.log2(max(self.sr * MIN_FRAME_S, 1.0)))))
        self.frame = max(floor, least)
        self._window = np.hanning(self.frame).astype(np.float32)
        freqs = np.fft.rfftfreq(self.frame, 1.0 / max(self.sr, 1))
        self._bands = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in zip(BANDS_HZ[:-1], BANDS_HZ[1:])],
                               axis=1).astype(np.float32)  # (bins, bands): power @ bands = band energies
        self._buf = np.zeros(0, dtype=np.float32)
        self._energies: list[np.ndarray] = []

    def update(self, block: np.ndarray) -> None:
        self._h.update(np.ascontiguousarray(block, dtype=np.float32).tobytes())
        mono = block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)
        buf = np.concatenate([self._buf, mono]) if len(self._buf) else mono
        k = len(buf) // self.frame
        if k:
            frames = buf[: k * self.frame].reshape(k, self.frame)
            spec = np.fft.rfft(frames * self._window, axis=1)
            power = (spec.real**2 + spec.imag**2).astype(np.float32)
            self._energies.append(power @ self._bands)
        self._buf = buf[k * self.frame :].copy()

    def exact(self) -> str:
        return self._h.hexdigest()[:EXACT_HEX]

    def near(self) -> str:
        if not self._energies:
            return ""
        e = np.concatenate(self._energies)
        if len(e) < TIME_BINS:
            return ""
        db = 10.0 * np.log10(e + 1e-10)
        binned = np.stack([b.mean(axis=0) for b in np.array_split(db, TIME_BINS)])  # (T, bands)
        spread = binned.max(axis=0) - binned.min(axis=0)
        total = e.sum(axis=0)
        # a band counts if it holds a real share of the energy and its level moves over time
        used = (total >= MIN_BAND_SHARE * total.sum()) & (spread >= MIN_SPREAD_DB)
        if not used.any():
            return ""
        bits = (binned > np.median(binned, axis=0)) & used
        return np.packbits(bits.T.ravel()).tobytes().hex()


def _bits(keys: Sequence[str]) -> np.ndarray:
    raw = np.frombuffer(bytes.fromhex("".join(keys)), dtype=np.uint8).reshape(len(keys), -1)
    return np.unpackbits(raw, axis=1).astype(np.float32) * 2.0 - 1.0


def near_pairs(keys: Sequence[str], max_bits: int = NEAR_MAX_BITS, block: int = 1024) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every pair ``i < j`` of non-empty keys within ``max_bits``."""
    idx = [i for i, k in enumerate(keys) if k and len(k) == NEAR_BITS // 4]
    if len(idx) < 2:
        return []
    x = _bits([keys[i] for i in idx])
    n_bits = x.shape[1]
    out: list[tuple[int, int, int]] = []
    for s in range(0, len(idx), block):
        dots = x[s : s + block] @ x.T  # hamming = (n_bits - dot) / 2
        ham = np.rint((n_bits - dots) / 2.0).astype(np.int32)
        ii, jj = np.nonzero(ham <= max_bits)
        for a, b in zip(ii + s, jj):
            if a < b:
                out.append((idx[a], idx[b], int(ham[a - s, b])))
    return out


@dataclass
class Duplicates:
    """What :func:`find_duplicates` found (indices into the input)."""

    exact_sets: list[list[int]] = field(default_factory=list)  # each sorted by track id
    near: list[tuple[int, int, int]] = field(default_factory=list)  # (i, j, bits) not exact
    group: list[str] = field(default_factory=list)  # per track: dup_group ("" when unique)


def find_duplicates(track_ids: Sequence[str], exact: Sequence[str], near: Sequence[str]) -> Duplicates:
    """Exact sets, near pairs and connected components of a dataset's fingerprints."""
    n = len(track_ids)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(exact):
        if k:
            by_key.setdefault(k, []).append(i)
    sets = [sorted(v, key=lambda i: str(track_ids[i])) for v in by_key.values() if len(v) > 1]
    sets.sort(key=lambda v: str(track_ids[v[0]]))
    for v in sets:
        for j in v[1:]:
            union(v[0], j)
    pairs = [(i, j, d) for i, j, d in near_pairs(near) if not (exact[i] and exact[i] == exact[j])]
    for i, j, _ in pairs:
        union(i, j)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    group = [""] * n
    for m in members.values():
        if len(m) > 1:
            name = min(str(track_ids[i]) for i in m)
            for i in m:
                group[i] = name
    return Duplicates(exact_sets=sets, near=pairs, group=group)
