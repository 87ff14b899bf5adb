"""The predictors: a loaded artifact that turns one audio file into a
:class:`~mgr.inference.output.Prediction`.

* :class:`DeepPredictor`: streamed log-mel frames -> model windows -> the artifact's
  ``model.onnx`` (:func:`mgr.models.deep.load`, the object evaluate scores).
* :class:`TaggerPredictor`: a built-in pretrained tagger (musicnn) on the same stream.
* :class:`ClassicalPredictor`: handcrafted features -> the classical artifact's ``model.onnx``
  (:func:`mgr.models.classical_artifact.load`); a long file's streamed ``gtzan57`` segments are
  computed in chunks on worker processes (:func:`_parallel_gtzan57`).
* Segments are combined by ``--aggregate``: ``mean`` probability, or ``vote`` with evaluate's
  rule (:func:`mgr.evaluation.metrics.vote`; the reported probabilities are the vote fractions).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mgr.audio.decode import load_audio, stream_blocks
from mgr.audio.windows import window_starts, windows
from mgr.cards import read_card
from mgr.dsp import gtzan_stream
from mgr.dsp import kernels as _fastdsp
from mgr.errors import ArtifactError, AudioError
from mgr.evaluation.metrics import vote
from mgr.features.tables import extract_features
from mgr.inference.catalog import training_data
from mgr.inference.abstain import apply_gate, judge_distribution
from mgr.inference.gate import GateAnalyzer
from mgr.inference.inputs import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_TAG_THRESHOLD,
    MIN_DURATION_S,
    SILENCE_DBFS,
    UsageError,
    _Budget,
    check_file,
    check_options,
)
from mgr.inference.output import Prediction, Segment
from mgr.inference.runtime import OnnxModel
from mgr.inference.streaming import (
    EnergyTracker,
    StreamingFrontEnd,
    WindowStream,
    _decode_whole,
    _decoder,
    _OnsetTracker,
    is_silent,
    spectrogram_frames,
    stream_segments,
)
from mgr.io import n_workers, process_pool
from mgr.models import classical_artifact, deep
from mgr.models.distribution import Distribution, band_stats
from mgr.tempo.estimate import TempoChoice

BATCH_WINDOWS = 16  # model windows per forward pass
#: ... for musicnn backbones (built-in taggers, transfer models): their wide front-end convolutions
#: hold ~60 MB of activations per window (16 windows: ~1 GB peak RSS, 2: ~230 MB; same answers)
MUSICNN_BATCH_WINDOWS = 2


class Predictor:
    """A loaded artifact that turns one audio file into a :class:`Prediction`."""

    name: str
    kind: str
    labels: list[str]
    runtime: str
    card: dict

    #: what the model was trained on (:func:`training_data`), ``None`` when unknown
    trained_on: dict | None = None
    #: whether the no-music gate runs when ``gate`` is not given (tests of other mechanics whose
    #: inputs are test tones turn it off here)
    GATE_DEFAULT = True

    def __init__(self, *, top_k: int = 3, window_s: float | None = None, overlap: float = 0.5,
                 aggregate: str = "mean", tag_threshold: float = DEFAULT_TAG_THRESHOLD,
                 max_duration_s: float | None = DEFAULT_MAX_DURATION_S, time_limit_s: float | None = None,
                 min_confidence: float | None = None, timeline: bool = False, gate: bool | None = None):
        check_options(top_k=top_k, window_s=window_s, overlap=overlap, aggregate=aggregate,
                      tag_threshold=tag_threshold, max_duration_s=max_duration_s, time_limit_s=time_limit_s,
                      min_confidence=min_confidence)
        self.min_confidence = None if min_confidence is None else float(min_confidence)
        self.timeline = bool(timeline)
        # the no-music gate (mgr.inference.gate; --no-music-gate: off; None: GATE_DEFAULT)
        self.gate = self.GATE_DEFAULT if gate is None else bool(gate)
        self.top_k, self.overlap = int(top_k), float(overlap)
        self.window_s = None if window_s is None else float(window_s)
        self.aggregate, self.tag_threshold = aggregate, float(tag_threshold)
        self.max_duration_s = None if max_duration_s is None else float(max_duration_s)
        self.time_limit_s = None if time_limit_s is None else float(time_limit_s)

    def _budget(self) -> _Budget:
        return _Budget(self.max_duration_s, self.time_limit_s)

    def _open(self, path: Path) -> tuple[int, int, int, _Budget]:
        """Header checks of one file: ``(frames, sample rate, channels, budget)``; a file shorter
        than :data:`MIN_DURATION_S` is refused (a header declaring no length is decoded anyway)."""
        frames, file_sr, channels = check_file(path, self.max_duration_s)
        duration = frames / file_sr  # 0 when FFmpeg's container declares none
        if frames and duration < MIN_DURATION_S:
            raise AudioError(f"too short ({duration:.2f} s; at least {MIN_DURATION_S} s needed)")
        return frames, file_sr, channels, self._budget()

    def predict_file(self, path: Path) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    # shared helpers
    def _combine(self, seg_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Segment probabilities -> ``(probs, rank)`` for :meth:`_top`: ``mean``: the mean
        probability (as evaluate's track level); ``vote``: evaluate's vote rule
        (:func:`mgr.evaluation.metrics.vote`: most votes, then higher mean probability, then lower
        index) ranks the labels and the reported probabilities are the vote fractions."""
        if self.aggregate == "vote" and len(seg_probs) > 1:
            _, rank = vote(seg_probs)
            fractions = (seg_probs.argmax(axis=1)[:, None] == np.arange(seg_probs.shape[1])).mean(axis=0)
            return fractions, rank
        return seg_probs.mean(axis=0), None

    def _confident(self, top: list[tuple[str, float]]) -> tuple[str | None, str | None]:
        """``(genre, reason)``: the top label, or ``None`` and why when its probability is below
        ``--min-confidence``."""
        if not top:
            return None, None
        if self.min_confidence is not None and top[0][1] < self.min_confidence:
            return None, (f"unknown: top probability {top[0][1]:.2f} ({top[0][0]}) is below "
                          f"--min-confidence {self.min_confidence:g}")
        return top[0][0], None

    def _silent_prediction(self, path: Path, warnings: list[str], n_windows: int, duration: float,
                           segments: list[Segment] | None) -> Prediction:
        reason = f"silence: no signal above {SILENCE_DBFS:g} dBFS"
        warnings.append(reason)
        return Prediction(str(path), None, [], None, "silence", [], warnings, n_windows, duration, reason,
                          segments if self.timeline else None)

    def _analyzer(self, sr: int) -> GateAnalyzer | None:
        return GateAnalyzer(sr) if self.gate else None

    def _gated(self, pred: Prediction, an: GateAnalyzer | None, offset_s: float = 0.0) -> Prediction:
        return apply_gate(pred, an, offset_s)  # (mgr.inference.abstain)

    def _distribution(self, card: dict, where: Path) -> Distribution | None:
        """The card's training distribution (:mod:`mgr.models.distribution`), ``None`` if it has none."""
        rec = card.get("distribution")
        return None if rec is None else Distribution(rec, f"{where / 'model.json'}")

    def _judge_distribution(self, pred: Prediction, dist: Distribution | None, score: float | None) -> Prediction:
        return judge_distribution(pred, dist, score, self.min_confidence)  # (mgr.inference.abstain)

    def _top(self, probs: np.ndarray, rank: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The ``--top-k`` labels with their probabilities, best first (ordered by ``rank`` when
        given, else by ``probs``; ties -> lower index)."""
        if not np.all(np.isfinite(probs)):  # (the ONNX runtime refuses these already)
            raise AudioError("model output is not finite (NaN/inf) for this file")
        order = np.argsort(-(probs if rank is None else rank), kind="stable")[: self.top_k]
        return [(self.labels[i], float(round(probs[i], 6))) for i in order]



# --------------------------------------------------------------------------------- deep
class DeepPredictor(Predictor):
    kind = "deep"

    def __init__(self, model_dir: Path, card: dict, **kw: Any):
        super().__init__(**kw)
        self.model_dir, self.card = model_dir, card
        for key in ("frontend", "window_frames", "outputs"):
            if key not in card:
                raise ArtifactError(f"{model_dir / 'model.json'}: missing {key!r}")
        self.name = str(card.get("name", model_dir.name))
        self.labels = list(card["labels"])
        self.frontend = dict(card["frontend"])
        self.window_frames = int(card["window_frames"])
        self.outputs = list(card["outputs"])
        tb = card.get("tempo_bins") or {}
        self.tempo_centres = list(tb.get("centres", []))
        self.tempo_log = tb.get("kind") == "log"
        self.tag_vocab = list(card.get("tag_vocab") or [])
        self.hop_s = float(self.frontend.get("hop", self.frontend.get("hop_length"))) / float(self.frontend["sr"])
        musicnn = self.frontend.get("preset") == "musicnn" or card.get("kind") == "pretrained"
        self.batch_windows = MUSICNN_BATCH_WINDOWS if musicnn else BATCH_WINDOWS
        self.window_s_model = self.window_frames * self.hop_s
        StreamingFrontEnd(self.frontend)  # validate the front end before loading anything
        self.dist = self._distribution(card, model_dir)
        if self.dist is not None and self.dist.dims != 2 * int(self.frontend["n_mels"]):
            raise ArtifactError(f"{model_dir / 'model.json'}: distribution has {self.dist.dims} dimensions, "
                                f"not 2 x {self.frontend['n_mels']} mel bands")
        if self.window_s is not None and int(round(self.window_s / self.hop_s)) < self.window_frames:
            raise UsageError(
                f"--window {self.window_s:g} s is shorter than the model's window ({self.window_s_model:.2f} s)"
            )
        self._load_model()

    def _load_model(self) -> None:
        # the card, then model.onnx (sha256-checked) on onnxruntime: the very object evaluate scores
        self.model = deep.load(self.model_dir)
        self.runtime = "onnx"
        want = (int(self.frontend["n_mels"]), self.window_frames)
        if (self.model.n_mels, self.model.window_frames) != want:
            raise ArtifactError(f"{self.model_dir}: model input {self.model.input_shape} does not match the front end {want}")

    def _run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.predict_windows(X, batch_size=self.batch_windows)

    def predict_file(self, path: Path) -> Prediction:
        frames_total_hint, file_sr, _, budget = self._open(path)
        warnings: list[str] = []
        L = self.window_frames
        seg_frames = L if self.window_s is None else max(1, int(round(self.window_s / self.hop_s)))
        seg_hop = max(1, int(round(seg_frames * (1.0 - self.overlap))))
        sub_hop = max(1, int(round(L * (1.0 - self.overlap))))
        rows = int(self.frontend["n_mels"])
        ws = WindowStream(seg_frames, seg_hop, rows)
        # per segment (in time order): genre probs (mean over its model windows), tempo-bin
        # probs and tag scores (means), its number of model windows
        seg_genre: list[np.ndarray] = []
        seg_tempo: list[np.ndarray] = []
        seg_tags: list[np.ndarray] = []
        seg_nwin: list[int] = []
        pad_value = float(self.frontend.get("floor_db", -100.0))
        total = 0

        def run_segments(segs: list[np.ndarray]) -> None:
            if not segs:
                return
            wins, owner = [], []
            for j, seg in enumerate(segs):
                starts = window_starts(len(seg), L, sub_hop) if len(seg) > L else [0]
                wins.extend(seg[s : s + L].T for s in starts)
                owner.extend([j] * len(starts))
            X = np.stack(wins)  # all model windows of these segments in one batched run
            budget.check()
            out = self._run(X)
            owner_a = np.asarray(owner)
            use_tempo = "tempo" in out and self.tempo_centres
            for j in range(len(segs)):
                m = owner_a == j
                seg_nwin.append(int(m.sum()))
                if "genre" in out:
                    seg_genre.append(np.asarray(out["genre"], np.float64)[m].mean(axis=0))
                if use_tempo:
                    seg_tempo.append(np.asarray(out["tempo"], np.float64)[m].mean(axis=0))
                if "tags" in out:
                    seg_tags.append(np.asarray(out["tags"], np.float64)[m].mean(axis=0))

        onset = _OnsetTracker(self.frontend) if "tempo" not in self.outputs else None
        fe = StreamingFrontEnd(self.frontend)
        energy = EnergyTracker(fe.hop)
        an = self._analyzer(fe.sr)
        pending: list[np.ndarray] = []
        band_sum = np.zeros(rows)
        band_sumsq = np.zeros(rows)
        for frames in spectrogram_frames(path, self.frontend, budget=budget, energy=energy, fe=fe, gate=an):
            total += len(frames)
            if self.dist is not None:  # the out-of-distribution check's per-band statistics
                f64 = frames.astype(np.float64)
                band_sum += f64.sum(axis=0)
                band_sumsq += np.einsum("ij,ij->j", f64, f64)
            if onset is not None:
                onset.push(frames)
            pending.extend(ws.push(frames))
            if len(pending) >= max(1, self.batch_windows // max(1, seg_frames // L)):
                run_segments(pending)
                pending = []
        decoded_s = fe.n_samples / fe.sr
        if decoded_s < MIN_DURATION_S:  # the header (an estimate for FFmpeg's formats) said more
            raise AudioError(f"too short ({decoded_s:.2f} s decoded; at least {MIN_DURATION_S} s needed)")
        if total < seg_frames:
            warnings.append(
                f"shorter than one window ({decoded_s:.2f} s < {seg_frames * self.hop_s:.2f} s): padded with silence"
            )
        pending.extend(ws.finish(total, pad_value))
        run_segments(pending)
        n_win = sum(seg_nwin)

        # silence: a segment whose RMS is below SILENCE_DBFS has no say; none left -> no answer
        ms = energy.per_frame()
        starts = ws.starts
        ends = [min(st + seg_frames, total) for st in starts]
        silent = [is_silent(float(ms[a:b].mean()) if b > a and len(ms[a:b]) else 0.0) for a, b in zip(starts, ends)]
        keep = [i for i, q in enumerate(silent) if not q]
        segments = self._segments(starts, ends, silent, seg_genre, seg_tempo, seg_tags, onset) if self.timeline else None
        if not keep:
            return self._gated(self._silent_prediction(path, warnings, n_win, total * self.hop_s, segments), an)
        w = np.asarray([seg_nwin[i] for i in keep], np.float64)
        top: list[tuple[str, float]] = []
        if seg_genre:  # (a tagger has no genre head)
            top = self._top(*self._combine(np.stack([seg_genre[i] for i in keep])))
        if seg_tempo:
            probs = np.average(np.stack([seg_tempo[i] for i in keep]), axis=0, weights=w)
            bpm = float(deep.bpm_from_probs(probs, self.tempo_centres, log=self.tempo_log))
            tempo_src = "model"
        else:
            bpm = onset.tempo() if onset is not None else None
            tempo_src = "dsp"
        bpm, tempo_src = _finite_tempo(bpm, tempo_src, warnings)
        tags: list[tuple[str, float]] = []
        if seg_tags and self.tag_vocab:
            scores = np.average(np.stack([seg_tags[i] for i in keep]), axis=0, weights=w)
            tags, tag_top = self._tags(scores)
            if not seg_genre:  # a tagger: its top-k are its best tags, whatever the threshold
                top = tag_top
        genre, reason = self._confident(top) if seg_genre else (None, None)
        if reason:
            warnings.append(reason)
        pred = Prediction(str(path), genre, top, bpm, tempo_src, tags, warnings, n_win, total * self.hop_s, reason,
                          segments)
        pred = self._gated(pred, an)
        if self.dist is not None and seg_genre:
            pred = self._judge_distribution(pred, self.dist, self.dist.score(band_stats(band_sum, band_sumsq, total)))
        return pred

    def _tags(self, scores: np.ndarray) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """(tags at or above the threshold, the top-k tags) of mean tag scores."""
        if not np.all(np.isfinite(scores)):
            raise AudioError("model output is not finite (NaN/inf) for this file")
        order = np.argsort(-scores, kind="stable")
        tags = [(self.tag_vocab[i], round(float(scores[i]), 4)) for i in order if scores[i] >= self.tag_threshold]
        return tags, [(self.tag_vocab[i], round(float(scores[i]), 6)) for i in order[: self.top_k]]

    def _segments(self, starts, ends, silent, seg_genre, seg_tempo, seg_tags, onset) -> list[Segment]:
        """The ``--timeline``: one :class:`Segment` per segment the answer aggregates."""
        env = onset.envelope() if onset is not None else None
        out = []
        for i, (a, b) in enumerate(zip(starts, ends)):
            t0, t1 = round(a * self.hop_s, 3), round(max(b, a + 1) * self.hop_s, 3)
            if silent[i]:
                out.append(Segment(t0, t1, None, [], None, [], True, f"silence: no signal above {SILENCE_DBFS:g} dBFS"))
                continue
            top: list[tuple[str, float]] = []
            if seg_genre:
                top = self._top(seg_genre[i])
            if seg_tempo:
                bpm = float(deep.bpm_from_probs(seg_tempo[i], self.tempo_centres, log=self.tempo_log))
            else:
                bpm = onset.tempo_between(env, a, b) if onset is not None else None
            bpm = bpm if bpm is not None and math.isfinite(bpm) and bpm > 0 else None
            tags: list[tuple[str, float]] = []
            if seg_tags and self.tag_vocab:
                tags, tag_top = self._tags(seg_tags[i])
                if not seg_genre:
                    top = tag_top
            genre, reason = self._confident(top) if seg_genre else (None, None)
            out.append(Segment(t0, t1, genre, top, None if bpm is None else round(bpm, 2), tags, False, reason))
        return out


def _finite_tempo(bpm: float | None, source: str, warnings: list[str]) -> tuple[float | None, str]:
    """A non-finite (or non-positive) tempo estimate becomes ``None`` with a warning saying why."""
    if bpm is None:
        return None, source
    if not math.isfinite(bpm) or bpm <= 0:
        warnings.append(f"tempo not estimated ({source} estimate was {bpm!r})")
        return None, "none"
    return float(bpm), source


# ---------------------------------------------------------------------------- classical
class ClassicalPredictor(Predictor):
    kind = "classical"

    #: worker processes for a long file's ``gtzan57`` segments (:meth:`_segment_workers`; ``None``:
    #: one per CPU, 1: in-process)
    segment_workers: int | None = None

    def __init__(self, model_dir: Path, card: dict, **kw: Any):
        super().__init__(**kw)
        self.model_dir, self.card = model_dir, card
        # the card, then model.onnx (sha256-checked) on onnxruntime: the very object evaluate
        # scores; neither scikit-learn nor XGBoost is imported
        self.art = classical_artifact.load(model_dir)
        self.runtime = "onnx"
        ccard = self.art.card
        self.name = str(ccard.get("name", model_dir.name))
        self.labels = list(ccard["labels"])
        self.feature_set = ccard.get("feature_set") or "gtzan57"
        self.columns = list(ccard["feature_columns"])
        audio = card.get("audio") or {}
        self.sr = int(audio.get("sample_rate", audio.get("sr", 22050)))
        self.audio = audio
        self.dist = self._distribution(ccard, model_dir)
        if self.dist is not None and self.dist.dims != len(self.columns):
            raise ArtifactError(f"{model_dir / 'model.json'}: distribution has {self.dist.dims} dimensions, "
                                f"the model reads {len(self.columns)} features")

    def predict_file(self, path: Path) -> Prediction:
        frames, file_sr, channels, budget = self._open(path)
        duration = frames / file_sr  # 0 when FFmpeg's container declares none
        offset = float(self.audio.get("offset_s", 0.0) or 0.0)
        crop = self.audio.get("duration_s")
        pad = bool(self.audio.get("pad", True))
        seg_s = self.window_s
        if seg_s is None and crop is None and (
            not frames or duration > CLASSICAL_WHOLE_MAX_S or frames * channels > CLASSICAL_WHOLE_MAX_SAMPLES
        ):  # a long (or very wide, or undeclared) file: streamed segments the size of a training clip
            seg_s = CLASSICAL_SEGMENT_S
        warnings: list[str] = []
        # (start sample, segment, samples of real signal in it)
        if seg_s is None:  # the whole (or card-cropped) file, as in training
            if crop is None and not offset and frames and _decoder(path) == "av":
                y = _decode_whole(path, self.sr, budget, duration)  # bounded by what the header declared
            else:
                y = load_audio(path, sr=self.sr, offset_s=offset, duration_s=crop, pad=pad)
            real = len(y) if crop is None else min(len(y), max(0, int(round((duration - offset) * self.sr))))
            segs: Iterable[tuple] = [(0, y, real)]
        else:
            n = int(round(seg_s * self.sr))
            hop = max(1, int(round(n * (1.0 - self.overlap))))
            if frames and duration < seg_s:
                warnings.append(f"shorter than one window ({duration:.2f} s < {seg_s:g} s): padded with silence")
            if crop is not None or offset:
                y = load_audio(path, sr=self.sr, offset_s=offset, duration_s=crop, pad=pad)
                st = window_starts(len(y), n, hop) if len(y) > n else [0]
                segs = ((int(a), w, min(n, len(y) - int(a))) for a, w in zip(st, windows(y, n, hop=hop)))
            elif self.feature_set == "gtzan57" and 1 + n // gtzan_stream.H >= gtzan_stream.MIN_FRAMES:
                # streamed, the STFT and HPSS computed once for the overlapping segments: their
                # starts on the 512-sample frame grid (the hop rounded down to it: no gaps)
                hop = max(gtzan_stream.H, hop // gtzan_stream.H * gtzan_stream.H)
                blocks = stream_blocks(path, self.sr, block_s=10.0)
                workers = self._segment_workers(duration if frames else 0.0, n, hop)
                if workers > 1:  # a long file: chunks of segments on worker processes
                    segs = _parallel_gtzan57(blocks, self.sr, n, hop, workers, budget)
                else:
                    segs = gtzan_stream.stream_gtzan57(blocks, self.sr, n, hop,
                                                       on_block=lambda k: budget.add(k, self.sr))
            else:  # streamed: memory is bounded by one segment whatever the file length
                segs = stream_segments(path, self.sr, n, hop, budget=budget, with_starts=True)
        rows, tempos, starts, ends, silent = [], [], [], [], []
        decoded = 0
        an = self._analyzer(self.sr)
        try:
            for start, seg, real, *shared in segs:
                budget.check()
                if an is not None and start + real > decoded:  # the gate sees each sample once, in order
                    an.push(seg[max(0, decoded - start) : real])
                starts.append(start)
                ends.append(start + max(real, 1))
                decoded = max(decoded, start + real)
                q = _silent_samples(seg[:real])
                silent.append(q)
                if q:  # no features for silence (they are not finite there): no say in the answer
                    continue
                feats = shared[0]() if shared else extract_features(seg, self.sr, self.feature_set)
                rows.append([feats[c] for c in self.columns])
                tempos.append(float(feats["tempo"]) if "tempo" in feats else _fastdsp.tempo(seg, self.sr))
        finally:  # (a worker pool is shut down now, also on an error or Ctrl-C)
            close = getattr(segs, "close", None)
            if close is not None:
                close()
        if not frames:
            duration = decoded / self.sr
            if duration < MIN_DURATION_S:
                raise AudioError(f"too short ({duration:.2f} s decoded; at least {MIN_DURATION_S} s needed)")
        seg_probs = np.zeros((0, len(self.labels)))
        if rows:
            X = np.asarray(rows, dtype=np.float64)
            if not np.all(np.isfinite(X)):
                raise AudioError("features are not finite (silent or corrupt audio?)")
            seg_probs = np.asarray(self.art.predict_proba(X), np.float64)
        segments = None
        if self.timeline:
            segments, k = [], 0
            for a, b, q in zip(starts, ends, silent):
                t0, t1 = round(offset + a / self.sr, 3), round(offset + b / self.sr, 3)
                if q:
                    segments.append(Segment(t0, t1, None, [], None, [], True,
                                            f"silence: no signal above {SILENCE_DBFS:g} dBFS"))
                    continue
                top_i = self._top(seg_probs[k])
                g, r = self._confident(top_i)
                t = tempos[k]
                segments.append(Segment(t0, t1, g, top_i, round(t, 2) if t and math.isfinite(t) and t > 0 else None,
                                        [], False, r))
                k += 1
        if not rows:
            return self._gated(self._silent_prediction(path, warnings, len(starts), duration, segments), an, offset)
        top = self._top(*self._combine(seg_probs))
        # one segment: its tempo (= librosa.feature.tempo of the clip); several: their median
        tempo_values = [t for t in tempos if t and np.isfinite(t)]
        bpm = float(np.median(tempo_values)) if tempo_values else None
        bpm, tempo_src = _finite_tempo(bpm, "dsp", warnings)
        genre, reason = self._confident(top)
        if reason:
            warnings.append(reason)
        pred = self._gated(Prediction(str(path), genre, top, bpm, tempo_src, [], warnings, len(starts), duration, reason,
                                      segments), an, offset)
        if self.dist is not None:  # the median over segments of their distance from the training features
            pred = self._judge_distribution(pred, self.dist, float(np.median([self.dist.score(r) for r in X])))
        return pred

    def _segment_workers(self, duration: float, n: int, hop: int) -> int:
        """Worker processes for the streamed ``gtzan57`` segments of a file of ``duration`` seconds
        (0: undeclared): :attr:`segment_workers` (``None``: one per CPU, :func:`mgr.io.n_workers`), at
        most one per chunk; 1 (in-process) for a file shorter than :data:`CLASSICAL_PARALLEL_MIN_S`
        (the pool's start-up would cost more than it saves) or inside a worker process already
        (``mgr predict --jobs`` runs files on workers: pools are not nested)."""
        import multiprocessing as mp

        if duration <= CLASSICAL_PARALLEL_MIN_S or mp.parent_process() is not None:
            return 1
        want = n_workers(self.segment_workers or 0)
        chunks = max(1, int(duration * self.sr - n) // hop // gtzan_stream.GROUP + 1)
        return max(1, min(want, chunks))



#: classical models take a file whole (as their training clips) up to this length; a longer file
#: is classified as overlapping segments of CLASSICAL_SEGMENT_S, streamed, probabilities combined
#: by ``--aggregate``, tempo = median of the segments' tempos. With ``gtzan57`` features and segments of
#: at least :data:`mgr.dsp.gtzan_stream.MIN_FRAMES` frames, the segment hop is rounded down to the
#: 512-sample frame grid and the STFT / HPSS are computed once for all segments (same features).
CLASSICAL_WHOLE_MAX_S = 60.0
CLASSICAL_SEGMENT_S = 30.0
#: ... and up to this many samples (frames x channels: 60 s of 192 kHz stereo), so a file with
#: many channels or a high rate is streamed too rather than decoded whole
CLASSICAL_WHOLE_MAX_SAMPLES = 60 * 192_000 * 2
#: ... and with ``gtzan57`` a file longer than this is split into chunks of
#: :data:`mgr.dsp.gtzan_stream.GROUP` consecutive segments whose features are computed on worker
#: processes (:func:`_parallel_gtzan57`; starting the pool costs about a second)
CLASSICAL_PARALLEL_MIN_S = 180.0
#: one BLAS / OpenMP / onnxruntime thread per worker process (the workers are the parallelism)
_ONE_THREAD = {k: "1" for k in ("MGR_ONNX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@contextmanager
def one_thread_env() -> Iterator[None]:
    """Within the block, the environment asks for one thread of each library (:data:`_ONE_THREAD`),
    so worker processes spawned meanwhile start with it; restored afterwards."""
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _silent_samples(part: np.ndarray) -> bool:
    """Whether a segment's real samples are silence (:func:`~mgr.inference.streaming.is_silent`)."""
    part = np.asarray(part, np.float64)
    return is_silent(float(np.mean(np.square(part))) if len(part) else 0.0)


def _parallel_gtzan57(blocks: Iterable[np.ndarray], sr: int, n: int, hop: int, workers: int,
                      budget: _Budget) -> Iterator[tuple[int, np.ndarray, int, Any]]:
    """The segments of :func:`mgr.dsp.gtzan_stream.stream_gtzan57`, their features computed by
    ``workers`` fresh processes (:func:`mgr.dsp.gtzan_stream.stream_gtzan57_chunked`: this process
    decodes and cuts chunks, at most ``2 * workers`` in flight). The budget applies as in-process:
    every decoded block is added, and the wait for a worker's answer checks the time limit. A
    worker's exception is re-raised here (same type and message, so the same one-line error).
    Workers are spawned (a fork would inherit this process's thread pools) with one thread of each
    library, die with this process (:func:`mgr.io.process_pool`), and are terminated when the
    generator is closed early (an error, a time limit, Ctrl-C)."""
    import multiprocessing as mp
    from concurrent.futures import TimeoutError as FutureTimeout

    def wait(fut: Any) -> Any:
        while True:
            try:
                return fut.result(timeout=0.25)
            except FutureTimeout:
                budget.check()

    before = {c.pid for c in mp.active_children()}
    ex = process_pool(workers, mp_context=mp.get_context("spawn"))
    finished = False
    try:
        with one_thread_env():  # (read by the workers as they start, on the first submits)
            yield from gtzan_stream.stream_gtzan57_chunked(
                blocks, sr, n, hop, ex.submit, _silent_samples, in_flight=2 * workers,
                on_block=lambda k: budget.add(k, sr), wait=wait)
        finished = True
    finally:
        if finished:
            ex.shutdown(wait=True)
        else:  # stop now: drop the queued chunks and end the busy workers
            procs = list((getattr(ex, "_processes", None) or {}).values())
            manager = getattr(ex, "_executor_manager_thread", None)
            ex.shutdown(wait=False, cancel_futures=True)
            procs += [c for c in mp.active_children() if c.pid not in before and c not in procs]
            for p in procs:
                if p.is_alive():
                    p.terminate()
            # the pool's manager thread reaps the workers too: wait for it, or a worker it reaped
            # first can still read as running here (both wait on the same pid)
            if manager is not None:
                manager.join(timeout=5)
            for p in procs:
                p.join(timeout=5)



class TaggerPredictor(DeepPredictor):
    """A built-in pretrained tagger (``musicnn_msd`` / ``musicnn_mtt``, :mod:`mgr.pretrained.builtin`):
    the same streamed front end and windows as a deep model, answering scored tags instead of a
    genre. Its ONNX model takes ``(n, 187, 96)`` frames-by-mels patches; outputs ``taggram``."""

    kind = "pretrained"

    def __init__(self, model_dir: Path, card: dict, **kw: Any):
        card = dict(card, outputs=["tags"], tag_vocab=list(card.get("tag_vocab") or card["labels"]))
        super().__init__(model_dir, card, **kw)

    def _load_model(self) -> None:
        file = self.card.get("onnx_file")
        if not file or not self.card.get("onnx_sha256"):
            raise ArtifactError(f"{self.model_dir / 'model.json'} names no ONNX model (rebuild it)")
        self.model = OnnxModel(self.model_dir / file, sha256=self.card["onnx_sha256"], batch_size=self.batch_windows)
        self.runtime = "onnx"

    def _run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        out = self.model.run(np.ascontiguousarray(X.transpose(0, 2, 1)), outputs=["taggram"])  # -> frames x mels
        return {"tags": out["taggram"]}


def load_predictor(model_dir: str | os.PathLike, **kw: Any) -> Predictor:
    """Check the card and load the artifact (refusing tampered/foreign ones before their code runs)."""
    model_dir = Path(model_dir)
    tempo_kw = {k: kw.pop(k) for k in ("tempo", "tempo_dir") if k in kw}  # --tempo: mgr.tempo.estimate
    card = read_card(model_dir)
    if card["kind"] == "tempo":
        raise ArtifactError(f"{model_dir} is the tempo estimator, not a genre model (predict uses it through --tempo)")
    if card["kind"] == "pretrained":
        pred: Predictor = TaggerPredictor(model_dir, card, **kw)
    elif card["kind"] == "deep":
        pred = DeepPredictor(model_dir, card, **kw)
    else:
        pred = ClassicalPredictor(model_dir, card, **kw)
    pred.trained_on = training_data(card, model_dir)
    pred.model_dir, pred.load_kwargs = model_dir, dict(kw, **tempo_kw)  # what a worker process loads again
    if tempo_kw:
        pred.tempo = TempoChoice(tempo_kw.get("tempo"), tempo_kw.get("tempo_dir") or Path("models") / "tempo")
    return pred


