// The cnn preset (src/trainer/presets/cnn.ts) and how models meet the data's sample shape: the
// peer's CNN layer for layer, image samples reaching conv models as NCHW, dense models on images,
// and a model that does not fit the data refused with both shapes named.
import test from 'ava';
import { ModelError } from '../../src/trainer/errors.js';
import { trainLocal } from '../../src/trainer/local.js';
import { loadModel, MODEL_PRESETS } from '../../src/trainer/model.js';
import { resolveOptions } from '../../src/trainer/options.js';

const images = { shape: [1, 28, 28], features: 784, classes: 10 };
const place = { rank: 0, role: 'local', workers: 1 } as const;
const quiet = { log: () => {} };

test('the cnn preset is the peer script\'s CNN: torch\'s parameter names and shapes, 215,370 parameters', async (t) => {
  const { resolved, model } = await loadModel(resolveOptions({ model: 'cnn', seed: 1 }), images, place);
  t.is(resolved.url, MODEL_PRESETS.cnn);
  t.deepEqual(model.namedParameters().map(([n, p]) => [n, p.shape]), [
    ['0.weight', [16, 1, 5, 5]], ['0.bias', [16]],
    ['3.weight', [32, 16, 5, 5]], ['3.bias', [32]],
    ['7.weight', [128, 1568]], ['7.bias', [128]],
    ['9.weight', [10, 128]], ['9.bias', [10]],
  ]);
  t.is(model.parameterCount(), 215_370);
  // torch's default init: every weight and bias uniform in +-1/sqrt(fan_in)
  const bounds = [25, 25, 400, 400, 1568, 1568, 128, 128].map((fanIn) => 1 / Math.sqrt(fanIn));
  model.parameters().forEach((p, i) => t.true(p.toTypedArray().every((v) => Math.abs(v) <= bounds[i]!), `parameter ${i} within its bound`));
  const again = await loadModel(resolveOptions({ model: 'cnn', seed: 1 }), images, place);
  t.deepEqual(again.model.parameters().map((p) => p.toTypedArray()), model.parameters().map((p) => p.toTypedArray()), 'same seed, same model');
});

test('the cnn preset follows the images it gets: channels, sizes and --model-options', async (t) => {
  const rgb = await loadModel(resolveOptions({ model: 'cnn', modelOptions: { channels: [8, 12], hidden: 20 } }), { shape: [3, 32, 36], features: 3456, classes: 5 }, place);
  t.deepEqual(rgb.model.parameters().map((p) => p.shape), [[8, 3, 5, 5], [8], [12, 8, 5, 5], [12], [20, 12 * 8 * 9], [20], [5, 20], [5]]);
  await t.throwsAsync(loadModel(resolveOptions({ model: 'cnn', modelOptions: { channels: [8] } }), images, place), { instanceOf: ModelError, message: /channels must be two positive integers \[c1, c2\], got \[8\]/ });
});

test('a model that does not fit the data is refused naming both shapes', async (t) => {
  // the cnn on flat samples: the preset says what it needs and what it got
  await t.throwsAsync(loadModel(resolveOptions({ model: 'cnn' }), { features: 784, classes: 10 }, place),
    { instanceOf: ModelError, message: /needs image samples \[channels, height, width\], but the dataset's samples have shape \[784\]/ });
  // a user's dense model with the wrong width: the data's shape and the first layer's are both named
  const wrong = { createModel: async () => { const { Sequential, Linear } = await import('../../src/tensor/index.js'); return new Sequential(new Linear(100, 10)); } };
  await t.throwsAsync(loadModel(resolveOptions({ model: wrong }), images, place),
    { instanceOf: ModelError, message: /does not fit the data: the dataset's samples have shape \[1, 28, 28\], while its first layer, Linear\(100 -> 10\), expects samples of shape \[100\]/ });
  // a conv model with the wrong channel count
  const conv = { createModel: async () => { const { Sequential, Conv2d, Flatten, Linear } = await import('../../src/tensor/index.js'); return new Sequential(new Conv2d(3, 4, 3), new Flatten(), new Linear(4 * 26 * 26, 10)); } };
  await t.throwsAsync(loadModel(resolveOptions({ model: conv }), images, place),
    { instanceOf: ModelError, message: /samples have shape \[1, 28, 28\], while its first layer, Conv2d\(3 -> 4\), expects images of shape \[3, height, width\]/ });
});

test('dense models train on image samples: the mlp preset flattens [1, 28, 28] like a Flatten would', async (t) => {
  const { model } = await loadModel(resolveOptions({ hidden: 16 }), images, place);
  t.deepEqual(model.parameters().map((p) => p.shape), [[16, 784], [16], [16, 16], [16], [10, 16], [10]]);
});

test('local training of the cnn on a slice of Fashion-MNIST learns (deterministic: same seed, same loss)', async (t) => {
  const opts = { model: 'cnn', dataset: 'fashion-mnist', trainSamples: 5120, testSamples: 1000, epochs: 1, momentum: 0.9, lr: 0.05, progress: 'none' as const };
  const a = await trainLocal(opts, quiet);
  const b = await trainLocal(opts, quiet);
  t.is(a.model, 'cnn');
  t.is(a.parameters, 215_370);
  t.is(a.samples, 5120);
  // PyTorch's same CNN and flags reach 0.75 after these 80 steps (torch_more.py cnn --train-samples 5120)
  t.true(a.testAccuracy > 0.6, `accuracy ${a.testAccuracy} after 80 steps (10 classes: chance is 0.1)`);
  t.is(a.finalLoss, b.finalLoss);
  t.is(a.testAccuracy, b.testAccuracy);
});
