"""When ``mgr predict`` withholds an answer it would otherwise give (beyond silence and
``--min-confidence``, which the predictors handle themselves):

* :func:`apply_gate`: the no-music gate (:mod:`mgr.inference.gate`) -- a file or ``--timeline``
  segment without music gets no genre, top-k, tempo or tags, and ``reason`` says why;
* :func:`judge_distribution`: the out-of-distribution check (:mod:`mgr.models.distribution`) --
  ``in_distribution`` / ``ood_score`` on the answer; with ``--min-confidence`` set, a far input's
  genre is withheld too.
"""

from __future__ import annotations

import math
from typing import Any

from mgr.inference.gate import GateAnalyzer, verdict
from mgr.models.distribution import Distribution


def apply_gate(pred: Any, an: GateAnalyzer | None, offset_s: float = 0.0) -> Any:
    """Apply the gate's :func:`~mgr.inference.gate.verdict` to a
    :class:`~mgr.inference.output.Prediction` and its segments; ``music`` records the answer
    (left ``None`` where there was nothing to judge). ``offset_s``: where the analysed audio
    starts in the file (a classical card's ``audio.offset_s``)."""
    if an is None or an.n_frames == 0:
        return pred
    for sg in pred.segments or []:
        if sg.silent:
            continue
        r, ev = verdict(an, an.frame_of(sg.start_s - offset_s), an.frame_of(sg.end_s - offset_s))
        if ev is None:  # nothing to judge (too short)
            continue
        sg.music = r is None
        if r is not None:
            sg.genre, sg.top_k, sg.tempo_bpm, sg.tags, sg.reason = None, [], None, [], r
    if pred.tempo_source == "silence":
        return pred
    r, ev = verdict(an)
    if ev is None:
        return pred
    pred.music = r is None
    if r is not None:
        pred.genre, pred.top_k, pred.tags, pred.tempo_bpm, pred.tempo_source = None, [], [], None, "no-music"
        pred.reason = r
        pred.warnings = [w for w in pred.warnings if not w.startswith("unknown: ")] + [r]
    return pred


def judge_distribution(pred: Any, dist: Distribution | None, score: float | None,
                       min_confidence: float | None) -> Any:
    """Record the out-of-distribution check on an answer (not on silence or no music)."""
    if dist is None or score is None or pred.music is False or pred.tempo_source == "silence":
        return pred
    pred.ood_score = round(float(score), 4) if math.isfinite(score) else None
    pred.in_distribution = bool(score <= dist.threshold)
    if not pred.in_distribution and min_confidence is not None and pred.genre is not None:
        pred.genre = None
        pred.reason = (f"unknown: out of distribution (distance {score:.2f} from the model's training data "
                       f"> {dist.threshold:.2f}) and --min-confidence is set")
        pred.warnings.append(pred.reason)
    return pred
