"""The no-music gate of ``mgr predict``: is there music in this file (or segment) at all?

A genre model answers *some* genre for any input, and a tempo estimator *some* tempo; for noise,
hum, a test tone, speech or applause both answers are meaningless. Before any genre or tempo
claim, predict measures four interpretable cues on a cheap spectrogram of the decoded samples it
already streams (:class:`GateAnalyzer`: one 1024-point FFT per 46 ms at 22.05 kHz, a few floats
per frame kept; ~2 % of a 30 s prediction's time) and refuses (``genre: null``, ``tempo_bpm:
null``, ``tags: []``, ``music: false``, reason ``"no music detected: ..."``) when they say no music:

* **tonality** (harmonic structure): how peaked a frame's spectrum is against its own local
  average, ``1 - exp(mean log r) / mean r`` with ``r = P / smooth(P)`` over 60 Hz-5.5 kHz (floored
  60 dB under the frame's peak); noise of any colour has ``r`` exponentially distributed
  (tonality ~0.43), a rich harmonic texture sits far above, a lone sine below (its spectrum is
  mostly floor). The :data:`TONAL_QUANTILE` of the sounding frames.
* **pulse** (pulse clarity, after Lartillot et al. 2008): the highest normalised autocorrelation
  of the onset envelope (log-band flux beyond a 1 dB dead zone) at lags of 0.25-1.5 s (40-240
  BPM), its 1 s trend removed; a beat makes it high, noise and speech low.
* **change** (note changes): the share of 0.5 s blocks in which the pattern of *lasting* spectral
  peaks (:data:`PEAK_RATIO`, present in two consecutive frames) moves (:data:`CHANGE_DISTANCE`);
  steady tones, hum, drones and stationary noise do not change.
* **low-energy fraction** (Scheirer & Slaney 1997): the share of frames under half the mean power
  of the second around them; speech, with its pauses, is high.

The rule (:func:`decide`; constants below, each with the calibration percentiles it sits between)
is deliberately simple so that a user can read and tune it (README, "Predicting: when the answer
is null"). ``benchmarks/gate_calibration.py`` prints the cue distributions and the rates for
generated non-music (:mod:`mgr.inference.nonmusic`: 9 kinds, 3-60 s, -40..0 dBFS) and synthetic
music (:mod:`mgr.synth`, all ten styles); ``tests/test_gate.py`` checks the rates the issue asks for
(>= 95 % of non-music refused, <= 2 % of music refused) on fresh draws.

**A held chord is not music** here: one chord sounding with no note change is a drone; neither a
genre nor a tempo describes it, so it is refused as "a steady sound". A *sequence* of chords is
music. Files shorter than :data:`MIN_JUDGE_S` are not judged (``music`` absent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: analysis frame and hop in seconds (the FFT size is the power of two nearest FRAME_S * sr)
FRAME_S = 0.046
HOP_S = 0.046
#: frames analysed together (~24 s at 22.05 kHz; :meth:`GateAnalyzer.push`)
BATCH_FRAMES = 512
#: the band the tonality and change are measured in (Hz)
F_LO, F_HI = 60.0, 5500.0
#: local average across frequency for the tonality ratio (Hz)
SMOOTH_HZ = 250.0
#: each frame's spectrum is floored this far under its peak (dB)
FLOOR_DB = -60.0
#: frames quieter than this (dBFS, frame RMS) are not "sounding" (predict's silence level)
QUIET_DBFS = -60.0
#: pulse lags (s): 40-240 BPM
PULSE_MIN_LAG_S, PULSE_MAX_LAG_S = 0.25, 1.5
#: the onset envelope must fluctuate by at least this (RMS, mean log10 band-power rise per frame)
#: to have a pulse (a steady tone's is ~1e-6, a drum hit's ~0.3)
MIN_FLUX = 0.003
#: a band's rise counts as onset only beyond this (log10 power: 1 dB); the slow phase-dependent
#: wobble of a steady tone's window side lobes (a fraction of a dB, periodic) is not a beat
ONSET_DEAD_ZONE = 0.1
#: ... and only in bands within this of the frame's loudest band (dB)
ONSET_FLOOR_DB = -40.0
#: the tonality of a stretch: this quantile of its sounding frames' (music: most frames tonal,
#: drums in between; noise: every frame ~0.4)
TONAL_QUANTILE = 0.9
#: the onset envelope's slow trend removed before the autocorrelation (s)
TREND_S = 1.0
#: a spectral peak: a bin this many times its local average (noise: exceeded by 2 % of bins) in
#: two consecutive frames (a partial lasts; in noise such a pair is rare)
PEAK_RATIO = 4.0
#: note changes: a CHANGE_BLOCK_S block "changes" when the median cosine distance between its
#: peak patterns CHANGE_LAG_S apart exceeds CHANGE_DISTANCE (also measured at 4x both, for slow
#: legato harmony)
CHANGE_LAG_S, CHANGE_BLOCK_S = 0.25, 0.5
CHANGE_DISTANCE = 0.25
#: a file shorter than this is not judged (``music`` null): a pulse or a note change needs time
MIN_JUDGE_S = 3.0
#: a segment shorter than this is judged on this much audio centred on it
MIN_CONTEXT_S = 8.0
#: a file longer than this is judged in chunks of CHUNK_S (its answer: most chunks)
CHUNK_S = 30.0

# ---- the decision rule (decide()). Set from benchmarks/gate_calibration.py --seed 4 (50 per kind)
# and --seed 5 (40 per kind): 810 non-music clips of 9 kinds and 90 music clips of all 10 styles,
# 3-60 s, -40..0 dBFS, their evidence dumped (--dump) and the rule re-decided over a grid of
# constants, together with the 240 clips of the built-in synthetic set (8 s each, its own
# production): the values below refuse 99.5 % of the non-music and 0 of 90 / 4 of 240 music clips
# (a plateau: lower BEAT_TONALITY lets held chords and hum through, higher refuses sparse hip-hop);
# percentiles quoted from the seed-4 draw.
#: without a beat, note changes in at least this share of 0.5 s blocks (music's 5th percentile
#: 0.66-0.86; speech-like babble's 95th 0.33-0.37; tones, hum, noise and applause ~0)
MIN_CHANGE = 0.5
#: ... with a beat, at least this (a riff over a held chord changes little: sparse 8 s hip-hop
#: clips measure 0.1-0.2; a held chord's beating or hum's harmonics: ~0)
MIN_CHANGE_BEAT = 0.1
#: a beat: pulse clarity at least this (music's 5th percentile 0.47; noise and applause's 95th
#: percentile <= 0.33, speech's 0.36; hum's beating reaches 0.99, hence BEAT_TONALITY)
STRONG_PULSE = 0.4
#: ... over a harmonic texture at least this tonal (music's 5th percentile 0.55-0.62; noise
#: 0.42-0.44; hum 0.25-0.52, but hum's peaks do not move)
BEAT_TONALITY = 0.48
#: without a beat, tonality at least this (beat-less synthetic music: 0.85-0.95) ...
MIN_TONALITY = 0.65
#: ... and at most this share of low-energy frames (Scheirer & Slaney's speech cue: speech-like
#: babble's median 0.55, its note changes mostly under MIN_CHANGE too; music's median 0.25)
MAX_LOW_ENERGY = 0.5


@dataclass
class Evidence:
    """What the gate measured over a stretch of audio (all in 0..1; ``None``: nothing sounding)."""

    tonality: float
    pulse: float
    change: float
    low_energy: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in vars(self).items()}


class GateAnalyzer:
    """Per-frame gate quantities of a streamed signal: ``push(samples)`` block by block (any block
    size, in order), then :meth:`evidence` over any frame range. Keeps five floats per frame
    (~0.9 MB an hour) and at most :data:`BATCH_FRAMES` frames of samples not yet analysed (~2 MB)."""

    def __init__(self, sr: int):
        self.sr = int(sr)
        self.n_fft = 1 << int(round(math.log2(FRAME_S * self.sr)))
        self.hop = max(1, int(round(HOP_S * self.sr)))
        self.fps = self.sr / self.hop
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / self.sr)
        self.band = np.flatnonzero((freqs >= F_LO) & (freqs <= min(F_HI, 0.45 * self.sr)))
        self.smooth = max(3, int(round(SMOOTH_HZ / (self.sr / self.n_fft))) | 1)
        self.window = np.hanning(self.n_fft).astype(np.float32)
        self._window64 = self.window.astype(np.float64)
        self._band_slice = slice(int(self.band[0]), int(self.band[-1]) + 1)  # (the band's bins are consecutive)
        self._buf = np.zeros(0, np.float32)
        self._pending: list[np.ndarray] = []  # pushed blocks not yet framed
        self._pending_n = 0
        self._prev_log: np.ndarray | None = None
        self._prev_peaks: np.ndarray | None = None
        # per frame: power (mean square), tonality, onset flux; the peak-normalised tonal
        # spectrum of every CHANGE_STEP-th frame (coarse: 48 log-spaced bands)
        self._power: list[np.ndarray] = []
        self._tonal: list[np.ndarray] = []
        self._flux: list[np.ndarray] = []
        self._shape: list[np.ndarray] = []
        edges = np.geomspace(F_LO, min(F_HI, 0.45 * self.sr), 49)
        self._band_of = np.clip(np.searchsorted(edges, freqs[self.band]) - 1, 0, 47)
        # bins -> bands: the first bin of each band (the bins are in order; the lowest bands can
        # be narrower than an FFT bin and hold none), summed with np.add.reduceat
        self._starts = np.flatnonzero(np.diff(self._band_of, prepend=-1))
        self._done = 0  # frames analysed

    # ------------------------------------------------------------------ streaming
    def push(self, y: np.ndarray) -> None:
        """Add the next samples (analysed in batches of :data:`BATCH_FRAMES` frames: each batch's
        per-call NumPy overhead is paid once, not per block)."""
        y = np.array(y, np.float32)  # (a copy: the caller may reuse its buffer)
        if len(y):
            self._pending.append(y)
            self._pending_n += len(y)
        if len(self._buf) + self._pending_n >= self.n_fft + BATCH_FRAMES * self.hop:
            self._flush()

    @property
    def n_frames(self) -> int:
        """Frames pushed so far (whole frames; the pending samples analysed first)."""
        self._flush()
        return self._done

    def _flush(self) -> None:
        if not self._pending:
            return
        buf = np.concatenate([self._buf, *self._pending]) if len(self._buf) or len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_n = [], 0
        n = 1 + (len(buf) - self.n_fft) // self.hop if len(buf) >= self.n_fft else 0
        if n > 0:
            frames = np.lib.stride_tricks.as_strided(buf, shape=(n, self.n_fft),
                                                     strides=(buf.strides[0] * self.hop, buf.strides[0]))
            for s in range(0, n, 2048):
                self._frames(frames[s : s + 2048])
            buf = buf[n * self.hop :]
        self._buf = buf.copy()

    def _frames(self, frames: np.ndarray) -> None:
        ms = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / self.n_fft
        # (NumPy's float64 FFT is ~2x faster than its float32 one; the band is a contiguous slice)
        spec = np.fft.rfft(frames * self._window64, axis=1)[:, self._band_slice]
        P = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        # a floor FLOOR_DB under the frame's peak: window side lobes and dither below it do not count
        P += np.float32(10 ** (FLOOR_DB / 10)) * P.max(axis=1, keepdims=True) + np.float32(1e-20)
        # tonality: spectral flatness of P against its local average across frequency
        k = self.smooth  # the moving average across frequency (edges: nearest), in float64 sums
        cs = np.cumsum(np.pad(P, ((0, 0), (k // 2 + 1, k // 2)), mode="edge"), axis=1, dtype=np.float64)
        local = ((cs[:, k:] - cs[:, :-k]) / k).astype(np.float32)
        r = P / local
        flat = np.exp(np.mean(np.log(r), axis=1, dtype=np.float64)) / np.mean(r, axis=1, dtype=np.float64)
        self._tonal.append((1.0 - flat).astype(np.float32))
        # onset flux: positive log-spectral difference (in 48 bands), mean over bands
        bands = np.add.reduceat(P, self._starts, axis=1)
        logb = np.log10(np.maximum(bands, 10 ** (ONSET_FLOOR_DB / 10) * bands.max(axis=1, keepdims=True)) + 1e-30)
        prev = self._prev_log if self._prev_log is not None else logb[:1]
        d = np.diff(np.concatenate([prev, logb]), axis=0)
        self._flux.append(np.maximum(d - ONSET_DEAD_ZONE, 0.0).mean(axis=1).astype(np.float32))
        self._prev_log = logb[-1:]
        # where the spectral peaks are (per band, the number of bins PEAK_RATIO over their local
        # average), for note changes: where the peaks are, not how loud (beating moves no peak)
        peaks = r > PEAK_RATIO
        prev_peaks = np.concatenate([self._prev_peaks if self._prev_peaks is not None else peaks[:1], peaks[:-1]])
        self._prev_peaks = peaks[-1:]
        stable = (peaks & prev_peaks).astype(np.float32)  # a partial lasts; a noise peak does not
        self._shape.append(np.add.reduceat(stable, self._starts, axis=1))
        self._power.append(ms)
        self._done += len(frames)

    # ------------------------------------------------------------------ evidence
    def frame_of(self, seconds: float) -> int:
        return int(round(seconds * self.fps))

    def _cat(self, parts: list[np.ndarray]) -> np.ndarray:
        if len(parts) > 1:  # collapse as we go (one array each)
            parts[:] = [np.concatenate(parts)]
        return parts[0] if parts else np.zeros(0)

    def evidence(self, start: int = 0, end: int | None = None) -> Evidence | None:
        """The gate's :class:`Evidence` over frames ``[start, end)`` (``None``: nothing sounding)."""
        n_frames = self.n_frames
        end = n_frames if end is None else min(int(end), n_frames)
        start = max(0, int(start))
        power = self._cat(self._power)[start:end]
        if len(power) < 8:
            return None
        sounding = power > 10 ** (QUIET_DBFS / 10)
        if not sounding.any():
            return None
        tonal = self._cat(self._tonal)[start:end]
        flux = self._cat(self._flux)[start:end].astype(np.float64)
        shape = self._cat(self._shape)[start:end]
        tonality = float(np.quantile(tonal[sounding], TONAL_QUANTILE))
        return Evidence(tonality, self._pulse(flux), self._change(shape, sounding), self._low_energy(power),
                        len(power) / self.fps)

    def _pulse(self, flux: np.ndarray) -> float:
        n = len(flux)
        lo, hi = int(round(PULSE_MIN_LAG_S * self.fps)), int(round(PULSE_MAX_LAG_S * self.fps))
        hi = min(hi, n // 2)
        if hi <= lo:
            return 0.0
        w = max(3, int(round(TREND_S * self.fps)) | 1)
        trend = np.convolve(np.pad(flux, w // 2, mode="edge"), np.ones(w) / w, mode="valid")
        x = flux - trend
        x = x - x.mean()
        denom = float(np.dot(x, x))
        if denom <= n * MIN_FLUX ** 2:  # a steady sound: no onsets to have a pulse
            return 0.0
        m = 1 << int(math.ceil(math.log2(2 * n)))
        F = np.fft.rfft(x, m)
        ac = np.fft.irfft(F.real ** 2 + F.imag ** 2, m)[: hi + 1]
        ac = ac / denom * n / (n - np.arange(hi + 1))  # unbiased: long lags are not penalised
        return float(np.clip(ac[lo : hi + 1].max(), 0.0, 1.0))

    def _change(self, shape: np.ndarray, sounding: np.ndarray) -> float:
        """The larger of the share of changing blocks at two time scales: notes (CHANGE_LAG_S lag,
        CHANGE_BLOCK_S blocks) and chords (four times both: slow legato harmony)."""
        return max(self._change_at(shape, sounding, CHANGE_LAG_S, CHANGE_BLOCK_S),
                   self._change_at(shape, sounding, 4 * CHANGE_LAG_S, 4 * CHANGE_BLOCK_S))

    def _change_at(self, shape: np.ndarray, sounding: np.ndarray, lag_s: float, block_s: float) -> float:
        step = max(1, int(round(lag_s * self.fps)))
        block = max(1, int(round(block_s * self.fps)))
        n = len(shape)
        if n <= step:
            return 0.0
        a, b = shape[:-step].astype(np.float64), shape[step:].astype(np.float64)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        ok = (na > 0) & (nb > 0) & sounding[:-step] & sounding[step:]
        dist = np.ones(len(a))
        dist[ok] = 1.0 - np.sum(a[ok] * b[ok], axis=1) / (na[ok] * nb[ok])
        dist[~ok] = 0.0
        k = len(dist) // block
        if k == 0:
            return float(dist.max() > CHANGE_DISTANCE)
        blocks = dist[: k * block].reshape(k, block)
        # a block changes when its *median* distance is large: a note change lasts, a click or a
        # syllable's formant jump does not (and pauses, not sounding, count as no change)
        return float(np.mean(np.median(blocks, axis=1) > CHANGE_DISTANCE))

    def _low_energy(self, power: np.ndarray) -> float:
        w = max(3, int(round(self.fps)) | 1)
        mean = np.convolve(np.pad(power, w // 2, mode="edge"), np.ones(w) / w, mode="valid")
        sounding = mean > 10 ** (QUIET_DBFS / 10)
        if not sounding.any():
            return 0.0
        return float(np.mean(power[sounding] < 0.5 * mean[sounding]))


def decide(ev: Evidence | None) -> str | None:
    """``None`` when ``ev`` shows music, else the reason (``"no music detected: ..."``).

    Music is either a beat (:data:`STRONG_PULSE`) over a harmonic texture (:data:`BEAT_TONALITY`)
    whose notes move (:data:`MIN_CHANGE_BEAT`), or, without a beat, clearly harmonic sound
    (:data:`MIN_TONALITY`) whose notes move more (:data:`MIN_CHANGE`) without the pauses of
    speech (:data:`MAX_LOW_ENERGY`). A steady tone, hum, drone or stationary noise has no note
    changes (the lasting spectral peaks do not move); the slow beating of a held chord or of hum
    harmonics can look like a pulse, but not over a rich harmonic texture with moving notes."""
    if ev is None:
        return None  # (nothing to judge: silence, or too short)
    beat = ev.pulse >= STRONG_PULSE and ev.tonality >= BEAT_TONALITY and ev.change >= MIN_CHANGE_BEAT
    harmonic = ev.tonality >= MIN_TONALITY and ev.low_energy <= MAX_LOW_ENERGY and ev.change >= MIN_CHANGE
    if beat or harmonic:
        return None
    if ev.change < MIN_CHANGE_BEAT:
        why = f"a steady sound (tone, hum, drone or noise): no note changes ({ev.change:.2f} < {MIN_CHANGE_BEAT:g})"
    elif ev.tonality < BEAT_TONALITY:
        why = f"no harmonic texture (tonality {ev.tonality:.2f} < {BEAT_TONALITY:g})"
    elif ev.low_energy > MAX_LOW_ENERGY and ev.pulse < STRONG_PULSE:
        why = (f"speech-like: pauses (low-energy frames {ev.low_energy:.2f} > {MAX_LOW_ENERGY:g}) and no beat "
               f"(pulse {ev.pulse:.2f} < {STRONG_PULSE:g})")
    else:
        why = (f"no beat (pulse {ev.pulse:.2f} < {STRONG_PULSE:g}) and too little harmony or movement "
               f"(tonality {ev.tonality:.2f}, note changes {ev.change:.2f})")
    return "no music detected: " + why


def verdict(an: GateAnalyzer, start: int = 0, end: int | None = None) -> tuple[str | None, Evidence | None]:
    """The gate's answer over frames ``[start, end)`` of ``an``: ``(reason or None, evidence)``.

    A stretch shorter than :data:`MIN_CONTEXT_S` is judged on that much audio centred on it (a
    3 s model window is too short for a pulse); one longer than ``1.5 * CHUNK_S`` is judged in
    :data:`CHUNK_S` chunks and is music when at least half of its sounding chunks are."""
    if an.n_frames < an.frame_of(MIN_JUDGE_S) - 1:  # too short to judge: no verdict
        return None, None
    end = an.n_frames if end is None else min(int(end), an.n_frames)
    start = max(0, int(start))
    ctx = an.frame_of(MIN_CONTEXT_S)
    if end - start < ctx:
        mid = (start + end) // 2
        start = max(0, min(mid - ctx // 2, an.n_frames - ctx))
        end = min(an.n_frames, start + ctx)
    chunk = an.frame_of(CHUNK_S)
    if end - start <= 1.5 * chunk:
        ev = an.evidence(start, end)
        return decide(ev), ev
    bounds = list(range(start, end - chunk // 2, chunk)) + [end]
    bounds = bounds if bounds[-2] < end else bounds[:-1]
    results = [(decide(e), e) for e in (an.evidence(a, b) for a, b in zip(bounds[:-1], bounds[1:])) if e is not None]
    if not results:
        return None, None
    refused = [r for r in results if r[0] is not None]
    if 2 * len(refused) <= len(results):
        return None, next((e for r, e in results if r is None), None)
    return (f"{refused[0][0]} (in {len(refused)} of {len(results)} {CHUNK_S:g} s stretches)", refused[0][1])
