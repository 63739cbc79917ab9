# The PyTorch peer of bench/conv.ts: conv2d forward, input gradient and weight (+ bias) gradient of
# the cnn preset's two convolutions, one thread, GFLOP/s.
#   OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_conv.py [--json] [--batch 64]
# The gradients are timed through aten::convolution_backward with one output selected, which is
# the very call autograd makes for a Conv2d (so each direction is measured alone, as ours are).
# Each figure is the median of 7 repetitions of ~50 ms. Prints whether oneDNN (mkldnn) is enabled
# and which convolution kernel torch dispatched to (from the profiler).
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)

# name, c, h, w, oc, k, pad (stride 1, dilation 1, groups 1), as the cnn preset on 28x28 images
SHAPES = [
    ("conv1 1->16 5x5 28x28", 1, 28, 28, 16, 5, 2),
    ("conv2 16->32 5x5 14x14", 16, 14, 14, 32, 5, 2),
]


def timed(run, flops):
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            run()
        if time.perf_counter() - t0 > 0.05:
            break
        inner *= 2
    rates = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(inner):
            run()
        rates.append(flops * inner / (time.perf_counter() - t0) / 1e9)
    return sorted(rates)[len(rates) // 2]


def kernel_names(run):
    with torch.autograd.profiler.profile() as prof:
        run()
    return sorted({e.name for e in prof.function_events if "conv" in e.name.lower()})


def measure(n, c, h, w, oc, k, pad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(oc, c, k, k, generator=g) * 0.1
    bias = torch.randn(oc, generator=g)
    oh = h + 2 * pad - k + 1
    ow = w + 2 * pad - k + 1
    dy = torch.randn(n, oc, oh, ow, generator=g)
    flops = 2.0 * n * oc * oh * ow * c * k * k
    conv = torch.ops.aten.convolution_backward
    args = (dy, x, weight, [oc], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1)
    with torch.no_grad():
        fwd = lambda: F.conv2d(x, weight, bias, padding=pad)
        dgrad = lambda: conv(*args, [True, False, False])
        wgrad = lambda: conv(*args, [False, True, True])
        out = {
            "forward": timed(fwd, flops),
            "inputGrad": timed(dgrad, flops),
            "weightGrad": timed(wgrad, flops),
            "kernels": kernel_names(fwd) + kernel_names(wgrad),
        }
    return out


if __name__ == "__main__":
    batch = 64
    if "--batch" in sys.argv:
        batch = int(sys.argv[sys.argv.index("--batch") + 1])
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnnAvailable": torch.backends.mkldnn.is_available(),
        "mkldnnEnabled": bool(torch.backends.mkldnn.enabled),
        "shapes": [],
    }
    for name, c, h, w, oc, k, pad in SHAPES:
        r = measure(batch, c, h, w, oc, k, pad)
        info["shapes"].append({"name": name, "n": batch, "c": c, "h": h, "w": w, "oc": oc, "k": k, "pad": pad, **r})
    if "--json" in sys.argv:
        print(json.dumps(info))
        sys.exit(0)
    print(f"torch {info['torch']}, {info['threads']} thread, mkldnn available={info['mkldnnAvailable']} "
          f"enabled={info['mkldnnEnabled']}")
    print("shape                      forward  inputGrad  weightGrad   (GFLOP/s)  kernels")
    for s in info["shapes"]:
        print(f"{s['name']:24} {s['forward']:9.1f} {s['inputGrad']:10.1f} {s['weightGrad']:11.1f}   "
              f"{', '.join(s['kernels'])}")
