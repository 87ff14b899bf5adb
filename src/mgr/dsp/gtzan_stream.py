"""``gtzan57`` features of overlapping segments of a long stream, the expensive work done once.

:func:`mgr.dsp.kernels.gtzan57` of one segment spends most of its time on the STFT and on HPSS
(two median filters, soft masks, an inverse STFT). With overlapping segments (50 % by default)
every sample went through them twice. Here the STFT frames and the harmonic signal of HPSS are
computed **once over the whole stream**, in blocks on the global frame grid (hop 512), and each
segment takes them from there:

* A segment that starts on the frame grid (``start % 512 == 0``) has the same STFT frames as the
  global stream except its zero-padded edge frames (its first two and last one), which are
  recomputed from the segment's own samples.
* HPSS is local within 15 frames (the median filters) plus 2 frames (the inverse STFT), so the
  segment's harmonic signal equals the global one away from its edges; the first and last
  :data:`EDGE_FRAMES` frames' worth of samples come from HPSS of a short stretch of the segment
  itself (where the segment's reflect padding and zero-padded frames matter). The percussive
  signal is ``istft(D) - harmonic`` (the soft masks sum to one), i.e. the segment minus its
  harmonic signal.
* The remaining features (chroma, spectral shape, mel / MFCC, tempo, RMS, ZCR) are computed per
  segment from those frames by the same kernels as :func:`~mgr.dsp.kernels.gtzan57`.

So the features equal the per-segment computation up to float32 summation order (tested at
``rtol 1e-4``). Segments that do not start on the grid (the end-aligned last one) or are short
are computed by :func:`~mgr.dsp.kernels.gtzan57` directly. Memory: about two segments of
samples and frames, whatever the stream length.

:func:`stream_gtzan57_chunked` cuts the same segments but hands groups of :data:`GROUP`
consecutive grid-aligned segments (a chunk: the first one's start to the last one's end) to worker
processes, each running :func:`stream_gtzan57` on its chunk alone (:func:`chunk_features`); a
segment's features depend on its own samples only, so they are the same within that tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from mgr.dsp import kernels as K

H = K.HOP
N_FFT = K.N_FFT
HALF = N_FFT // 2
#: median-filter half width of HPSS (kernel 31)
_MED = 15
#: samples within this many frames of a segment's edge get their HPSS from the segment itself
EDGE_FRAMES = 24
#: length (frames) of the stretch of the segment whose HPSS gives those edge samples
_EDGE_STRETCH = EDGE_FRAMES + 40
#: shortest segment (frames) worth the shared computation; shorter ones use kernels.gtzan57
MIN_FRAMES = 4 * _EDGE_STRETCH
#: global frames per HPSS block
_BLOCK = 1024


def _stft_frames(yp: np.ndarray, n: int) -> np.ndarray:
    """``n`` STFT frames ``(1025, n)`` of the padded signal ``yp`` (frame ``g`` = ``yp[gH : gH + N_FFT]``),
    computed exactly as :func:`mgr.dsp.kernels.stft` computes each frame."""
    frames = K._frame(np.ascontiguousarray(yp[: (n - 1) * H + N_FFT], np.float32), N_FFT, H)
    win = K._hann64(N_FFT)
    out = np.empty((n, N_FFT // 2 + 1), dtype=np.complex64)
    for s in range(0, n, 512):
        out[s : s + 512] = np.fft.rfft(frames[s : s + 512] * win, axis=1)
    return out.T


def _harmonic_masked(D: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``mag * mask_h * phase`` (as :func:`mgr.dsp.kernels.hpss_signals`) of frames ``lo:hi`` of ``D``,
    whose time medians use the frames of ``D`` around them (symmetric padding at ``D``'s ends)."""
    mag_all = K.cabs(D)
    finite = bool(np.isfinite(mag_all).all())
    if finite:
        key = np.ascontiguousarray(mag_all).view(np.int32)
        harm = K.median_filter_1d(key, 2 * _MED + 1, axis=1)[:, lo:hi].view(np.float32)
        perc = K.median_filter_1d(np.ascontiguousarray(key[:, lo:hi]), 2 * _MED + 1, axis=0).view(np.float32)
    else:
        harm = K.median_filter_1d(mag_all, 2 * _MED + 1, axis=1)[:, lo:hi]
        perc = K.median_filter_1d(np.ascontiguousarray(mag_all[:, lo:hi]), 2 * _MED + 1, axis=0)
    Dm = D[:, lo:hi]
    mag = mag_all[:, lo:hi]
    zeros = mag == 0
    mag_nz = mag + zeros
    phase = np.empty_like(Dm)
    phase.real = Dm.real / mag_nz + zeros
    phase.imag = Dm.imag / mag_nz
    return (mag * K._softmask(np.ascontiguousarray(harm), np.ascontiguousarray(perc))) * phase


def _harmonic(y: np.ndarray) -> np.ndarray:
    """The harmonic signal of :func:`mgr.dsp.kernels.hpss_signals` of ``y`` (without the percussive one)."""
    D = K.stft(y)
    return K.istft(_harmonic_masked(D, 0, D.shape[1]), len(y))


class _Global:
    """The stream's STFT frames and harmonic signal on the global grid, computed block by block.

    Coordinates: ``p`` indexes the padded signal ``[HALF zeros] + y``; frame ``g`` covers
    ``p in [gH, gH + N_FFT)``; harmonic hop-block ``i`` covers ``p in [iH, (i+1)H)``."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.fr: dict[str, np.ndarray] | None = None  # kernels.gtzan57_frames of the stored frames
        self.yp = np.zeros(HALF, np.float32)  # padded samples from p = self.p0
        self.p0 = 0
        self.D = np.zeros((N_FFT // 2 + 1, 0), np.complex64)  # frames from g = self.g0
        self.g0 = 0
        self.n_frames = 0  # frames computed so far (global count)
        self.masked_to = 0  # frames whose masked spectrum went into the overlap-add
        self.acc = np.zeros((0, H), np.float32)  # overlap-add blocks from i = self.i0 (the last 3 partial)
        self.i0 = 0
        self.harm = np.zeros(0, np.float32)  # finished harmonic samples, p from self.h0
        self.h0 = 0
        win = K._hann64(N_FFT)
        self.win = win
        wsq = (win * win).astype(np.float32).reshape(4, H)
        self.wss = ((wsq[0] + wsq[1]) + wsq[2]) + wsq[3]  # interior window sum-square

    def push(self, y: np.ndarray) -> None:
        self.yp = np.concatenate([self.yp, np.asarray(y, np.float32)])
        avail = self.p0 + len(self.yp)
        n_new = (avail - N_FFT) // H + 1 - self.n_frames
        if n_new > 0:
            s = self.n_frames * H - self.p0
            D_new = _stft_frames(self.yp[s:], n_new)
            fr = K.gtzan57_frames(D_new, self.sr)
            fr["tun_frame"] = fr["tun_frame"] + self.n_frames  # (global frame numbers)
            self.fr = fr if self.fr is None else {k: np.concatenate([self.fr[k], v], axis=-1) for k, v in fr.items()}
            self.D = np.concatenate([self.D, D_new], axis=1)
            self.n_frames += n_new
        # mask the frames whose +-15 neighbours exist (a block at a time)
        while self.n_frames - _MED - self.masked_to >= _BLOCK:
            self._mask(self.masked_to + _BLOCK)

    def advance(self) -> None:
        """Mask every frame that can be masked now (used before a segment is finished)."""
        if self.n_frames - _MED > self.masked_to:
            self._mask(self.n_frames - _MED)

    def _mask(self, hi: int) -> None:
        lo = self.masked_to
        a = max(self.g0, lo - _MED)
        Dm = _harmonic_masked(self.D[:, a - self.g0 : hi + _MED - self.g0], lo - a, hi - a)
        fr = (np.fft.irfft(Dm.T, n=N_FFT, axis=1) * self.win).astype(np.float32).reshape(hi - lo, 4, H)
        # overlap-add: frame g adds its quarter q to hop-block g + q
        need = hi + 3 - self.i0
        if len(self.acc) < need:
            self.acc = np.concatenate([self.acc, np.zeros((need - len(self.acc), H), np.float32)])
        for q in range(4):
            self.acc[lo - self.i0 + q : hi - self.i0 + q] += fr[:, q]
        # hop-blocks below hi get no more frames: finished (interior window sum-square; blocks
        # before frame 3 have a partial one, as at the start of kernels.istft)
        done = self.acc[: hi - self.i0]
        i = np.arange(self.i0, hi)
        out = np.empty_like(done)
        full = i >= 3
        out[full] = done[full] / self.wss
        for j in np.nonzero(~full)[0]:
            wsq = (self.win * self.win).astype(np.float32).reshape(4, H)
            w = np.zeros(H, np.float32)
            for q in range(int(i[j]) + 1):
                w += wsq[q]
            nz = w > K._TINY32
            out[j] = np.where(nz, done[j] / np.where(nz, w, 1.0), done[j])
        self.harm = np.concatenate([self.harm, out.reshape(-1)])
        self.acc = self.acc[hi - self.i0 :]
        self.i0 = hi
        self.masked_to = hi

    def harmonic(self, p_lo: int, p_hi: int) -> np.ndarray:
        return self.harm[p_lo - self.h0 : p_hi - self.h0]

    def frames(self, g_lo: int, g_hi: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Frames ``g_lo:g_hi`` and their :func:`~mgr.dsp.kernels.gtzan57_frames` pieces."""
        a, b = g_lo - self.g0, g_hi - self.g0
        fr = {k: v[..., a:b] for k, v in self.fr.items() if not k.startswith("tun_")}
        tf = self.fr["tun_frame"]
        m = (tf >= g_lo) & (tf < g_hi)
        fr.update(tun_pitch=self.fr["tun_pitch"][m], tun_mag=self.fr["tun_mag"][m], tun_frame=tf[m] - g_lo)
        return self.D[:, a:b], fr

    def drop_before(self, p: int) -> None:
        """Forget samples, frames and harmonic samples no segment starting at ``p - HALF`` or later needs."""
        g = max(self.g0, min(p // H - _MED - 4, self.masked_to - _MED))
        if g > self.g0:
            self.D = self.D[:, g - self.g0 :]
            fr = {k: v[..., g - self.g0 :] for k, v in self.fr.items() if not k.startswith("tun_")}
            m = self.fr["tun_frame"] >= g
            fr.update({k: v[m] for k, v in self.fr.items() if k.startswith("tun_")})
            self.fr = fr
            self.g0 = g
        keep_p = min(p, g * H)
        if keep_p > self.p0:
            self.yp = self.yp[keep_p - self.p0 :]
            self.p0 = keep_p
        keep_h = min(p, self.h0 + len(self.harm))  # (never past what is computed: keeps the grid)
        if keep_h > self.h0:
            self.harm = self.harm[keep_h - self.h0 :]
            self.h0 = keep_h


def segment_features(seg: np.ndarray, sr: int, D_inner: np.ndarray, fr_inner: dict[str, np.ndarray],
                     harm_inner: np.ndarray) -> dict[str, float]:
    """``kernels.gtzan57(seg, sr)`` given the global frames ``D_inner`` (the segment's frames from 2 on
    that lie wholly inside it), their :func:`~mgr.dsp.kernels.gtzan57_frames` pieces ``fr_inner``
    and the global harmonic samples ``harm_inner`` of
    ``seg[EDGE_FRAMES * H : (k - 1 - EDGE_FRAMES) * H]`` (``k`` the segment's frame count)."""
    n = len(seg)
    k = 1 + n // H
    k_in = (n - HALF) // H + 1  # frames wholly inside (before the right zero padding)
    # frames: 0, 1 from the segment's start (zero-padded left), 2..k_in-1 global, then the right edge
    head = K.stft(seg[: 4 * H])[:, :2]
    t0 = (k_in - 4) * H
    tail = K.stft(seg[t0:])[:, 4:]
    D = np.concatenate([head, D_inner, tail], axis=1)
    assert D.shape[1] == k, (D.shape, k)
    parts = (K.gtzan57_frames(head, sr), fr_inner, K.gtzan57_frames(tail, sr))
    fr = {key: np.concatenate([q[key] for q in parts], axis=-1) for key in ("cent", "bw", "rolloff", "mel_db")}
    tuning = K.tuning_from_candidates(np.concatenate([q["tun_pitch"] for q in parts]),
                                      np.concatenate([q["tun_mag"] for q in parts]))
    # harmonic signal: the edges from HPSS of a stretch of the segment, the interior global
    x0, x1 = EDGE_FRAMES * H, (k - 1 - EDGE_FRAMES) * H
    e = _EDGE_STRETCH * H
    left = seg[:e]
    h_left = _harmonic(left)[:x0]
    r0 = x1 - 40 * H
    right = seg[r0:]
    h_right = _harmonic(right)[x1 - r0 :]
    harm = np.concatenate([h_left, harm_inner, h_right])
    perc = seg - harm
    return K.gtzan57_reduce(seg, sr, D, fr, tuning, (harm, perc))


def stream_gtzan57(blocks: Iterable[np.ndarray], sr: int, n: int, hop: int,
                   on_block: Callable[[int], None] | None = None) -> Iterator[tuple[int, np.ndarray, int, Callable]]:
    """Segments of ``n`` samples every ``hop`` samples of the streamed signal, as
    :func:`mgr.inference.streaming.stream_segments` cuts them (last one end-aligned, a short
    signal one zero-padded segment): ``(start, segment, real, features)`` where ``features()``
    returns ``kernels.gtzan57(segment, sr)`` (call it before asking for the next segment).
    ``on_block(n_samples)`` is called for every block (budget checks)."""
    shared = hop % H == 0 and 1 + n // H >= MIN_FRAMES
    g = _Global(sr) if shared else None
    buf = np.zeros(0, np.float32)
    base = nxt = last_end = 0
    k = 1 + n // H
    k_in = (n - HALF) // H + 1
    x0, x1 = EDGE_FRAMES * H, (k - 1 - EDGE_FRAMES) * H

    def direct(seg: np.ndarray) -> Callable[[], dict]:
        return lambda: K.gtzan57(seg, sr)

    def shared_feats(start: int, seg: np.ndarray) -> Callable[[], dict]:
        def f() -> dict:
            g.advance()
            gs = start // H
            D_inner, fr_inner = g.frames(gs + 2, gs + k_in)
            return segment_features(seg, sr, D_inner, fr_inner, g.harmonic(start + HALF + x0, start + HALF + x1))
        return f

    for block in blocks:
        block = np.asarray(block, np.float32)
        if on_block is not None:
            on_block(len(block))
        buf = np.concatenate([buf, block])
        if g is not None:
            g.push(block)
        while nxt + n <= base + len(buf):
            i = nxt - base
            seg = buf[i : i + n]
            yield nxt, seg, n, (shared_feats(nxt, seg) if g is not None else direct(seg))
            last_end, nxt = nxt + n, nxt + hop
            if g is not None:
                g.drop_before(nxt + HALF)
        keep_from = min(nxt, base + len(buf) - n)
        if keep_from > base:
            buf, base = buf[keep_from - base :], keep_from
    total = base + len(buf)
    if total < n:
        seg = np.concatenate([buf, np.zeros(n - len(buf), np.float32)])
        yield 0, seg, total, direct(seg)
    elif last_end < total:
        seg = buf[len(buf) - n :]
        yield total - n, seg, n, direct(seg)


# ------------------------------------------------------------------ chunks on worker processes
#: aligned segments per chunk in :func:`stream_gtzan57_chunked`: a chunk recomputes the STFT / HPSS
#: of its overlap with the next one (``n - hop`` samples), about ``1 / GROUP`` extra work at 50 % overlap
GROUP = 8


def chunk_features(chunk: np.ndarray, sr: int, n: int, hop: int, want: list[bool]) -> list[dict[str, float] | None]:
    """The features of the ``len(want)`` segments of ``n`` samples at ``0, hop, 2 hop, ...`` of
    ``chunk`` (which ends where the last one ends), computed by :func:`stream_gtzan57` on the chunk
    alone; ``None`` where ``want`` is false (a silent segment: no features). A worker process runs
    this on one chunk of a long stream: a segment's features depend on its own samples only, so they
    are those of the whole-stream computation (both equal ``kernels.gtzan57`` of the segment at
    ``rtol 1e-4``)."""
    step = 10 * sr  # fed in 10 s blocks, as a decoded stream is: the global frames are computed
    # and dropped a block at a time (the whole chunk at once would hold all its frames)
    blocks = (chunk[i : i + step] for i in range(0, len(chunk), step))
    out: list[dict[str, float] | None] = []
    for (_, _, _, feats), w in zip(stream_gtzan57(blocks, sr, n, hop), want):
        out.append(feats() if w else None)
    return out


def stream_gtzan57_chunked(blocks: Iterable[np.ndarray], sr: int, n: int, hop: int, submit: Callable[..., Any],
                           skip: Callable[[np.ndarray], bool], *, group: int = GROUP, in_flight: int = 4,
                           on_block: Callable[[int], None] | None = None,
                           wait: Callable[[Any], Any] | None = None) -> Iterator[tuple[int, np.ndarray, int, Callable]]:
    """:func:`stream_gtzan57` with the features computed elsewhere: the same segments (starts,
    samples, ``real``), yielded in order, but every ``group`` consecutive grid-aligned segments
    form a chunk (from the first one's start to the last one's end; its starts are on the 512-sample
    grid, so is its frame grid) handed to ``submit(chunk_features, chunk, sr, n, hop, want)``, a
    process pool's ``submit`` returning a future; the end-aligned last segment goes to
    ``submit(kernels.gtzan57, segment, sr)``. ``features()`` of a segment returns its future's
    result through ``wait(future)`` (default ``future.result()``; a caller may poll it to enforce a
    time limit) and re-raises a worker's exception. ``skip(segment)`` true: no features wanted (the
    caller will not ask). At most ``in_flight`` chunks are submitted and not yet yielded, so memory
    is bounded by about ``in_flight + 1`` chunks whatever the stream length; a too-short stream is
    one zero-padded segment computed here, as :func:`stream_gtzan57` does."""
    from collections import deque

    if wait is None:
        wait = lambda fut: fut.result()  # noqa: E731
    pending: deque[list[tuple[int, np.ndarray, int, Callable]]] = deque()

    def getter(fut: Any, j: int | None) -> Callable[[], dict]:
        return lambda: wait(fut) if j is None else wait(fut)[j]

    def submit_chunk(s0: int, chunk: np.ndarray, m: int) -> None:
        segs = [chunk[j * hop : j * hop + n] for j in range(m)]
        fut = submit(chunk_features, chunk, sr, n, hop, [not skip(s) for s in segs])
        pending.append([(s0 + j * hop, s, n, getter(fut, j)) for j, s in enumerate(segs)])

    buf = np.zeros(0, np.float32)
    base = nxt = 0  # nxt: the next aligned segment start not yet submitted
    span = (group - 1) * hop + n
    for block in blocks:
        block = np.asarray(block, np.float32)
        if on_block is not None:
            on_block(len(block))
        buf = np.concatenate([buf, block])
        while nxt + span <= base + len(buf):
            submit_chunk(nxt, buf[nxt - base : nxt - base + span].copy(), group)
            nxt += group * hop
            while len(pending) > in_flight:
                yield from pending.popleft()
        keep_from = min(nxt, base + len(buf) - n)  # (the last n samples: the end-aligned segment)
        if keep_from > base:
            buf, base = buf[keep_from - base :], keep_from
    total = base + len(buf)
    if total < n:  # (nothing was submitted: a chunk needs n samples)
        seg = np.concatenate([buf, np.zeros(n - len(buf), np.float32)])
        yield 0, seg, total, (lambda: K.gtzan57(seg, sr))
        return
    last = (total - n) // hop * hop  # the last aligned start
    m = (last - nxt) // hop + 1 if last >= nxt else 0
    if m:
        submit_chunk(nxt, buf[nxt - base : last + n - base].copy(), m)
    if last + n < total:
        seg = buf[len(buf) - n :].copy()
        fut = None if skip(seg) else submit(K.gtzan57, seg, sr)  # (off the frame grid)
        pending.append([(total - n, seg, n, getter(fut, None))])
    while pending:
        yield from pending.popleft()
