"""Which model a ``--model`` name or path means: ``models/NAME`` (a single path component,
never leaving ``models/``), a directory, a built-in pretrained tagger, or (none given) the best
model on the leaderboard; ``mgr models`` listings; what a model was trained on."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from mgr.cards import read_card
from mgr.errors import ArtifactError
from mgr.pretrained import musicnn
from mgr.pretrained.builtin import BUILTIN, builtin_name, ensure_builtin

# ------------------------------------------------------------------------------- models
#: a model name: one path component (no "/", no "..", no leading dot), printable ASCII
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def valid_model_name(name: Any) -> bool:
    """Whether ``name`` can name ``models/<name>``: a single path component of letters, digits
    and ``._+-`` (not starting with a dot), so ``../x`` or ``a/b`` never leave ``models/``."""
    return isinstance(name, str) and _MODEL_NAME_RE.fullmatch(name) is not None


def _mtime(p: Path) -> str | None:
    """``p``'s modification time (UTC, seconds) or None."""
    import datetime as _dt

    try:
        return _dt.datetime.fromtimestamp(p.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return None


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):  # a name too long, an embedded NUL
        return False


def _model_in(models: Path, name: str) -> Path | None:
    """``models/<name>`` when ``name`` is a valid model name naming a directory that really lies
    inside ``models/`` (a symlink pointing elsewhere is refused); else ``None``."""
    if not valid_model_name(name) or not _is_dir(models / name):
        return None
    d = models / name
    try:
        d.resolve().relative_to(models.resolve())
    except (ValueError, OSError):
        raise ArtifactError(
            f"{d} resolves outside {models} ({d.resolve()}); pass that directory itself with --model DIR"
        ) from None
    return d


def resolve_model(spec: str | None, root: str | os.PathLike = ".") -> Path:
    """The model directory for ``--model``: a directory, ``models/NAME``, or (``None``) the best
    model by test accuracy in ``metrics/summary.json`` (else ``reports/leaderboard.md``).

    ``NAME`` (and every name read from the summary or the leaderboard) must be a single path
    component (:func:`valid_model_name`) and is looked up only inside ``models/``."""
    root = Path(root)
    models = root / "models"
    if spec:
        p = Path(spec)
        if _is_dir(p):
            return p
        found = _model_in(models, spec)
        if found is not None:
            return found
        if builtin_name(spec):  # musicnn-msd / musicnn-mtt: built from the installed wheel on first use
            return ensure_builtin(spec)
        have = sorted(d.name for d in models.iterdir() if (d / "model.json").is_file()) if models.is_dir() else []
        raise ArtifactError(
            f"model {spec!r} not found (not a directory, and no {models / spec}); "
            + (f"available: {', '.join(have)}" if have else "no trained models in models/ (run dvc repro)")
            + "; built in: musicnn-msd, musicnn-mtt"
        )
    best = best_model_name(root)
    found = _model_in(models, best) if best else None
    if found is not None:
        return found
    have = sorted(d.name for d in models.iterdir() if (d / "model.json").is_file()) if models.is_dir() else []
    if len(have) == 1:
        return models / have[0]
    if not have:
        raise ArtifactError("no trained models in models/ (run `dvc repro`, or pass --model DIR)")
    raise ArtifactError(f"no leaderboard to choose a default model from; pass --model (available: {', '.join(have)})")


def _acc_of(entry: Any) -> float | None:
    if isinstance(entry, (int, float)):
        return float(entry)
    if isinstance(entry, dict):
        for key in ("accuracy", "track_accuracy", "acc"):
            if key in entry:
                v = _acc_of(entry[key])
                if v is not None:
                    return v
        for key in ("track", "test", "headline", "mean"):
            if key in entry:
                v = _acc_of(entry[key])
                if v is not None:
                    return v
    return None


def best_model_name(root: str | os.PathLike = ".") -> str | None:
    """Name of the model with the best test accuracy (``metrics/summary.json``, else the
    leaderboard table), or ``None`` when neither exists."""
    root = Path(root)
    summary = root / "metrics" / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except (ValueError, RecursionError, OSError):  # not JSON / not UTF-8 / nested too deep
            data = None
        if isinstance(data, dict):
            models = data.get("models", data)
            scores = {}
            # only valid model names (never "../x": the default model is looked up in models/)
            if isinstance(models, dict):
                for name, entry in models.items():
                    acc = _acc_of(entry)
                    if acc is not None and math.isfinite(acc) and valid_model_name(name):
                        scores[name] = acc
            elif isinstance(models, list):
                for entry in models:
                    if isinstance(entry, dict) and "name" in entry:
                        acc = _acc_of(entry)
                        if acc is not None and math.isfinite(acc) and valid_model_name(entry["name"]):
                            scores[str(entry["name"])] = acc
            if scores:
                return max(scores, key=lambda k: scores[k])
    board = root / "reports" / "leaderboard.md"
    if board.is_file():
        try:
            rows = [r for r in board.read_text().splitlines() if r.startswith("|")]
        except (ValueError, OSError):
            rows = []
        if len(rows) > 2:
            head = [c.strip().lower() for c in rows[0].strip("|").split("|")]
            acc_col = next((i for i, c in enumerate(head) if "acc" in c and "bal" not in c), None)
            name_col = next((i for i, c in enumerate(head) if c in ("model", "name")), 0)
            best, best_v = None, -1.0
            for r in rows[2:]:
                cells = [c.strip().strip("*`") for c in r.strip("|").split("|")]
                try:
                    v = float(cells[acc_col].split()[0]) if acc_col is not None else 0.0
                except (ValueError, IndexError):
                    continue
                if not math.isfinite(v) or name_col >= len(cells) or not valid_model_name(cells[name_col]):
                    continue
                if v > best_v:
                    best, best_v = cells[name_col], v
            return best
    return None


def training_data(card: dict, model_dir: str | os.PathLike | None = None) -> dict | None:
    """What a model was trained on: ``{"source", "synthetic", "from"}`` or ``None`` (unknown).

    Read from the card's ``trained_on`` record (``{"source": "synthetic" | "gtzan" | "fma" |
    "folder", "synthetic": bool, ...}``, written by training); a card without one (older
    artifacts, or classical cards whose ``trained_on`` is only a sentence) falls back to the
    ``data.source`` of the ``params.yaml`` of the project holding ``models/<name>/``
    (``"from": "params.yaml"``). A built-in pretrained tagger was trained on real music (its
    card's ``pretrained`` provenance)."""
    if card.get("kind") == "pretrained":
        return {"source": "pretrained", "synthetic": False, "from": "card"}
    rec = card.get("trained_on")
    if isinstance(rec, dict) and (rec.get("source") or "synthetic" in rec):
        src = str(rec.get("source") or "")
        synth = rec.get("synthetic")
        return {"source": src or None, "synthetic": bool(synth) if isinstance(synth, bool) else src == "synthetic",
                "from": "card"}
    if model_dir is None:
        return None
    d = Path(model_dir)
    try:
        d = d.resolve()
    except OSError:
        return None
    if d.parent.name != "models":
        return None
    params = d.parent.parent / "params.yaml"
    try:
        import yaml

        data = yaml.safe_load(params.read_text()) if params.is_file() else None
    except Exception:  # unreadable / not YAML: unknown
        return None
    src = (data or {}).get("data", {}).get("source") if isinstance(data, dict) and isinstance(data.get("data"), dict) else None
    if not isinstance(src, str):
        return None
    return {"source": src, "synthetic": src == "synthetic", "from": "params.yaml"}


def synthetic_warning(predictor: Any) -> str | None:
    """One line for stderr when the model was trained on the synthetic set (else ``None``);
    ``predictor`` is a :class:`mgr.inference.predictors.Predictor` (its ``name``, ``trained_on``)."""
    rec = predictor.trained_on
    if not rec or not rec.get("synthetic"):
        return None
    how = "" if rec.get("from") == "card" else " (per params.yaml data.source; its card does not say)"
    return (f"model {predictor.name} was trained on the synthetic set{how}: it has never heard real recordings, "
            "so its genres for real music are not meaningful; use the pretrained tagger (--model musicnn-msd), "
            "a classifier on pretrained embeddings (ml.embedding_models in params.yaml) trained on real data, "
            "or train on real music (data.source: gtzan, fma or folder)")


# ------------------------------------------------------------------------------ models
def list_models(root: str | os.PathLike = ".") -> list[dict]:
    """One record per ``models/<name>/model.json``: name, kind, labels, created, test metrics
    (from ``metrics/<name>.json`` or the evaluate outputs when present) and any card problem."""
    root = Path(root)
    out = []
    models = root / "models"
    if not models.is_dir():
        return out
    for d in sorted(models.iterdir()):
        if not d.is_dir():
            continue
        rec: dict[str, Any] = {"name": d.name, "path": str(d)}
        try:
            card = read_card(d)
        except ArtifactError as e:
            rec["error"] = str(e)
            out.append(rec)
            continue
        if card["kind"] == "tempo":  # models/tempo: the tempo estimator (--tempo), not a genre model
            continue
        rec.update({
            "kind": card["kind"],
            "labels": card["labels"],
            # cards hold no creation time (they are the same bits on every machine): the file's time
            "created": card.get("created") or _mtime(d / "model.json"),
            "detail": card.get("feature_set") if card["kind"] == "classical" else
            f"{card.get('window_s', '?')} s window, outputs {','.join(card.get('outputs', []))}",
        })
        rec["test"] = _test_metrics(root, d.name)
        out.append(rec)
    return out


def builtin_models() -> list[dict]:
    """The built-in pretrained taggers (usable with no training run): name, vocabulary, source."""
    recs = []
    for name, backbone in BUILTIN.items():
        recs.append({
            "name": name.replace("_", "-"),
            "kind": "pretrained",
            "labels": musicnn.tag_vocab(backbone),
            "created": None,
            "detail": f"musicnn {backbone} (Pons & Serra 2019, ISC): {len(musicnn.tag_vocab(backbone))} tags, "
                      f"3 s patches of its 16 kHz front end",
            "test": None,
        })
    return recs


def _test_metrics(root: Path, name: str) -> dict | None:
    for p in (root / "metrics" / f"{name}.json", root / "metrics" / "evaluate" / f"{name}.json"):
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except (ValueError, RecursionError, OSError):
                continue
            flat = {}
            acc = _acc_of(data)
            if acc is not None and math.isfinite(acc):  # `mgr models --json` stays strict JSON
                flat["accuracy"] = acc
            for key in ("macro_f1", "balanced_accuracy"):
                v = _find_key(data, key)
                if v is not None and math.isfinite(v):
                    flat[key] = v
            return flat or None
    return None


def _find_key(obj: Any, key: str, depth: int = 0) -> float | None:
    if depth > 3 or not isinstance(obj, dict):
        return None
    if isinstance(obj.get(key), (int, float)):
        return float(obj[key])
    for v in obj.values():
        r = _find_key(v, key, depth + 1)
        if r is not None:
            return r
    return None
