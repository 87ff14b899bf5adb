"""The model card (``models/<name>/model.json``): the one reader every loader starts from.

A card is plain JSON, so reading it runs nothing from the artifact. Kind-specific checks
(feature columns, front end, outputs, hashes) stay with the loaders in ``mgr.models``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mgr.errors import ArtifactError

CARD_FILE = "model.json"
KINDS = ("classical", "deep", "pretrained", "tempo")  # pretrained: built-in taggers (mgr.pretrained.builtin);
# tempo: the learned tempo estimator (mgr.tempo), which has no genre labels
GENRE_KINDS = ("classical", "deep", "pretrained")


def read_card(model_dir: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """Parse ``model_dir/model.json`` and check it is an mgr card (of ``kind`` when given).

    Raises :class:`ArtifactError` naming the file and the problem: no directory, no card,
    not JSON, not an object, an unknown kind, a file name outside the directory, or (genre models)
    labels that are not a list of >= 2 strings.
    """
    model_dir = Path(model_dir)
    path = model_dir / CARD_FILE
    if not model_dir.is_dir():
        raise ArtifactError(f"{model_dir} is not a model directory")
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no {CARD_FILE} (not a trained model directory)")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e})") from None
    found = card.get("kind") if isinstance(card, dict) else None
    if found not in KINDS:
        raise ArtifactError(f"{path}: not an mgr model card (kind={found!r}; expected one of {', '.join(KINDS)})")
    if kind is not None and found != kind:
        raise ArtifactError(f"{model_dir} holds a {found!r} model, not a {kind} one")
    for key in ("model_file", "onnx_file"):
        # a card names files inside its own directory only (no "../x", no absolute path)
        v = card.get(key)
        if v is not None and (not isinstance(v, str) or v in ("", ".", "..") or "/" in v or "\\" in v):
            raise ArtifactError(f"{path}: {key} must be a file name inside {model_dir}, not {v!r}")
    labels = card.get("labels")
    if found not in GENRE_KINDS:
        return card
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(s, str) for s in labels):
        raise ArtifactError(f"{path}: labels must be a list of at least two strings")
    return card


def trained_on(data: Any, n_train_tracks: int | None = None) -> dict:
    """The card's record of the training data (``mgr predict`` warns when it is the synthetic set):
    ``{source, path, synthetic, n_train_tracks}`` from the ``data`` params."""
    return {"source": str(data.source), "path": None if data.path is None else str(data.path),
            "synthetic": data.source == "synthetic",
            "n_train_tracks": None if n_train_tracks is None else int(n_train_tracks)}
