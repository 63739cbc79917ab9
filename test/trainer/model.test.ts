// The model contract (src/trainer/model.ts): presets, user modules, their loss, the checks made
// before anything trains, and the architecture comparison processes make when they join.
import test from 'ava';
import { flattenParameters, Linear, mlp, Sequential } from '../../src/tensor/index.js';
import { ModelError } from '../../src/trainer/errors.js';
import { trainLocal } from '../../src/trainer/local.js';
import { buildModel, loadModel, modelContext, MODEL_PRESETS, resolveModel } from '../../src/trainer/model.js';
import { resolveOptions } from '../../src/trainer/options.js';

const CUSTOM = new URL('./fixtures/custom-model.ts', import.meta.url);
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const data = { features: 784, classes: 10 };
const place = { rank: 0, role: 'local', workers: 1 } as const;
const quiet = { log: () => {} };

test('the mlp preset builds today\'s MLP 784-H-H-10 value for value; --depth and --model-options change its sizes', async (t) => {
  const opts = resolveOptions({ hidden: 32, seed: 3 });
  const { resolved, model } = await loadModel(opts, data, place);
  t.is(resolved.name, 'mlp');
  t.is(resolved.url, MODEL_PRESETS.mlp);
  t.deepEqual(flattenParameters(model).params, flattenParameters(mlp([784, 32, 32, 10], { seed: 3 })).params);
  const deep = await loadModel(resolveOptions({ hidden: 512, depth: 4 }), data, place);
  t.deepEqual(deep.model.parameters().filter((_, i) => i % 2 === 0).map((p) => p.shape), [[512, 784], [512, 512], [512, 512], [512, 512], [10, 512]]);
  const linear = await loadModel(resolveOptions({ depth: 0 }), data, place);
  t.deepEqual(linear.model.parameters().map((p) => p.shape), [[10, 784], [10]], 'depth 0: logistic regression');
  const viaOptions = await loadModel(resolveOptions({ modelOptions: { hidden: 7, depth: 1 } }), data, place);
  t.deepEqual(viaOptions.model.parameters().map((p) => p.shape), [[7, 784], [7], [10, 7], [10]]);
});

test('a user module: createModel gets the context, its loss export is the one used, and the result names the model', async (t) => {
  const resolved = await resolveModel(CUSTOM);
  const ctx = modelContext(resolveOptions({ seed: 5, modelOptions: { hidden: 100 } }), data, place);
  t.deepEqual(ctx.inputShape, [784]);
  const model = await buildModel(resolved, ctx);
  t.deepEqual(model.parameters().map((p) => p.shape), [[100, 784], [100], [10, 100], [10]]);
  const counter = globalThis as { customLossCalls?: number };
  counter.customLossCalls = 0;
  const r = await trainLocal({ model: fixture('custom-model.ts'), dataset: 'synthetic', trainSamples: 2000, testSamples: 400, epochs: 3, progress: 'none' }, quiet);
  t.is(r.model, fixture('custom-model.ts'));
  t.is(r.parameters, 784 * 100 + 100 + 100 * 10 + 10);
  // one call checks the model before training, then one per step
  t.is(counter.customLossCalls, 1 + 3 * Math.floor(2000 / 64));
  t.true(r.testAccuracy > 0.3, `accuracy ${r.testAccuracy} (10 classes: chance is 0.1)`);
});

test('an API caller may pass a module object; its metric export decides the test accuracy', async (t) => {
  const r = await trainLocal({
    model: { createModel: (c) => new Sequential(new Linear(c.features, c.classes, { seed: c.seed })), metric: (out) => out.shape[0]! },
    dataset: 'synthetic', trainSamples: 1000, testSamples: 300, progress: 'none',
  }, quiet);
  t.is(r.model, '(module object)');
  t.is(r.testAccuracy, 1, 'the metric counted every sample correct');
});

test('bad models are refused with one line naming the model, before anything trains', async (t) => {
  const cases: Array<[string | object, RegExp]> = [
    ['./no/such/model.js', /^--model \.\/no\/such\/model\.js: no such file \(.*\/no\/such\/model\.js\)$/],
    ['cnnn', /^--model cnnn: is neither a preset \(mlp, cnn\) nor a file \(.*cnnn does not exist\)$/],
    [fixture('broken-syntax.mjs'), /^--model .*broken-syntax\.mjs: cannot be imported \(.*\)$/],
    [fixture('no-factory.ts'), /^--model .*no-factory\.ts: exports no function createModel \(nor a default function\)$/],
    [fixture('throwing-factory.ts'), /^--model .*throwing-factory\.ts: createModel threw: out of ideas$/],
    [fixture('not-a-module.ts'), /^--model .*not-a-module\.ts: createModel returned an object \(Object\); expected a Module/],
    [fixture('wrong-output.ts'), /^--model .*wrong-output\.ts: the model's output for a batch of shape \[2, 784\] has shape \[2, 13\]; expected \[2, 10\] \(one logit per class of the dataset\)$/],
    [{ createModel: () => new Sequential() }, /^--model \(module object\): createModel returned a Module with no parameters$/],
    [{ createModel: () => mlp([784, 10]), loss: 3 }, /exports loss as number; expected a function/],
    [{ createModel: () => mlp([784, 10]), loss: () => 'low' }, /its loss returned string; expected a scalar Tensor/],
    [{ nothing: true }, /exports no function createModel/],
  ];
  for (const [model, message] of cases) {
    const e = await t.throwsAsync(trainLocal({ model: model as string, dataset: 'synthetic', trainSamples: 256, testSamples: 64, progress: 'none' }, quiet), { instanceOf: ModelError });
    t.regex(e!.message, message, String(model));
  }
});

test('bad model options are refused by resolveOptions', (t) => {
  t.throws(() => resolveOptions({ depth: -1 }), { message: /option depth must be an integer >= 0, got -1/ });
  t.throws(() => resolveOptions({ modelOptions: [1] as unknown as Record<string, unknown> }), { message: /option modelOptions must be an object, got an array/ });
});

test('a preset\'s own option checks fail as createModel errors naming the model', async (t) => {
  const e = await t.throwsAsync(loadModel(resolveOptions({ modelOptions: { hidden: 'wide' } }), data, place), { instanceOf: ModelError });
  t.is(e!.message, '--model mlp: createModel threw: mlp: hidden must be an integer >= 1, got "wide"');
});
