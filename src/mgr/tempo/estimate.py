"""The predict-time tempo estimator: ``mgr predict --tempo auto|dsp|learned``.

* ``learned``: the trained estimator ``models/tempo/`` (ONNX, sha256-checked against its card);
  an error (exit 3) when there is none.
* ``dsp``: ``librosa.feature.tempo`` (its NumPy twin) on the whole file's onset envelope.
* ``auto`` (the default): ``learned`` when ``models/tempo/`` exists and its card says it beat the
  DSP estimate on validation; otherwise the genre model's own answer is left as it was (its
  tempo head, else the DSP estimate), so nothing changes for a project without the artifact.

Both estimators read the same onset envelopes (:func:`mgr.tempo.features.envelopes`) of the file
(its first :data:`MAX_ANALYSIS_S` seconds). The confidence is the learned model's probability
within +-4 % of the reported tempo (``None`` without the model), after the card's tempo prior
(:func:`prior_of`), mapped by the card's ``confidence_calibration`` (:mod:`mgr.tempo.calibration`)
to the probability that the tempo is right (Acc1); when calibrated, a tempo whose confidence is
below :data:`mgr.tempo.calibration.MIN_CONFIDENCE` is reported as null (``tempo_error`` says why).
Files the no-music gate refused (``music: false``) and silent ones keep their null tempo. With ``--timeline`` each segment
gets a local tempo from at least :data:`MIN_CONTEXT_S` seconds of audio centred on it (segments
past the first :data:`MAX_ANALYSIS_S` seconds decode their own stretch of the file).
Imports NumPy at module level only (onnxruntime when a model is opened; never TensorFlow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mgr import cards
from mgr.audio.decode import load_audio
from mgr.cards import CARD_FILE
from mgr.errors import ArtifactError, UserError
from mgr.inference.runtime import InferenceError, OnnxModel
from mgr.tempo import calibration as C
from mgr.tempo import features as F

MODES = ("auto", "dsp", "learned")
MAX_ANALYSIS_S = 600.0
MIN_CONTEXT_S = 8.0
#: a segment's local tempo needs at least this many envelope frames (~2 s), else it is ``None``
MIN_FRAMES = 86


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """``model_dir/model.json`` of a tempo estimator (:func:`mgr.cards.read_card`, kind ``tempo``)
    with its BPM grid and ONNX hash checked (one-line :class:`ArtifactError`)."""
    model_dir = Path(model_dir)
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no tempo estimator ({CARD_FILE} not found; run `dvc repro train-tempo`)")
    card = cards.read_card(model_dir, kind="tempo")
    f = card.get("onnx_file")
    if not isinstance(f, str):
        raise ArtifactError(f"{path}: names no onnx_file")
    grid = (card.get("output") or {}).get("grid") or {}
    if (grid.get("bpm_min"), grid.get("bins_per_octave"), grid.get("n_bins")) != (F.BPM_MIN, F.BINS_PER_OCTAVE, F.N_BINS):
        raise ArtifactError(f"{path}: tempo grid {grid} does not match this version of mgr.tempo.features")
    if not isinstance(card.get("sha256"), str):
        raise ArtifactError(f"{path}: no sha256 of {f}")
    return card


def prior_of(card: dict[str, Any]) -> np.ndarray | None:
    """The card's tempo-prior weights (``None`` when it has none), checked: one finite,
    non-negative, not all-zero weight per grid bin, else a one-line :class:`ArtifactError`."""
    prior = card.get("prior")
    if prior is None:
        return None
    w = prior.get("weights") if isinstance(prior, dict) else None
    try:
        arr = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (F.N_BINS,) or not np.isfinite(arr).all() or (arr < 0).any() or not arr.any():
        raise ArtifactError(f"tempo card: prior.weights must be {F.N_BINS} finite non-negative numbers, not all zero")
    return arr


class LearnedTempo:
    """The trained estimator: envelopes -> (BPM, confidence)."""

    def __init__(self, model_dir: str | Path, threads: int | None = 1):
        self.model_dir = Path(model_dir)
        self.card = read_card(self.model_dir)
        self.model = OnnxModel(self.model_dir / self.card["onnx_file"], sha256=self.card["sha256"], threads=threads)
        self.beats_dsp = bool(self.card.get("beats_dsp_on_validation"))
        self.weights = prior_of(self.card)
        rec = self.card.get("confidence_calibration")  # (mgr.tempo.calibration; older cards: none)
        self.calibration = None if rec is None else C.check(rec, f"{self.model_dir / CARD_FILE}")

    def probs(self, envs: list[np.ndarray], sr: int) -> np.ndarray:
        X = np.stack([F.evidence(e, F.fps(sr)) for e in envs]).astype(np.float32)
        out = self.model.run_feeds({"input": X})
        p = np.asarray(out["tempo"] if isinstance(out, dict) else out[0], dtype=np.float64)
        if not np.isfinite(p).all():
            raise InferenceError(f"{self.model_dir}: non-finite tempo probabilities")
        return F.apply_prior(p, self.weights)

    def estimate(self, envs: list[np.ndarray], sr: int) -> tuple[np.ndarray, np.ndarray]:
        """(BPM, confidence): the confidence calibrated by the card's map when it has one
        (:mod:`mgr.tempo.calibration`: the probability that the BPM is right within 4 %)."""
        bpm, raw = F.readout(self.probs(envs, sr))
        return bpm, C.apply(self.calibration, raw)

    def confidence_at(self, env: np.ndarray, sr: int, bpm: float) -> float:
        """The model's probability within +-4 % of ``bpm`` (e.g. of the DSP estimate), calibrated
        like :meth:`estimate`'s."""
        p = self.probs([env], sr)[0]
        return float(C.apply(self.calibration, float(p[np.abs(F.BPM_GRID / bpm - 1.0) <= 0.04].sum())))


class TempoChoice:
    """What ``--tempo`` resolved to for a run: ``mode`` and the loaded estimator (or ``None``)."""

    def __init__(self, mode: str | None = "auto", model_dir: str | Path = Path("models") / "tempo", sr: int = 22050):
        mode = mode or "auto"
        if mode not in MODES:
            raise UserError(f"--tempo must be one of {', '.join(MODES)} (got {mode!r})")
        self.requested, self.sr, self.learned = mode, int(sr), None
        model_dir = Path(model_dir)
        if mode == "learned" or (mode in ("auto", "dsp") and (model_dir / CARD_FILE).is_file()):
            try:
                self.learned = LearnedTempo(model_dir)
            except ArtifactError:
                if mode == "learned":
                    raise
        if mode == "auto":
            self.mode = "learned" if self.learned is not None and self.learned.beats_dsp else "model"
        else:
            self.mode = mode
        if self.learned is not None and self.learned.card.get("sample_rate"):
            self.sr = int(self.learned.card["sample_rate"])

    def applies(self) -> bool:
        """Whether predictions are rewritten (``auto`` without a better learned model: no)."""
        return self.mode in ("dsp", "learned")

    def apply(self, pred: Any, path: str | Path) -> Any:
        """Replace ``pred``'s tempo (and its ``--timeline`` segments' tempi) with this choice's
        estimate; set ``tempo_source`` (``learned`` | ``dsp``) and ``tempo_confidence``."""
        if not self.applies() or pred.tempo_source == "none" and pred.tempo_bpm is None and pred.reason:
            return pred
        if getattr(pred, "music", None) is False or pred.tempo_source == "silence":  # the no-music gate said no
            return pred

        y = load_audio(path, sr=self.sr, duration_s=MAX_ANALYSIS_S, pad=False)
        if y.size == 0 or not np.any(y):
            return pred
        env = F.envelopes(y, self.sr)
        bpm, conf = self._one(env)
        pred.tempo_bpm, pred.tempo_source, pred.tempo_confidence = bpm, self.mode, conf
        pred.tempo_estimator = self.mode
        if self._unsure(conf):  # a calibrated confidence under MIN_CONFIDENCE: more likely wrong than right
            pred.tempo_bpm, pred.tempo_source = None, "none"
            pred.warnings.append(f"tempo not estimated: confidence {conf:.2f} is below {C.MIN_CONFIDENCE:g} "
                                 f"(a {bpm:.1f} BPM answer would more likely be wrong than right)")
        fr = F.fps(self.sr)
        analysed_s = y.size / self.sr
        for sg in pred.segments or []:
            if sg.silent or getattr(sg, "music", None) is False:
                continue
            t0, t1 = float(sg.start_s), float(sg.end_s)
            if t1 - t0 < MIN_CONTEXT_S:  # at least MIN_CONTEXT_S of audio, centred on the segment
                mid = 0.5 * (t0 + t1)
                t0 = max(0.0, mid - 0.5 * MIN_CONTEXT_S)
                t1 = t0 + MIN_CONTEXT_S
            if t1 <= analysed_s or analysed_s < MAX_ANALYSIS_S:  # (analysed: this stretch, or the whole file)
                seg_env = env[:, int(t0 * fr) : int(np.ceil(min(t1, analysed_s) * fr))]
            else:  # past the analysed start of a long file: decode this stretch on its own
                ys = load_audio(path, sr=self.sr, offset_s=t0, duration_s=t1 - t0, pad=False)
                seg_env = F.envelopes(ys, self.sr) if ys.size and np.any(ys) else env[:, :0]
            if seg_env.shape[1] >= MIN_FRAMES:
                bpm_s, conf_s = self._one(seg_env)
                sg.tempo_bpm = None if self._unsure(conf_s) else bpm_s
            else:
                sg.tempo_bpm = None
        return pred

    def _unsure(self, conf: float | None) -> bool:
        """Whether the learned answer's confidence is calibrated (the card has a map) and below
        :data:`C.MIN_CONFIDENCE`. (``--tempo dsp`` reports the DSP estimate whatever the learned
        model thinks of it: its confidence is shown, the tempo kept.)"""
        return (self.mode == "learned" and conf is not None and self.learned is not None
                and self.learned.calibration is not None and conf < C.MIN_CONFIDENCE)

    def _one(self, env: np.ndarray) -> tuple[float, float | None]:
        if self.mode == "learned":
            bpm, conf = self.learned.estimate([env], self.sr)
            return round(float(bpm[0]), 2), round(float(conf[0]), 4)
        bpm = F.dsp_tempo(env, self.sr)
        conf = self.learned.confidence_at(env, self.sr, bpm) if self.learned is not None else None
        return round(bpm, 2), None if conf is None else round(conf, 4)
