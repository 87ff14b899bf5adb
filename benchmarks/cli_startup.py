"""Start-up latency of `mgr --help` against a naive CLI that imports its stack at the top.

Run: uv run python benchmarks/cli_startup.py [--repeat 5]
The naive baseline is the same typer app preceded by the imports a typical MIR script does
at module top (numpy, pandas, librosa, sklearn, tensorflow): what gtzan.keras's app.py does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

NAIVE = """
import numpy, pandas, librosa, sklearn.svm, tensorflow
from mgr.cli import app
app()
"""


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    mgr = str(Path(sys.executable).parent / "mgr")
    ours = timed([mgr, "--help"], a.repeat)
    naive = timed([sys.executable, "-c", NAIVE, "--help"], max(1, a.repeat // 2))
    print(f"mgr --help          : {ours * 1000:7.0f} ms (median of {a.repeat}; goal < 500 ms)")
    print(f"naive eager imports : {naive * 1000:7.0f} ms")
    print(f"ratio naive/ours    : {naive / ours:7.1f}x")


if __name__ == "__main__":
    main()
