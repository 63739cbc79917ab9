// Reverse-mode autograd: graph nodes recorded by ops, and the engine that runs them backwards.
//
// Every tracked op output holds its `gradFn` node, which holds the op's inputs; backward
// collects the nodes reachable from the roots, orders them (consumers before producers) and
// runs each node's backward once its whole gradient has arrived. The engine passes gradients
// as storages it owns (Float32Arrays on the CPU, DeviceArrays on 'cuda'), so a node may overwrite its incoming gradient in place and hand it
// on (relu, dropout, log-softmax do), and nodes accumulate straight into a leaf's `.grad` with
// the kernels' beta/accumulate flags (linear's weight and bias gradients never pass through a
// temporary). After a backward the graph is released, as in PyTorch, unless `retainGraph`.
import type { Tensor, DType, Shape } from './tensor.js';
import { errors } from './errors.js';
import { getBackend, type Device, type FloatStorage } from './backend.js';

let gradEnabled = true;

/** Whether ops record graph nodes right now. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Switches recording on or off; returns the previous setting. */
export function setGradEnabled(flag: boolean): boolean {
  const prev = gradEnabled;
  gradEnabled = flag;
  return prev;
}

/**
 * Runs `fn` with recording off (evaluation, optimizer-style in-place updates) and returns its
 * result. Synchronous only: the mode is restored when `fn` returns, not when a promise settles.
 */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs `fn` with recording on (inside a `noGrad` region). */
export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op with these inputs must record a node. */
export function tracks(a: Tensor<DType>, b?: Tensor<DType> | null, c?: Tensor<DType> | null): boolean {
  return gradEnabled && (a.requiresGrad || (b != null && b.requiresGrad) || (c != null && c.requiresGrad));
}

/**
 * A node of the graph: the backward of one op application. Subclass it for a built-in op, or use
 * `customFunction` (function.ts) to build one from closures.
 */
export abstract class Node {
  /** The op's name, for errors and debugging. */
  abstract readonly name: string;
  /** The op's tensor inputs; null where an input needs no gradient. */
  readonly inputs: readonly (Tensor | null)[];
  /** Shape of the op's output (and of the gradient `backward` receives). */
  readonly outputShape: Shape;
  /** The gradient summed so far for this node's output during a backward pass. @internal */
  pending: FloatStorage | null = null;
  /** Visit mark of the engine's ordering pass. @internal */
  mark = 0;
  /** Set when a backward without `retainGraph` ran this node: its saved buffers may be gone. */
  released = false;
  /**
   * True when `backward` neither keeps `gradOut` nor hands it on, so the engine may recycle it
   * (linear, matmul). Leave false for nodes whose backward lets the array escape.
   */
  consumesGradOut = false;

  /** The device of the op's inputs and output (and of the gradients its backward sees). */
  readonly device: Device;

  constructor(inputs: readonly (Tensor<DType> | null | undefined)[], outputShape: Shape) {
    let device: Device = 'cpu';
    for (const t of inputs) {
      if (t != null) {
        device = t.device;
        break;
      }
    }
    this.device = device;
    this.inputs = inputs.map((t) => (t != null && t.requiresGrad ? (t as Tensor) : null));
    this.outputShape = outputShape;
  }

  /**
   * Computes the gradients of the inputs from `gradOut` (the gradient of the output, owned by
   * the engine: the node may overwrite it and hand it on with `sink.give`) and delivers them
   * through `sink`. Only inputs with `inputs[i] !== null` need one.
   */
  abstract backward(gradOut: FloatStorage, sink: GradSink): void;

  /** Records `output` as produced by this node. */
  attach<T extends Tensor>(output: T): T {
    output.requiresGrad = true;
    output.gradFn = this;
    return output;
  }
}

/**
 * Where a node delivers input gradients during backward. Two ways:
 * - `give(i, buf)`: hand over a finished gradient array (the engine owns it afterwards);
 * - `target(i)` then write: returns the array to accumulate into; `fresh` says whether it holds
 *   garbage (overwrite it, e.g. beta = 0) or a partial sum (add to it, beta = 1).
 */
export class GradSink {
  /** After `target`: true when the returned array must be overwritten, not added to. */
  fresh = false;
  /** True when the graph stays usable after this pass: nodes must not consume saved buffers. */
  retainGraph = false;
  /** @internal */ node: Node | null = null;
  /** @internal */ into: Map<Tensor, Float32Array> | null = null;

  /** Hands over `buf` (on input i's device) as (a part of) input i's gradient. `buf` must not be used afterwards. */
  give(i: number, buf: FloatStorage): void {
    const t = this.node!.inputs[i];
    if (!t) return;
    const b = getBackend(t.device);
    const fn = t.gradFn;
    if (fn) {
      if (fn.pending === null) fn.pending = buf;
      else {
        b.kernels.add(fn.pending, buf, fn.pending);
        b.recycle(buf);
      }
      return;
    }
    if (this.into) {
      const into = this.intoFor(t);
      const acc = into.get(t);
      if (acc === undefined) into.set(t, buf as Float32Array);
      else {
        b.kernels.add(acc, buf, acc);
        b.recycle(buf);
      }
      return;
    }
    if (t.grad) {
      const g = t.grad.storage as FloatStorage;
      b.kernels.add(g, buf, g);
      b.recycle(buf);
    } else if (t.gradStorage && t.gradStorage.length === t.size) {
      b.copy(buf, t.gradStorage);
      t.attachGrad(t.gradStorage);
      b.recycle(buf);
    } else t.attachGrad(buf);
  }

  /** The storage input i's gradient accumulates into; see `fresh`. */
  target(i: number): FloatStorage {
    const t = this.node!.inputs[i]!;
    const fn = t.gradFn;
    if (fn) {
      if (fn.pending !== null) {
        this.fresh = false;
        return fn.pending;
      }
      this.fresh = true;
      return (fn.pending = getBackend(t.device).take(t.size));
    }
    if (this.into) {
      const into = this.intoFor(t);
      let acc = into.get(t);
      this.fresh = acc === undefined;
      if (acc === undefined) into.set(t, (acc = new Float32Array(t.size)));
      return acc;
    }
    if (t.grad) {
      this.fresh = false;
      return t.grad.storage as FloatStorage;
    }
    this.fresh = true;
    const buf = t.gradStorage && t.gradStorage.length === t.size ? t.gradStorage : getBackend(t.device).zeros(t.size);
    t.attachGrad(buf);
    return buf;
  }

  /** The `into` map, which holds host arrays: a leaf on another device cannot collect there. */
  private intoFor(t: Tensor): Map<Tensor, Float32Array> {
    if (t.device !== 'cpu') {
      throw errors.autograd(`backward into a gradient map (distributed autograd) collects host arrays; leaf of shape [${t.shape.join(', ')}] is on '${t.device}': move it with .to('cpu')`);
    }
    return this.into!;
  }
}

/** Options of `backward`. */
export interface BackwardOptions {
  /**
   * Collect leaf gradients into this map (leaf -> gradient, summed) instead of `.grad`; how
   * distributed autograd keeps a context's gradients apart from local training.
   */
  into?: Map<Tensor, Float32Array>;
  /** Keep the graph usable for another backward (default false: nodes are released). */
  retainGraph?: boolean;
}

let epoch = 0;

const readyHooks = new Map<Tensor, (leaf: Tensor) => void>();

/**
 * Calls `fn(leaf)` during every later backward pass as soon as `leaf`'s gradient for that pass is
 * complete: after the last node that feeds it has run, while the rest of the pass goes on (what
 * data-parallel training starts a bucket's all-reduce from; PyTorch's post-accumulate-grad hook).
 * A leaf the pass does not reach gets no call. One hook per leaf; returns the function removing it.
 */
export function onGradReady(leaf: Tensor, fn: (leaf: Tensor) => void): () => void {
  if (leaf.gradFn) throw errors.autograd('onGradReady: the tensor is not a leaf (an op produced it); hooks watch parameters');
  if (readyHooks.has(leaf)) throw errors.autograd(`onGradReady: the leaf of shape [${leaf.shape.join(', ')}] has a hook already`);
  readyHooks.set(leaf, fn);
  return () => {
    if (readyHooks.get(leaf) === fn) readyHooks.delete(leaf);
  };
}

/** For each node, the hooked leaves whose gradient is complete once it has run. */
function readyAfter(order: readonly Node[]): Map<Node, Tensor[]> | null {
  if (readyHooks.size === 0) return null;
  // the engine runs order from the end to the start: a leaf's last node is its lowest index
  const last = new Map<Tensor, Node>();
  for (let i = order.length - 1; i >= 0; i--) {
    for (const t of order[i]!.inputs) if (t !== null && t.gradFn === null && readyHooks.has(t)) last.set(t, order[i]!);
  }
  if (last.size === 0) return null;
  const out = new Map<Node, Tensor[]>();
  for (const [t, node] of last) {
    const list = out.get(node);
    if (list) list.push(t);
    else out.set(node, [t]);
  }
  return out;
}

/**
 * Backpropagates from `roots`. `grads[i]` is the gradient of some scalar with respect to
 * `roots[i]` (same size); it may be omitted for one-element roots (then 1). Roots may be leaves
 * or any tracked tensor, so a pass can start in the middle of a graph: distributed autograd
 * resumes a backward on the worker that ran a forward with the gradients that came back over
 * the wire. Gradients of leaves accumulate into `.grad`, or into `options.into`. All arguments
 * are checked before anything changes. Backward runs with recording off; node backwards are
 * synchronous.
 */
export function backward(roots: readonly Tensor[], grads?: readonly (Tensor<'float32'> | Float32Array | null | undefined)[], options: BackwardOptions = {}): void {
  if (grads !== undefined && grads.length !== roots.length) {
    throw errors.argument('backward', 'grads.length', grads.length, `one gradient per root (${roots.length})`);
  }
  const seeds: (Float32Array | Tensor)[] = [];
  for (let i = 0; i < roots.length; i++) {
    const root = roots[i]!;
    if (!root.requiresGrad) throw errors.autograd(`backward: root ${i} does not require grad (no tracked op produced it and it is not a parameter)`);
    const g = grads?.[i];
    if (g == null) {
      if (root.size !== 1) throw errors.autograd(`backward: root ${i} has shape [${root.shape.join(', ')}]; a gradient is needed for a root with more than one element`);
      seeds.push(Float32Array.of(1));
    } else if (g instanceof Float32Array) {
      if (g.length !== root.size) throw errors.shape('backward', [root.shape, [g.length]], `a float32 gradient of ${root.size} elements for root ${i}`);
      seeds.push(g);
    } else {
      if (g.dtype !== 'float32' || g.size !== root.size) throw errors.shape('backward', [root.shape, g.shape], `a float32 gradient of ${root.size} elements for root ${i}`);
      if (g.device !== root.device) throw errors.device('backward', [root.device, g.device], `backward: root ${i} is on '${root.device}' but its gradient is on '${g.device}'`);
      seeds.push(g);
    }
  }
  // Every seed becomes a fresh storage on its root's device (a copy: the engine overwrites it).
  const seedStorage = (i: number): FloatStorage => {
    const s = seeds[i]!, b = getBackend(roots[i]!.device);
    if (s instanceof Float32Array) return b.fromHost(s);
    const copy = b.take(s.size);
    b.copy(s.storage as FloatStorage, copy);
    return copy;
  };
  const order = topoOrder(roots);
  const ready = readyAfter(order);
  const prevMode = gradEnabled;
  gradEnabled = false;
  // One sink per pass: a node's backward may itself run a backward (nested passes stay apart).
  const sink = new GradSink();
  sink.into = options.into ?? null;
  sink.retainGraph = options.retainGraph ?? false;
  try {
    for (let i = 0; i < roots.length; i++) {
      const root = roots[i]!;
      if (root.gradFn) {
        const fn = root.gradFn;
        if (fn.pending === null) fn.pending = seedStorage(i);
        else getBackend(root.device).kernels.add(fn.pending, seedStorage(i), fn.pending);
      } else {
        sink.node = rootNode(root);
        sink.give(0, seedStorage(i));
        readyHooks.get(root)?.(root);
      }
    }
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i]!;
      const g = node.pending;
      if (g !== null) {
        node.pending = null;
        sink.node = node;
        node.backward(g, sink);
        if (node.consumesGradOut) getBackend(node.device).recycle(g);
      }
      const done = ready?.get(node);
      if (done) for (const t of done) readyHooks.get(t)?.(t);
    }
    if (!sink.retainGraph) releaseGraph(order);
  } finally {
    for (const node of order) node.pending = null;
    gradEnabled = prevMode;
  }
}

/**
 * Marks the nodes released and recycles the intermediate activations that only this graph could
 * reach (tensors flagged `releaseWithGraph` by Sequential). Their storage becomes empty, so a
 * stray later use fails on a length check instead of reading recycled memory.
 */
function releaseGraph(order: readonly Node[]): void {
  for (const node of order) {
    node.released = true;
    for (const t of node.inputs) {
      if (t !== null && t.releaseWithGraph) {
        t.releaseWithGraph = false;
        const b = getBackend(t.device);
        b.recycle(t.storage as FloatStorage);
        t.storage = b.empty;
      }
    }
  }
}

class RootNode extends Node {
  readonly name = 'root';
  backward(): void {}
}

function rootNode(leaf: Tensor): Node {
  return new RootNode([leaf], leaf.shape);
}

/** The nodes reachable from the roots, producers before consumers (depth-first post-order). */
function topoOrder(roots: readonly Tensor[]): Node[] {
  const mark = ++epoch;
  const order: Node[] = [];
  const stack: Node[] = [];
  const next: number[] = [];
  for (const root of roots) {
    const start = root.gradFn;
    if (!start || start.mark === mark) continue;
    start.mark = mark;
    stack.push(start);
    next.push(0);
    while (stack.length > 0) {
      const top = stack.length - 1;
      const node = stack[top]!;
      const i = next[top]!;
      if (i < node.inputs.length) {
        next[top] = i + 1;
        const child = node.inputs[i]?.gradFn;
        if (child && child.mark !== mark) {
          child.mark = mark;
          stack.push(child);
          next.push(0);
        }
      } else {
        if (node.released) {
          throw errors.autograd(`backward: the graph through '${node.name}' was already used by a backward and released; pass retainGraph: true to the first backward to run it twice`);
        }
        order.push(node);
        stack.pop();
        next.pop();
      }
    }
  }
  return order;
}
