// Adam and AdamW with torch.optim semantics, one fused kernel per parameter.
import { errors } from '../errors.js';
import { getBackend, type FloatStorage } from '../backend.js';
import type { DeviceArray } from '../device-array.js';
import type { Tensor } from '../tensor.js';
import { checkOption, Optimizer } from './optimizer.js';

/** Options of `Adam`; defaults as in torch. */
export interface AdamOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Decay rates of the first and second moments (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Weight decay (default 0; AdamW's default 0.01). */
  weightDecay?: number;
  /** Decoupled weight decay, i.e. AdamW (default false for Adam, true for AdamW). */
  decoupled?: boolean;
}

/** Per-parameter state of Adam: S is the storage of the parameter's device (host arrays in `state`). */
export interface AdamState<S extends FloatStorage = Float32Array> {
  /** Steps taken on this parameter. */
  step: number;
  /** First moment (exp_avg). */
  m: S;
  /** Second moment (exp_avg_sq). */
  v: S;
}

export class Adam extends Optimizer<AdamState> {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly decoupled: boolean;
  /** The state of parameters on a device (CUDA): device storage, kept apart from the host `state`. */
  readonly deviceState = new Map<Tensor, AdamState<DeviceArray>>();

  constructor(params: Iterable<Tensor>, options: AdamOptions = {}, name = 'Adam') {
    super(params, name);
    const { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0, decoupled = false } = options;
    checkOption(name, 'lr', lr);
    checkOption(name, 'betas[0]', betas[0], 0, 1);
    checkOption(name, 'betas[1]', betas[1], 0, 1);
    checkOption(name, 'eps', eps);
    checkOption(name, 'weightDecay', weightDecay);
    this.lr = lr;
    this.beta1 = betas[0];
    this.beta2 = betas[1];
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.decoupled = decoupled;
  }

  protected freshState(size: number): AdamState {
    return { step: 0, m: new Float32Array(size), v: new Float32Array(size) };
  }

  update(param: Tensor, data: FloatStorage, grad: FloatStorage): void {
    if (grad.length !== data.length) throw errors.shape(this.name, [param.shape, [grad.length]], `a gradient of ${data.length} elements`);
    const b = getBackend(param.device);
    const states: Map<Tensor, AdamState<FloatStorage>> = param.device === 'cpu' ? this.state : this.deviceState;
    let s = states.get(param);
    if (s === undefined) {
      s = { step: 0, m: b.zeros(data.length), v: b.zeros(data.length) };
      states.set(param, s);
    }
    s.step++;
    b.kernels.adamUpdate(data, grad, s.m, s.v, this.lr, this.beta1, this.beta2, this.eps, this.weightDecay, this.decoupled, s.step);
  }
}

/** Adam with decoupled weight decay (torch.optim.AdamW; weightDecay defaults to 0.01). */
export class AdamW extends Adam {
  constructor(params: Iterable<Tensor>, options: AdamOptions = {}) {
    super(params, { weightDecay: 0.01, ...options, decoupled: options.decoupled ?? true }, 'AdamW');
  }
}
