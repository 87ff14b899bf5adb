"""Portable numerics: the same bits on every IEEE-754 machine, whatever its SIMD level or libm.

NumPy's transcendental ufuncs (``log``, ``log10``, ``exp``, ``sin``, ``cos``, ``**`` ...) dispatch
at run time to AVX-512 / AVX2 / baseline loops or to glibc's FMA variants, and BLAS products
(``@``, ``np.dot``) pick their kernel and thread partition by CPU: each is accurate, but their last
bits differ between machines (measured: ``NPY_DISABLE_CPU_FEATURES``, ``OPENBLAS_CORETYPE``,
``GLIBC_TUNABLES=glibc.cpu.hwcaps=-FMA,...`` and the BLAS thread count each move them). A store or
table built from them then differs by an ulp here and there, and so does every hash, model and
metric downstream.

The functions here are built only from operations IEEE 754 rounds correctly and NumPy does not
reorder -- ``+ - * /``, ``sqrt``, ``frexp``/``ldexp``, ``rint``, comparisons -- and from
reductions in a fixed order (``np.einsum`` without BLAS, element-wise accumulation). They run in
float64 and are accurate to about 1 ulp of float64, so a float32 result agrees with NumPy's own to
float32 rounding (tested), and they cost a few element-wise passes (``benchmarks/portable.py``).

Used wherever a value is stored: the log-mel front end, the handcrafted-feature kernels and the
tempo features. Cheap exact operations (sorting, medians, FFTs, ``np.sum``/``np.mean``/``np.var``,
``cumsum``) are already machine-independent in NumPy (measured under the same knobs) and stay as
they are.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["abs2", "cos", "exp", "exp2", "hann", "log", "log10", "log1p", "log2", "matmul", "power", "sin"]

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (fdlibm): LN2_HI * k is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634074
INV_LN10 = 0.43429448190325182765  # 1 / ln 10
_LOG10_2 = 0.30102999566398119521
_SQRT_HALF = 0.70710678118654752440
_PI_2_HI = 1.57079632673412561417e+00  # pi/2 in three parts (fdlibm): PIO2_1 * k exact for small k
_PI_2_MID = 6.07710050650619224932e-11
_PI_2_LO = 2.02226624879595063154e-21
_2_OVER_PI = 6.36619772367581382433e-01
# series coefficients, highest power first (Python floats: 1/n! correctly rounded, the same everywhere)
_EXP_COEF = tuple(1.0 / math.factorial(n) for n in range(14, -1, -1))
_SIN_COEF = tuple((-1.0) ** n / math.factorial(2 * n + 1) for n in range(8, -1, -1))
_COS_COEF = tuple((-1.0) ** n / math.factorial(2 * n) for n in range(9, -1, -1))


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _log_mantissa(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(k, log(m))`` with ``x = m * 2**k`` and ``m`` in ``[sqrt(1/2), sqrt(2))`` (x > 0, finite):
    ``log(m) = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, ``|s| < 0.1716``, by its odd series to s**23
    (truncation error < 0.1716**25 / 25 ~ 3e-21, below float64 rounding). In-place steps: each
    is one correctly rounded operation, as in the expression form."""
    m, k = np.frexp(np.atleast_1d(x))  # m in [0.5, 1); arrays, also for a 0-d input
    small = m < _SQRT_HALF
    m[small] *= 2.0
    k = k.astype(np.float64)
    k -= small
    s = m - 1.0
    m += 1.0
    s /= m
    z = s * s
    # Horner in z of sum_{j>=0} z**j / (2j + 1), j = 0..11
    acc = np.full_like(z, 1.0 / 23.0)
    for j in range(10, -1, -1):
        acc *= z
        acc += 1.0 / (2 * j + 1)
    acc *= s
    acc *= 2.0
    return k, acc


def _special(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """log's edge values: log(0) = -inf, log(negative) = nan, log(inf) = inf, log(nan) = nan."""
    if np.all((x > 0) & np.isfinite(x)):
        return r
    r = np.where(x == 0, -np.inf, r)
    r = np.where(x < 0, np.nan, r)
    r = np.where(np.isposinf(x), np.inf, r)
    return np.where(np.isnan(x), np.nan, r)


def log(x) -> np.ndarray:
    """Natural logarithm, float64, machine-independent (``np.log`` within ~1 ulp)."""
    x = _f64(x)
    safe = np.where((x > 0) & np.isfinite(x), x, 1.0)
    k, lm = _log_mantissa(safe)
    return _special(x, k * _LN2_HI + (lm + k * _LN2_LO)).reshape(x.shape)


def log2(x) -> np.ndarray:
    """Base-2 logarithm, float64, machine-independent (exact for powers of two)."""
    x = _f64(x)
    safe = np.where((x > 0) & np.isfinite(x), x, 1.0)
    k, lm = _log_mantissa(safe)
    return _special(x, k + lm * _INV_LN2).reshape(x.shape)


def log10(x) -> np.ndarray:
    """Base-10 logarithm, float64, machine-independent."""
    x = _f64(x)
    ok = (x > 0) & np.isfinite(x)
    safe = x if ok.all() else np.where(ok, x, 1.0)
    k, lm = _log_mantissa(safe)
    k *= _LOG10_2
    lm *= INV_LN10
    k += lm
    return (k if ok.all() else _special(x, k)).reshape(x.shape)


def log1p(x) -> np.ndarray:
    """``log(1 + x)``, float64, machine-independent, accurate for small ``x`` too (the classic
    correction ``log(u) - ((u - 1) - x) / u`` with ``u = 1 + x``)."""
    x = _f64(x)
    u = 1.0 + x
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(u == 1.0, 0.0, ((u - 1.0) - x) / np.where(u == 0, 1.0, u))
    r = np.where(u == 1.0, x, log(u) - corr)
    return np.where(np.isposinf(x), np.inf, r)


def exp(x) -> np.ndarray:
    """``e**x``, float64, machine-independent (``np.exp`` within ~1 ulp; overflow to inf, underflow
    to 0 as NumPy, nan stays nan)."""
    x = _f64(x)
    xc = np.clip(np.where(np.isnan(x), 0.0, x), -745.2, 709.8)
    k = np.rint(xc * _INV_LN2)
    r = (xc - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln2/2 (+ a little)
    # e**r by its Taylor series to r**14 (|r| < 0.35: truncation < 0.35**15/15! ~ 1.2e-19), Horner
    acc = np.full_like(r, _EXP_COEF[0])
    for c in _EXP_COEF[1:]:
        acc = acc * r + c
    # 2**k may not be representable in one step near the range ends: scale in two halves
    k1 = np.floor(k / 2.0)
    with np.errstate(over="ignore"):
        out = np.ldexp(np.ldexp(acc, k1.astype(np.int64)), (k - k1).astype(np.int64))
    out = np.where(x > 709.8, np.inf, out)
    out = np.where(x < -745.2, 0.0, out)
    return np.where(np.isnan(x), np.nan, out)


def exp2(x) -> np.ndarray:
    """``2**x``, float64, machine-independent (exact for integer ``x``)."""
    x = _f64(x)
    k = np.floor(np.where(np.isfinite(x), x, 0.0))
    f = x - k  # exact
    out = np.ldexp(exp(f * _LN2_HI + f * _LN2_LO), np.clip(k, -1100, 1100).astype(np.int64))
    out = np.where(np.isposinf(x), np.inf, np.where(np.isneginf(x), 0.0, out))
    return np.where(np.isnan(x), np.nan, out)


def power(x, p: float) -> np.ndarray:
    """``x ** p`` for ``x >= 0`` and a real exponent (``exp(p log x)``), float64, machine-independent.
    ``0 ** p`` is 0 for ``p > 0`` (1 for ``p == 0``). Integer exponents 1 and 2 are exact products."""
    x = _f64(x)
    p = float(p)
    if p == 1.0:
        return x.copy()
    if p == 2.0:
        return x * x
    if p == 0.5:
        return np.sqrt(x)
    with np.errstate(invalid="ignore"):
        out = exp(p * log(np.where(x > 0, x, 1.0)))
    out = np.where(x == 0, 0.0 if p > 0 else (1.0 if p == 0 else np.inf), out)
    return np.where(x < 0, np.nan, out)


def _sincos_reduced(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, sin r, cos r)`` with ``x = q * pi/2 + r``, ``|r| <= pi/4`` (Cody-Waite reduction in
    three parts: accurate for ``|x|`` up to ~1e6, which covers windows and phases)."""
    q = np.rint(x * _2_OVER_PI)
    r = ((x - q * _PI_2_HI) - q * _PI_2_MID) - q * _PI_2_LO
    z = r * r
    # Taylor series to r**17 (sin) / r**18 (cos) for |r| <= pi/4 (truncation < 1e-19), Horner in r**2
    s = np.full_like(z, _SIN_COEF[0])
    for k in _SIN_COEF[1:]:
        s = s * z + k
    c = np.full_like(z, _COS_COEF[0])
    for k in _COS_COEF[1:]:
        c = c * z + k
    return q, r * s, c


def sin(x) -> np.ndarray:
    """Sine, float64, machine-independent (|x| up to ~1e6; nan for inf/nan)."""
    x = _f64(x)
    q, s, c = _sincos_reduced(np.where(np.isfinite(x), x, 0.0))
    qm = np.mod(q, 4.0)
    out = np.where(qm == 0, s, np.where(qm == 1, c, np.where(qm == 2, -s, -c)))
    return np.where(np.isfinite(x), out, np.nan)


def cos(x) -> np.ndarray:
    """Cosine, float64, machine-independent (|x| up to ~1e6; nan for inf/nan)."""
    x = _f64(x)
    q, s, c = _sincos_reduced(np.where(np.isfinite(x), x, 0.0))
    qm = np.mod(q, 4.0)
    out = np.where(qm == 0, c, np.where(qm == 1, -s, np.where(qm == 2, -c, s)))
    return np.where(np.isfinite(x), out, np.nan)


@functools.lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    w = 0.5 - 0.5 * cos(2.0 * np.pi * np.arange(n, dtype=np.float64) / n)
    w.setflags(write=False)
    return w


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of length ``n`` (``scipy.signal.get_window("hann", n)``, as librosa
    uses it), float64, read-only, machine-independent."""
    return _hann(int(n))


def abs2(z: np.ndarray, dtype=None) -> np.ndarray:
    """``|z|**2`` of a complex array as ``re*re + im*im`` (``np.abs`` on complex dispatches by SIMD
    level; this is two correctly rounded products and a sum), in ``dtype`` (default: the real dtype
    of ``z``)."""
    re, im = z.real, z.imag
    if dtype is not None:
        re, im = re.astype(dtype, copy=False), im.astype(dtype, copy=False)
    out = re * re
    out += im * im
    return out


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for 2-D arrays with the sum over the inner axis in a fixed order (``np.einsum``
    without BLAS): the same bits whatever BLAS kernel, core type or thread count the machine has.
    For the small products of the front end and the feature kernels (a mel or chroma filterbank,
    a DCT) the cost is a few milliseconds per clip."""
    if out is None:
        return np.einsum("ij,jk->ik", a, b, optimize=False)
    return np.einsum("ij,jk->ik", a, b, out=out, optimize=False)
