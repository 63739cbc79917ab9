// Test support: runs an optimizer for a few steps on one parameter with known gradients, and
// the same steps of a float64 reference of torch's update rule.
import type { ExecutionContext } from 'ava';
import { mul, Optimizer, randn, sum, type Tensor } from '../../src/tensor/index.js';

export function runSteps(
  t: ExecutionContext,
  make: (params: Tensor[]) => Optimizer<unknown>,
  ref: (p: Float64Array, g: Float64Array, step: number) => void,
  steps = 3,
): void {
  const p = randn([7], { seed: 11, requiresGrad: true });
  const want = Float64Array.from(p.data);
  const opt = make([p]);
  for (let s = 1; s <= steps; s++) {
    const c = randn([7], { seed: 100 + s }); // d/dp sum(p * c) = c
    opt.zeroGrad();
    sum(mul(p, c)).backward();
    opt.step();
    ref(want, Float64Array.from(c.data), s);
    p.data.forEach((v, i) => t.true(Math.abs(v - want[i]!) < 1e-5 * (1 + Math.abs(want[i]!)), `step ${s}, element ${i}: ${v} vs ${want[i]}`));
  }
}
