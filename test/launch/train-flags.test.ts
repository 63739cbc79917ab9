// The training flags psrun passes through: the table taken from addTrainFlags, a topology file's
// values checked by the flags' own parsers, and their command-line form.
import test from 'ava';
import { addTrainFlags } from '../../src/trainer/options.js';
import { Command } from 'commander';
import { parseFlagValue, PER_PROCESS_KEYS, trainFlagArgs, trainFlagTable } from '../../src/launch/train-flags.js';

test('the table is addTrainFlags without the flags psrun sets per process', (t) => {
  const all = addTrainFlags(new Command()).options.map((o) => o.attributeName());
  t.deepEqual([...trainFlagTable().keys()], all.filter((k) => !PER_PROCESS_KEYS.has(k)));
  for (const k of ['json', 'progress', 'name', 'rank', 'worldSize', 'master', 'servers']) t.false(trainFlagTable().has(k), k);
  t.true(trainFlagTable().has('epochs'));
});

test('parseFlagValue parses with the flag\'s own parser and choices', (t) => {
  t.is(parseFlagValue('epochs', '3'), 3);
  t.is(parseFlagValue('epochs', 3), 3);
  t.is(parseFlagValue('lr', 0.5), 0.5);
  t.is(parseFlagValue('dataset', 'synthetic'), 'synthetic');
  t.throws(() => parseFlagValue('epochs', 0), { message: "--epochs must be an integer >= 1, got '0'" });
  t.throws(() => parseFlagValue('lr', 'fast'), { message: "--lr must be a number > 0 and <= 1000000, got 'fast'" });
  t.throws(() => parseFlagValue('dataset', 'cifar'), { message: "--dataset must be one of fashion-mnist, mnist, synthetic, idx:FOLDER, file:PATH or a dataset module path (./my-data.mjs), got 'cifar'" });
  t.throws(() => parseFlagValue('epochs', true), { message: 'must be a string or a number, got true' });
  t.throws(() => parseFlagValue('epochs', [1]), { message: 'must be a string or a number, got [1]' });
  t.throws(() => parseFlagValue('epoch', 1), { message: "unknown training option 'epoch'" });
  t.throws(() => parseFlagValue('json', 'x'), { message: "unknown training option 'json'" });
});

test('trainFlagArgs writes the given options in table order, numbers as text', (t) => {
  t.deepEqual(trainFlagArgs({ lr: 0.1, epochs: 2, dataset: 'synthetic' }), ['--dataset', 'synthetic', '--epochs', '2', '--lr', '0.1']);
  t.deepEqual(trainFlagArgs({}), []);
  t.deepEqual(trainFlagArgs({ epochs: undefined }), []);
});

test('a list flag (--split) goes to the processes as the comma-separated indices it was parsed from', (t) => {
  const parsed = parseFlagValue('split', '3,6');
  t.deepEqual(parsed, [3, 6]);
  t.deepEqual(trainFlagArgs({ split: parsed }), ['--split', '3,6']);
  t.throws(() => parseFlagValue('split', '3;6'), { message: /--split must be comma-separated child indices/ });
});
