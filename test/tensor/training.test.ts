// End to end: an MLP learns a synthetic separable problem.
import test from 'ava';
import { Adam, crossEntropy, Generator, mlp, noGrad, SGD, Tensor } from '../../src/tensor/index.js';

/** Points in 8-D around one of three well-separated centres; the label is the centre. */
function blobs(n: number, seed: number): { x: Tensor; y: Int32Array } {
  const g = new Generator(seed);
  const centres = [0, 1, 2].map(() => Array.from({ length: 8 }, () => g.uniformIn(-2, 2)));
  const x = new Float32Array(n * 8);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = g.int(3);
    for (let j = 0; j < 8; j++) x[i * 8 + j] = centres[y[i]!]![j]! + 0.5 * g.normal();
  }
  return { x: new Tensor(x, [n, 8]), y };
}

function accuracy(logits: Tensor, y: Int32Array): number {
  let ok = 0;
  for (let r = 0; r < y.length; r++) {
    let best = 0;
    for (let c = 1; c < 3; c++) if (logits.data[r * 3 + c]! > logits.data[r * 3 + best]!) best = c;
    if (best === y[r]) ok++;
  }
  return ok / y.length;
}

for (const [name, makeOpt] of [
  ['SGD with momentum', (m: ReturnType<typeof mlp>) => new SGD(m.parameters(), { lr: 0.05, momentum: 0.9 })],
  ['Adam', (m: ReturnType<typeof mlp>) => new Adam(m.parameters(), { lr: 0.01 })],
] as const) {
  test(`an MLP trained with ${name} on separable blobs: loss falls clearly and accuracy is high`, (t) => {
    const { x, y } = blobs(256, 1);
    const model = mlp([8, 16, 3], { seed: 2, dropout: 0.1 });
    const opt = makeOpt(model);
    const first = crossEntropy(noGrad(() => model.eval().forward(x)), y).item();
    model.train();
    for (let epoch = 0; epoch < 30; epoch++) {
      for (let b = 0; b < 256; b += 32) {
        const xb = new Tensor(x.data.subarray(b * 8, (b + 32) * 8), [32, 8]);
        const loss = crossEntropy(model.forward(xb), y.subarray(b, b + 32));
        opt.zeroGrad();
        loss.backward();
        opt.step();
      }
    }
    model.eval();
    const logits = noGrad(() => model.forward(x));
    const last = crossEntropy(logits, y).item();
    t.true(last < first * 0.3, `loss ${first} -> ${last}`);
    t.true(accuracy(logits, y) > 0.95, `accuracy ${accuracy(logits, y)}`);
  });
}
