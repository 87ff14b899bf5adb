"""stages/_common.py pins what differs between machines in the last bit: glibc's libm variants
(FMA/AVX2 or not) and NumPy's SIMD dispatch, by re-executing a stage under fixed settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "stages"))

import _common  # noqa: E402

# a stage-like script: what it computes with libm (math.exp...) and NumPy (np.exp, np.log, np.sin)
PROBE = """
import hashlib, math, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import numpy as np
x = np.linspace(-30, 30, 200_001)
h = hashlib.sha256()
h.update(np.array([math.exp(v) + math.log(abs(v) + 1e-3) + math.sin(v) for v in x[::7]]).tobytes())
h.update((np.exp(x) + np.log(np.abs(x) + 1e-3) + np.sin(x)).tobytes())
print(h.hexdigest())
"""

LOWEST = {"NPY_DISABLE_CPU_FEATURES": "", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2_Usable,-FMA_Usable,-AVX2,-FMA"}


def _dispatch_targets() -> str:
    import numpy as np

    umath = np._core._multiarray_umath
    return " ".join(k for k in umath.__cpu_dispatch__ if umath.__cpu_features__.get(k))


def test_pins_on_glibc_x86_64() -> None:
    pins = _common.machine_pins({}, "x86_64", "glibc 2.36")
    assert pins["NPY_ENABLE_CPU_FEATURES"] == "X86_V2"
    caps = pins["GLIBC_TUNABLES"].split("=", 1)[1].split(",")
    assert {"-FMA", "-AVX2", "-FMA4", "-FMA_Usable", "-AVX2_Usable"} <= set(caps)
    # what is already pinned is not pinned again (no endless re-execution)
    again = {**{k: v for k, v in pins.items() if v is not None}}
    assert _common.machine_pins(again, "x86_64", "glibc 2.36") == {}


def test_pins_keep_what_the_user_set() -> None:
    pins = _common.machine_pins({"GLIBC_TUNABLES": "glibc.malloc.check=0:glibc.cpu.hwcaps=-AVX512F",
                                 "NPY_DISABLE_CPU_FEATURES": "AVX512_SPR"}, "x86_64", "glibc 2.39")
    assert pins["GLIBC_TUNABLES"].startswith("glibc.malloc.check=0:glibc.cpu.hwcaps=-AVX512F,")
    assert pins["GLIBC_TUNABLES"].count("glibc.cpu.hwcaps=") == 1
    assert pins["NPY_DISABLE_CPU_FEATURES"] is None  # NumPy refuses both lists; ours disables more
    assert "GLIBC_TUNABLES" not in _common.machine_pins({}, "x86_64", "")  # musl: no glibc tunables
    assert _common.machine_pins({}, "riscv64", "") == {}
    assert _common.machine_pins({}, "aarch64", "glibc 2.36")["NPY_ENABLE_CPU_FEATURES"] == "ASIMD"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables and NumPy dispatch on Linux")
def test_a_stage_computes_the_same_bits_under_another_simulated_machine(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    shutil.copy(ROOT / "stages" / "_common.py", tmp_path / "stages" / "_common.py")
    (tmp_path / "stages" / "probe.py").write_text(PROBE)
    lowest = {**LOWEST, "NPY_DISABLE_CPU_FEATURES": _dispatch_targets()}
    if not lowest["NPY_DISABLE_CPU_FEATURES"]:
        lowest.pop("NPY_DISABLE_CPU_FEATURES")
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "NPY_DISABLE_CPU_FEATURES",
                                                             "NPY_ENABLE_CPU_FEATURES", "MGR_NO_MACHINE_PIN")}

    def probe(env: dict[str, str]) -> str:
        r = subprocess.run([sys.executable, str(tmp_path / "stages" / "probe.py")], env={**base, **env},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout.split()[0]

    # without the pin the same script differs on a CPU with FMA or AVX-512 (this one, usually) ...
    unpinned = {"MGR_NO_MACHINE_PIN": "1"}
    if probe(unpinned) == probe({**lowest, **unpinned}):
        pytest.skip("this CPU computes like the baseline anyway (no FMA, no AVX-512): nothing to compare")
    # ... and with it, it is the same bits
    assert probe({}) == probe(lowest)
