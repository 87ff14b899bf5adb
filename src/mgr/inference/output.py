"""What ``mgr predict`` answers and how it is written: the :class:`Prediction` /
:class:`Segment` / :class:`InputFailure` records and their table-safe text, strict JSON lines
and CSV rows (the README's "Predicting" section documents the schema).

Paths are held as Python holds file names (``os.fsdecode``); output never prints lone
surrogates, and a name that is not valid UTF-8 also gets its exact bytes (``path_bytes_b64``).
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    path: str
    genre: str | None  # None for a tagger (a built-in pretrained model): its answer is its tags
    top_k: list[tuple[str, float]]
    tempo_bpm: float | None
    tempo_source: str
    tags: list[tuple[str, float]] = field(default_factory=list)  # (tag, score), best first
    warnings: list[str] = field(default_factory=list)
    n_windows: int = 0
    duration_s: float = 0.0
    #: why ``genre`` is null for a genre model: silence, or below ``--min-confidence``
    reason: str | None = None
    #: ``--timeline``: the segments the answer aggregates, in time order (else ``None``)
    segments: list[Segment] | None = None
    #: set by ``--tempo`` (:mod:`mgr.tempo.estimate`): the estimator used and its confidence
    tempo_estimator: str | None = None
    tempo_confidence: float | None = None
    #: the no-music gate (:mod:`mgr.inference.gate`): ``False`` -> genre, tempo and tags are null
    #: and ``reason`` says why; ``None`` when the gate was off (``--no-music-gate``) or silence
    music: bool | None = None
    #: the out-of-distribution check (:mod:`mgr.models.distribution`): ``False`` when the input is far
    #: from what the model was trained on (``ood_score`` above the card's threshold); ``None``
    #: when the model's card records no training distribution
    in_distribution: bool | None = None
    ood_score: float | None = None

    ok = True


@dataclass
class Segment:
    """One segment of a ``--timeline``: seconds from the start of the file, its own top-k,
    tempo and tags; ``silent`` segments (RMS below :data:`SILENCE_DBFS`) have none and are left
    out of the file's answer."""

    start_s: float
    end_s: float
    genre: str | None
    top_k: list[tuple[str, float]]
    tempo_bpm: float | None
    tags: list[tuple[str, float]] = field(default_factory=list)
    silent: bool = False
    reason: str | None = None
    music: bool | None = None  # the no-music gate's answer for this segment (None: gate off / silent)


@dataclass
class InputFailure:
    path: str
    error: str
    ok = False


# ------------------------------------------------------------------------------ output
# Paths are held as Python holds file names: ``os.fsdecode`` of the bytes, a byte that is not
# UTF-8 kept as a lone surrogate (U+DC80..U+DCFF). Output never prints those surrogates:
#  * JSON / CSV ``path``: the name, each undecodable byte written as the four characters
#    ``\xNN``; then ``path_bytes_b64`` holds the exact bytes (base64), only for such names.
#  * error / warning lines and the table (:func:`display_text`): also every non-printable
#    character (newline, tab, escape, ...) as ``\n`` ``\t`` ``\xNN`` ``\uNNNN``, so one
#    problem is always one line.
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def undecodable_as_hex(text: str) -> str:
    r"""``text`` with each undecodable file-name byte (a lone surrogate from ``os.fsdecode``)
    written as ``\xNN``; any other lone surrogate as ``\udNNN``. Valid UTF-8 is unchanged."""
    if not _has_surrogates(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def display_text(text: str) -> str:
    r"""``text`` on one printable line: undecodable bytes as ``\xNN`` and every non-printable
    character (``str.isprintable``: newline, tab, escape, DEL, C1 controls, line separators, ...)
    as ``\n``, ``\r``, ``\t``, ``\xNN``, ``\uNNNN`` or ``\UNNNNNNNN``."""
    text = undecodable_as_hex(str(text))
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def display_path(path: str | os.PathLike) -> str:
    """A path for an error / warning line or the table (:func:`display_text`)."""
    return display_text(os.fsdecode(path))


def path_fields(path: str | os.PathLike) -> dict[str, str]:
    r"""``{"path": ...}`` for JSON / CSV, plus ``"path_bytes_b64"`` (the exact name bytes) when
    the name is not valid UTF-8 (its ``path`` then shows those bytes as ``\xNN``)."""
    text = os.fsdecode(path)
    if not _has_surrogates(text):
        return {"path": text}
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return {"path": undecodable_as_hex(text), "path_bytes_b64": base64.b64encode(raw).decode("ascii")}


def _strict(obj: Any) -> Any:
    r"""``obj`` made strict-JSON-safe: non-finite floats -> ``None``, lone surrogates -> ``\xNN``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return undecodable_as_hex(obj)
    if isinstance(obj, dict):
        return {_strict(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.generic):
        return _strict(obj.item())
    return obj


def strict_json(obj: Any) -> str:
    """One line of strict JSON (RFC 8259: no NaN/Infinity, no lone surrogates; ASCII)."""
    return json.dumps(_strict(obj), allow_nan=False)


def to_json_line(res: Prediction | InputFailure) -> str:
    if isinstance(res, InputFailure):
        return strict_json({**path_fields(res.path), "error": res.error})
    obj: dict[str, Any] = {
        **path_fields(res.path),
        "genre": res.genre,
        "top_k": [{"label": lab, "prob": p} for lab, p in res.top_k],
        "tempo_bpm": None if res.tempo_bpm is None else round(float(res.tempo_bpm), 2),
        "tags": [{"label": t, "score": s} for t, s in res.tags],
    }
    if res.tempo_source == "none":  # the estimate was not finite: say why it is null
        obj["tempo_error"] = next((w for w in res.warnings if w.startswith("tempo not estimated")),
                                  "tempo not estimated")
    if res.tempo_estimator:  # --tempo (mgr.tempo.estimate)
        obj.update(tempo_estimator=res.tempo_estimator, tempo_confidence=res.tempo_confidence)
    if res.music is not None:  # the no-music gate
        obj["music"] = res.music
    if res.in_distribution is not None:  # the out-of-distribution check
        obj.update(in_distribution=res.in_distribution, ood_score=res.ood_score)
    if res.reason:  # why genre is null: silence, no music, --min-confidence, out of distribution
        obj["reason"] = res.reason
    if res.segments is not None:  # --timeline
        obj["segments"] = [_segment_obj(sg) for sg in res.segments]
    return strict_json(obj)


def _segment_obj(sg: Segment) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "start_s": sg.start_s, "end_s": sg.end_s, "genre": sg.genre,
        "top_k": [{"label": lab, "prob": p} for lab, p in sg.top_k],
        "tempo_bpm": sg.tempo_bpm,
        "tags": [{"label": t, "score": v} for t, v in sg.tags],
        "silent": sg.silent,
    }
    if sg.music is not None:
        obj["music"] = sg.music
    if sg.reason:
        obj["reason"] = sg.reason
    return obj


CSV_HEADER = ["path", "genre", "prob", "top_k", "tempo_bpm", "tags", "error", "path_bytes_b64", "reason", "music",
              "in_distribution"]
#: ``--timeline --format csv``: the file's row (start_s/end_s empty), then one row per segment
CSV_TIMELINE_HEADER = ["path", "start_s", "end_s", "genre", "prob", "top_k", "tempo_bpm", "tags", "silent", "error",
                       "path_bytes_b64", "reason", "music", "in_distribution"]


def _flag(v: bool | None) -> str:
    """A CSV cell for an optional flag: ``1`` / ``0`` / empty (unknown)."""
    return "" if v is None else "1" if v else "0"


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if v is not None and math.isfinite(v) else ""


def _csv_cells(genre, top_k, tempo, tags) -> list[str]:
    return [
        genre or "",
        _num(top_k[0][1], ".4f") if top_k else "",
        ";".join(f"{lab}:{_num(p, '.4f')}" for lab, p in top_k),
        _num(tempo, ".1f"),
        "|".join(f"{t}:{_num(s, '.4f')}" for t, s in tags),
    ]


def csv_rows(res: Prediction | InputFailure) -> list[str]:
    """The row of :data:`CSV_HEADER` for one input."""
    pf = path_fields(res.path)
    if isinstance(res, InputFailure):
        row = [pf["path"], "", "", "", "", "", res.error]
        reason, flags = "", ["", ""]
    else:
        row = [pf["path"], *_csv_cells(res.genre, res.top_k, res.tempo_bpm, res.tags), ""]
        reason, flags = res.reason or "", [_flag(res.music), _flag(res.in_distribution)]
    return [undecodable_as_hex(str(c)) for c in row] + [pf.get("path_bytes_b64", ""), display_text(reason), *flags]


def csv_timeline_rows(res: Prediction | InputFailure) -> list[list[str]]:
    """Rows of :data:`CSV_TIMELINE_HEADER`: the file's (empty start_s/end_s), then one per segment."""
    pf = path_fields(res.path)
    p, b64 = undecodable_as_hex(pf["path"]), pf.get("path_bytes_b64", "")
    if isinstance(res, InputFailure):
        return [[p, "", "", "", "", "", "", "", "", undecodable_as_hex(res.error), b64, "", "", ""]]
    rows = [[p, "", "", *_csv_cells(res.genre, res.top_k, res.tempo_bpm, res.tags), "", "", b64,
             display_text(res.reason or ""), _flag(res.music), _flag(res.in_distribution)]]
    for sg in res.segments or []:
        rows.append([p, f"{sg.start_s:.3f}", f"{sg.end_s:.3f}", *_csv_cells(sg.genre, sg.top_k, sg.tempo_bpm, sg.tags),
                     "1" if sg.silent else "0", "", b64, display_text(sg.reason or ""), _flag(sg.music), ""])
    return rows

