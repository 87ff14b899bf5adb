"""What a dataset source hands to fetch: :class:`Candidates` (the files it found, before probing)
and the audio extensions a folder source looks for. A leaf of :mod:`mgr.data.fetch`, so that the
sources (folder, gtzan, fma, synthetic) and the fetch orchestration import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3")


@dataclass
class Candidates:
    """What a source found before probing.

    ``rows``: records with at least ``track_id``, ``path`` (absolute, or relative to the
    dataset directory being built) and ``genre``; optional ``artist``, ``tempo_bpm``, ``tags``
    (``|``-joined), ``source_split`` and free extra columns. ``rejected``: records with
    ``path``, ``reason`` and ``track_id`` (if known) for files refused before probing.
    ``genres``: the dataset's genre vocabulary if the source defines one. ``stats``: counts the
    source wants in ``metrics/fetch.json`` (e.g. manifest paths outside the manifest's folder).
    """

    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    genres: list[str] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
