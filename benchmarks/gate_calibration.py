"""Calibration of the no-music gate (:mod:`mgr.inference.gate`): the distributions its decision
rule's constants were set from, and the rates they give.

Draws generated non-music (:mod:`mgr.inference.nonmusic`, every kind) and synthetic music
(:mod:`mgr.synth`, every style) at random lengths (3-60 s) and RMS levels (-40..0 dBFS), measures
the gate's evidence on each, and prints per kind the 5/50/95 % quantiles of tonality, pulse,
change and low-energy fraction, then the share of each kind the rule (:func:`mgr.inference.gate.decide`)
calls music. A new constant must keep non-music refused >= 95 % and music refused <= 2 %
(``tests/test_gate.py`` asserts both on a smaller fresh draw).

    .venv/bin/python benchmarks/gate_calibration.py [--per-kind 40] [--seed 0] [--sr 22050]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mgr.inference import gate, nonmusic


def evidence_of(y: np.ndarray, sr: int) -> gate.Evidence | None:
    an = gate.GateAnalyzer(sr)
    for s in range(0, len(y), sr * 10):
        an.push(y[s : s + sr * 10])
    return an.evidence()


def draw(kind: str, rng: np.random.Generator, sr: int, i: int = 0) -> np.ndarray:
    seconds = float(np.exp(rng.uniform(np.log(3.0), np.log(60.0))))
    level = float(rng.uniform(-40.0, 0.0))
    if kind == "music":  # the styles in turn
        from mgr.synth.styles import GENRES

        return nonmusic.music(seconds, sr, level, rng, GENRES[i % len(GENRES)])
    return nonmusic.clip(kind, seconds, sr, level, rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--dump", help="also write every clip's evidence to this JSON file")
    args = ap.parse_args()
    dump: list[dict] = []
    rng = np.random.default_rng(args.seed)
    keys = ("tonality", "pulse", "change", "low_energy")
    print(f"{'kind':9s} " + " ".join(f"{k + ' 5/50/95%':>22s}" for k in keys) + "  music%")
    t0 = time.perf_counter()
    for kind in (*nonmusic.KINDS, "music"):
        evs, calls = [], []
        for i in range(args.per_kind):
            ev = evidence_of(draw(kind, rng, args.sr, i), args.sr)
            evs.append(ev)
            calls.append(gate.decide(ev) is None)
        dump.extend({"kind": kind, **(e.as_dict() if e is not None else {})} for e in evs)
        vals = {k: np.array([getattr(e, k) for e in evs if e is not None]) for k in keys}
        cells = " ".join(f"{' '.join(f'{q:.2f}' for q in np.quantile(vals[k], [0.05, 0.5, 0.95])):>22s}" for k in keys)
        print(f"{kind:9s} {cells}  {100 * np.mean(calls):5.1f}")
        if kind != "music":
            for e, c in zip(evs, calls):
                if c:
                    print("   passed as music:", e.as_dict())
        else:
            from mgr.synth.styles import GENRES

            for i, (e, c) in enumerate(zip(evs, calls)):
                if not c:
                    print("   refused:", GENRES[i % len(GENRES)], e.as_dict(), gate.decide(e))
    print(f"({time.perf_counter() - t0:.1f} s)")
    if args.dump:
        import json

        with open(args.dump, "w") as f:
            json.dump(dump, f)


if __name__ == "__main__":
    main()
