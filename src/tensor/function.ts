// Custom differentiable functions built from a forward and a backward closure.
//
// The door for code outside the op set: distributed autograd records its send/recv nodes with
// it (a backward that ships the gradient to another worker instead of computing one), and user
// code can add an op without writing a Node subclass.
import { Node, setGradEnabled, tracks, type GradSink } from './autograd.js';
import { getBackend, type FloatStorage } from './backend.js';
import { errors } from './errors.js';
import { Tensor } from './tensor.js';

/** What a custom function's backward returns for each input: a gradient (input's size) or null for none. */
export type InputGrad = Tensor | Float32Array | null | undefined;

/** The pieces of a custom function. */
export interface FunctionSpec<Saved = unknown> {
  /** Name, for errors and debugging. */
  name: string;
  /**
   * Computes the output from the inputs. Runs with recording off, so ops inside it are not
   * tracked; return a fresh tensor (not an input). `save` keeps anything backward needs.
   */
  forward(inputs: readonly Tensor[], save: (value: Saved) => void): Tensor;
  /**
   * Given the gradient of the output, returns one gradient per input (null where none). Runs
   * synchronously during the backward pass, with recording off; `gradOutput` may be kept (the
   * engine does not reuse it), e.g. to send it elsewhere after the pass.
   */
  backward(gradOutput: Tensor, saved: Saved | undefined, inputs: readonly Tensor[]): readonly InputGrad[];
}

class FunctionNode<Saved> extends Node {
  readonly name: string;
  constructor(
    private readonly spec: FunctionSpec<Saved>,
    private readonly args: readonly Tensor[],
    private readonly saved: Saved | undefined,
    outputShape: readonly number[],
  ) {
    super(args, outputShape);
    this.name = spec.name;
  }

  backward(g: FloatStorage, sink: GradSink): void {
    const grads = this.spec.backward(new Tensor(g, this.outputShape), this.saved, this.args);
    const b = getBackend(this.device);
    if (!Array.isArray(grads) || grads.length !== this.args.length) {
      throw errors.autograd(`${this.name}: backward returned ${Array.isArray(grads) ? grads.length : typeof grads} gradients; expected ${this.args.length} (one per input, null for none)`);
    }
    for (let i = 0; i < grads.length; i++) {
      const gi = grads[i];
      if (gi == null || this.inputs[i] === null) continue;
      const input = this.args[i]!;
      if (gi instanceof Float32Array ? gi.length !== input.size : gi.dtype !== 'float32' || gi.size !== input.size) {
        throw errors.shape(this.name, [input.shape, gi instanceof Float32Array ? [gi.length] : gi.shape], `a float32 gradient of ${input.size} elements for input ${i}`);
      }
      if (!(gi instanceof Float32Array) && gi.device !== input.device) {
        throw errors.device(this.name, [input.device, gi.device], `${this.name}: input ${i} is on '${input.device}' but backward returned its gradient on '${gi.device}'`);
      }
      // A host array for a device input is uploaded; either way it is copied, since the closure may still hold it.
      const data: FloatStorage = gi instanceof Float32Array ? (input.device === 'cpu' ? gi : b.fromHost(gi)) : gi.storage;
      const d = sink.target(i);
      if (sink.fresh) b.copy(data, d);
      else b.kernels.add(d, data, d);
    }
  }
}

/**
 * Builds a differentiable function from `spec`. The result records one graph node when any
 * input requires grad and recording is on.
 *
 * @example
 * // y = x * x, dy/dx = 2x
 * const square = customFunction<Tensor>({
 *   name: 'square',
 *   forward: ([x], save) => { save(x!); return mul(x!, x!); },
 *   backward: (g, x) => [mul(add(x!, x!), g)],
 * });
 */
export function customFunction<Saved = unknown>(spec: FunctionSpec<Saved>): (...inputs: Tensor[]) => Tensor {
  return (...inputs: Tensor[]): Tensor => {
    const record = inputs.some((t) => tracks(t));
    let saved: Saved | undefined;
    const prev = setGradEnabled(false);
    let out: Tensor;
    try {
      out = spec.forward(inputs, (v) => {
        saved = v;
      });
    } finally {
      setGradEnabled(prev);
    }
    if (!(out instanceof Tensor)) throw errors.autograd(`${spec.name}: forward must return a Tensor`);
    if (record && (out.requiresGrad || inputs.includes(out))) {
      throw errors.autograd(`${spec.name}: forward returned an input or a tracked tensor; return a fresh tensor (e.g. x.clone())`);
    }
    if (record) new FunctionNode(spec, inputs, saved, out.shape).attach(out as Tensor);
    return out;
  };
}

/**
 * Makes `output` depend on `inputs` through `backward`, for values computed outside the graph
 * (e.g. a result that arrived over RPC from a forward that consumed `inputs`). Returns `output`,
 * now tracked when recording is on and an input requires grad.
 */
export function attachBackward(output: Tensor, inputs: readonly Tensor[], name: string, backward: (gradOutput: Tensor) => readonly InputGrad[]): Tensor {
  if (!output.isLeaf || output.requiresGrad) throw errors.autograd(`${name}: attachBackward needs an untracked output tensor`);
  if (!inputs.some((t) => tracks(t))) return output;
  const spec: FunctionSpec<undefined> = { name, forward: () => output, backward: (g) => backward(g) };
  return new FunctionNode(spec, inputs, undefined, output.shape).attach(output);
}
