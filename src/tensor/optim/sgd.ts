// Stochastic gradient descent with torch.optim.SGD semantics, one fused kernel per parameter.
import { errors } from '../errors.js';
import { getBackend, type FloatStorage } from '../backend.js';
import type { DeviceArray } from '../device-array.js';
import type { Tensor } from '../tensor.js';
import { checkOption, Optimizer } from './optimizer.js';

/** Options of `SGD`; defaults as in torch. */
export interface SgdOptions {
  /** Learning rate (required). */
  lr: number;
  /** Momentum factor (default 0). */
  momentum?: number;
  /** Dampening of the momentum (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
  /** Nesterov momentum (default false; needs momentum > 0 and dampening 0). */
  nesterov?: boolean;
}

/** Per-parameter state of SGD: S is the storage of the parameter's device (host arrays in `state`). */
export interface SgdState<S extends FloatStorage = Float32Array> {
  /** The momentum buffer; null when momentum is 0. */
  momentumBuffer: S | null;
  /** Steps taken on this parameter. */
  steps: number;
}

export class SGD extends Optimizer<SgdState> {
  /** Learning rate; may be changed between steps (schedules). */
  lr: number;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  /** The state of parameters on a device (CUDA): device storage, kept apart from the host `state`. */
  readonly deviceState = new Map<Tensor, SgdState<DeviceArray>>();

  constructor(params: Iterable<Tensor>, options: SgdOptions) {
    super(params, 'SGD');
    const { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false } = options;
    checkOption('SGD', 'lr', lr);
    checkOption('SGD', 'momentum', momentum);
    checkOption('SGD', 'dampening', dampening);
    checkOption('SGD', 'weightDecay', weightDecay);
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw errors.range('SGD', `nesterov = true needs momentum > 0 and dampening = 0 (got momentum ${momentum}, dampening ${dampening})`);
    }
    this.lr = lr;
    this.momentum = momentum;
    this.dampening = dampening;
    this.weightDecay = weightDecay;
    this.nesterov = nesterov;
  }

  protected freshState(size: number): SgdState {
    return { momentumBuffer: this.momentum !== 0 ? new Float32Array(size) : null, steps: 0 };
  }

  update(param: Tensor, data: FloatStorage, grad: FloatStorage): void {
    if (grad.length !== data.length) throw errors.shape('SGD', [param.shape, [grad.length]], `a gradient of ${data.length} elements`);
    const b = getBackend(param.device);
    const states: Map<Tensor, SgdState<FloatStorage>> = param.device === 'cpu' ? this.state : this.deviceState;
    let s = states.get(param);
    if (s === undefined) {
      s = { momentumBuffer: this.momentum !== 0 ? b.zeros(data.length) : null, steps: 0 };
      states.set(param, s);
    }
    b.kernels.sgdUpdate(data, grad, s.momentumBuffer, this.lr, this.momentum, this.dampening, this.weightDecay, this.nesterov, s.steps === 0);
    s.steps++;
  }
}
