# PyTorch's side of bench/scale.ts: one run of a fixed number of steps of an MLP 784-H..-10 with
# 2 trainers, timed per step, each process's peak RSS. Prints one JSON object on stdout.
#   /usr/bin/python3 bench/torch_scale.py --mode ps|ddp --hidden H --depth D --steps N [--batch 64]
#
# --mode ps: the batch-updating parameter server of ../shared/anchors/torch_batch_ps.py (rpc +
#   @rpc.functions.async_execution, sync mode: the server waits for every trainer's gradient,
#   averages, steps SGD once, answers all with fresh parameters), rank 0 the server.
# --mode ddp: DistributedDataParallel over gloo (as bench/torch_collective.py starts its group),
#   default 25 MB buckets (psrpc's --bucket-kb default is the same 25,600 KiB).
# Data: synthetic, N batches of --batch random N(0, 1) inputs of 784 features and uniform labels
# of 10 classes per trainer, made before the clock starts (psrpc's side: --dataset synthetic).
# One thread per process (torch.set_num_threads(1); the harness sets OPENBLAS_NUM_THREADS=1).
# A step is the trainer's whole step: copy the parameters in (ps), forward, backward, and the
# exchange (ps: rpc_sync update_and_fetch; ddp: backward's all-reduce, then SGD step). Each
# process reports resource.getrusage(RUSAGE_SELF).ru_maxrss (the kernel's RSS high-water mark,
# the same counter as /proc/<pid>/status VmHWM) just before it exits, with its pid.
import argparse, json, os, resource, socket, statistics, sys, threading, time
import torch, torch.nn as nn, torch.nn.functional as F
import torch.multiprocessing as mp
import torch.distributed as dist
import torch.distributed.rpc as rpc


def parse():
    p = argparse.ArgumentParser()
    p.add_argument('--mode', choices=('ps', 'ddp'), required=True)
    p.add_argument('--hidden', type=int, required=True); p.add_argument('--depth', type=int, default=2)
    p.add_argument('--steps', type=int, required=True); p.add_argument('--batch', type=int, default=64)
    p.add_argument('--trainers', type=int, default=2); p.add_argument('--lr', type=float, default=0.05)
    p.add_argument('--port', type=int, default=0, help='rendezvous port (default: a free one)')
    a = p.parse_args()
    if a.hidden < 1 or a.depth < 0 or a.steps < 1 or a.batch < 1 or a.trainers < 1:
        p.error(f'--hidden, --steps, --batch, --trainers must be >= 1 and --depth >= 0, got {a.hidden}, {a.steps}, {a.batch}, {a.trainers}, {a.depth}')
    return a


A = parse()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def net():
    torch.manual_seed(0)
    widths = [784] + [A.hidden] * A.depth + [10]
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2: layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def parameters():
    widths = [784] + [A.hidden] * A.depth + [10]
    return sum(widths[i] * widths[i + 1] + widths[i + 1] for i in range(len(widths) - 1))


def batches(rank):
    g = torch.Generator().manual_seed(rank)
    return [(torch.randn(A.batch, 784, generator=g), torch.randint(0, 10, (A.batch,), generator=g)) for _ in range(A.steps)]


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# ---- batch-updating parameter server (torch_batch_ps.py, sync mode) ----

class BatchPS:
    def __init__(self, n):
        self.model = net(); self.lock = threading.Lock(); self.n = n; self.count = 0
        self.future = torch.futures.Future()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=A.lr)
        for q in self.model.parameters(): q.grad = torch.zeros_like(q)
    def params(self): return [q.detach().clone() for q in self.model.parameters()]
    @staticmethod
    @rpc.functions.async_execution
    def update_and_fetch(ref, grads):
        self = ref.local_value()
        with self.lock:
            for q, g in zip(self.model.parameters(), grads): q.grad += g
            self.count += 1; fut = self.future
            if self.count >= self.n:
                for q in self.model.parameters(): q.grad /= self.n
                self.opt.step(); self.opt.zero_grad(set_to_none=False); self.count = 0
                fut.set_result(self.params()); self.future = torch.futures.Future()
        return fut
    @staticmethod
    def get_params(ref): return ref.local_value().params()


_ps = None
_ps_lock = threading.Lock()
def get_batch_ps(n):
    global _ps
    with _ps_lock:
        if _ps is None: _ps = BatchPS(n)
        return _ps


def ps_worker(rank, world, port, q):
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'; os.environ['MASTER_PORT'] = str(port)
    opts = rpc.TensorPipeRpcBackendOptions(num_worker_threads=16, rpc_timeout=600, _transports=['uv'])
    rpc.init_rpc('ps' if rank == 0 else f'trainer{rank}', rank=rank, world_size=world, rpc_backend_options=opts)
    try:
        if rank != 0:
            ps = rpc.remote('ps', get_batch_ps, args=(world - 1,))
            data = batches(rank)
            model = net(); params = rpc.rpc_sync('ps', BatchPS.get_params, args=(ps,))
            times = []
            t0 = time.perf_counter()
            for x, y in data:
                s = time.perf_counter()
                with torch.no_grad():
                    for m, v in zip(model.parameters(), params): m.copy_(v)
                model.zero_grad()
                F.cross_entropy(model(x), y).backward()
                params = rpc.rpc_sync('ps', BatchPS.update_and_fetch, args=(ps, [m.grad for m in model.parameters()]))
                times.append(time.perf_counter() - s)
            loop = time.perf_counter() - t0
            q.put({'role': 'trainer', 'rank': rank, 'times': times, 'loop': loop})
    finally:
        rpc.shutdown()  # waits for every worker: the server's peak covers the whole run
    q.put({'role': 'server' if rank == 0 else 'trainer', 'rank': rank, 'pid': os.getpid(), 'peakRssBytes': peak_rss()})


# ---- DistributedDataParallel over gloo ----

def ddp_worker(rank, world, port, q):
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'] = '127.0.0.1'; os.environ['MASTER_PORT'] = str(port)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(net())
        opt = torch.optim.SGD(model.parameters(), lr=A.lr)
        data = batches(rank + 1)
        times = []
        dist.barrier()
        t0 = time.perf_counter()
        for x, y in data:
            s = time.perf_counter()
            opt.zero_grad(set_to_none=False)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - s)
        loop = time.perf_counter() - t0
        q.put({'role': 'trainer', 'rank': rank + 1, 'times': times, 'loop': loop})
        dist.barrier()
    finally:
        dist.destroy_process_group()
    q.put({'role': 'trainer', 'rank': rank + 1, 'pid': os.getpid(), 'peakRssBytes': peak_rss()})


def main():
    port = A.port or free_port()
    ctx = mp.get_context('spawn')
    q = ctx.Queue()
    world = A.trainers + 1 if A.mode == 'ps' else A.trainers
    target = ps_worker if A.mode == 'ps' else ddp_worker
    procs = [ctx.Process(target=target, args=(r, world, port, q)) for r in range(world)]
    t0 = time.perf_counter()
    for p in procs: p.start()
    # every process sends a peak, every trainer also its times
    want = world + A.trainers
    got = []
    while len(got) < want:
        try:
            got.append(q.get(timeout=1))
        except Exception:  # queue.Empty: fail when a worker died without reporting
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs: p.kill()
                print(f'torch_scale.py --mode {A.mode}: a worker exited with {dead[0]} before reporting', file=sys.stderr); sys.exit(1)
    for p in procs: p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        print(f'torch_scale.py --mode {A.mode}: workers exited with {bad}', file=sys.stderr); sys.exit(1)
    timed = sorted((m for m in got if 'times' in m), key=lambda m: m['rank'])
    peaks = sorted((m for m in got if 'peakRssBytes' in m), key=lambda m: (m['role'] != 'server', m['rank']))
    first = timed[0]
    out = {
        'mode': A.mode, 'torch': torch.__version__, 'hidden': A.hidden, 'depth': A.depth, 'batch': A.batch, 'trainers': A.trainers,
        'parameters': parameters(), 'steps': A.steps,
        # the first trainer's loop over its steps, as psrpc's trainSeconds / steps
        'stepSeconds': first['loop'] / A.steps, 'stepSecondsMedian': statistics.median(first['times']),
        'stepSecondsPerTrainer': [m['loop'] / A.steps for m in timed],
        'processes': [{'role': m['role'], 'rank': m['rank'], 'pid': m['pid'], 'peakRssBytes': m['peakRssBytes']} for m in peaks],
        'launcherPid': os.getpid(), 'launcherPeakRssBytes': peak_rss(), 'wallSeconds': time.perf_counter() - t0,
    }
    print(json.dumps(out))


if __name__ == '__main__':
    main()
