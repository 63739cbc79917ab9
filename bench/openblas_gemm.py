# The shapes of bench/gemm.ts through OpenBLAS sgemm (numpy float32 matmul), one thread.
#   OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/openblas_gemm.py
# Two columns: `numpy` is np.matmul (transposed operands are passed as transposed views, which numpy
# hands to sgemm as Trans flags without copying); `cblas` calls cblas_sgemm of the same library
# through ctypes with prebuilt arguments, which removes most of numpy's per-call dispatch (~1 us,
# a large share of a 64x64x64 product). Each figure is the median of 7 repetitions of ~25 ms.
import ctypes
import ctypes.util
import json
import os
import sys
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import time
import numpy as np

SHAPES = [
    ("fc1 forward  X·W1^T", 64, 64, 784, False, True),
    ("fc1 dW1 = dY^T·X", 64, 784, 64, True, False),
    ("fc1 dX = dY·W1", 64, 784, 64, False, False),
    ("fc2 forward  H·W2^T", 64, 64, 64, False, True),
    ("fc2 dW2 = dY^T·H", 64, 64, 64, True, False),
    ("fc2 dH = dY·W2", 64, 64, 64, False, False),
    ("fc3 forward  H·W3^T", 64, 10, 64, False, True),
    ("fc3 dW3 = dY^T·H", 10, 64, 64, True, False),
    ("fc3 dH = dY·W3", 64, 64, 10, False, False),
    ("square 1024^3", 1024, 1024, 1024, False, False),
]


def load_cblas():
    for name in ("libblas.so.3", "libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.cblas_sgemm.restype = None
            return lib
        except (OSError, AttributeError):
            continue
    return None


def timed(run, flops):
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            run()
        if time.perf_counter() - t0 > 0.025:
            break
        inner *= 2
    rates = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(inner):
            run()
        rates.append(flops * inner / (time.perf_counter() - t0) / 1e9)
    return sorted(rates)[len(rates) // 2]


def cblas_rate(lib, m, n, k, ta, tb):
    rng = np.random.default_rng(0)
    a = (rng.random((k, m) if ta else (m, k), dtype=np.float32) - 0.5)
    b = (rng.random((n, k) if tb else (k, n), dtype=np.float32) - 0.5)
    c = np.zeros((m, n), dtype=np.float32)
    fp = ctypes.POINTER(ctypes.c_float)
    args = (ctypes.c_int(101), ctypes.c_int(112 if ta else 111), ctypes.c_int(112 if tb else 111),
            ctypes.c_int(m), ctypes.c_int(n), ctypes.c_int(k), ctypes.c_float(1.0),
            a.ctypes.data_as(fp), ctypes.c_int(a.shape[1]), b.ctypes.data_as(fp), ctypes.c_int(b.shape[1]),
            ctypes.c_float(0.0), c.ctypes.data_as(fp), ctypes.c_int(n))
    sgemm = lib.cblas_sgemm
    return timed(lambda: sgemm(*args), 2.0 * m * n * k)


def rate(m, n, k, ta, tb):
    rng = np.random.default_rng(0)
    a = (rng.random((k, m) if ta else (m, k), dtype=np.float32) - 0.5)
    b = (rng.random((n, k) if tb else (k, n), dtype=np.float32) - 0.5)
    opa = a.T if ta else a
    opb = b.T if tb else b
    c = np.empty((m, n), dtype=np.float32)
    return timed(lambda: np.matmul(opa, opb, out=c), 2.0 * m * n * k)


if __name__ == "__main__":
    if "--json" in sys.argv:
        # One object per shape, in SHAPES order, for bench/gemm.ts to print beside its own figures.
        lib = load_cblas()
        print(json.dumps([{"m": m, "n": n, "k": k, "transA": ta, "transB": tb,
                           "numpy": rate(m, n, k, ta, tb),
                           "cblas": cblas_rate(lib, m, n, k, ta, tb) if lib else None}
                          for _, m, n, k, ta, tb in SHAPES]))
        sys.exit(0)
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        print("numpy blas:", cfg.get("name"), cfg.get("version"))
    except Exception:
        pass
    lib = load_cblas()
    print("OpenBLAS sgemm, one thread, GFLOP/s")
    print("shape                        m     n     k  op     numpy     cblas")
    for name, m, n, k, ta, tb in SHAPES:
        op = ("T" if ta else "N") + ("T" if tb else "N")
        direct = f"{cblas_rate(lib, m, n, k, ta, tb):9.1f}" if lib else "      n/a"
        print(f"{name:24} {m:5} {n:5} {k:5}  {op} {rate(m, n, k, ta, tb):9.1f} {direct}")
