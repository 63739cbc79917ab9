// The pipeline benchmark's pure parts (bench/pipeline.ts): its flags, its configurations, the
// PyTorch line it reads and the medians. No timing assertions; the runs themselves are the bench's.
import test from 'ava';
import { configs, median, parseFlags, parseTorchLine } from '../../bench/pipeline.js';

test('flags: defaults, --quick, and bad values refused naming them', (t) => {
  t.like(parseFlags([]), { rounds: 3, micro: [1, 4, 8], torch: true, quick: false });
  t.like(parseFlags(['--quick']), { rounds: 1, micro: [4], quick: true });
  t.like(parseFlags(['--rounds', '2', '--micro', '2,8', '--no-torch']), { rounds: 2, micro: [2, 8], torch: false });
  t.throws(() => parseFlags(['--rounds', '0']), { message: /--rounds must be an integer >= 1, got '0'/ });
  t.throws(() => parseFlags(['--micro', '4,x']), { message: /--micro must be comma-separated integers/ });
  t.throws(() => parseFlags(['--micro']), { message: /--micro needs a value/ });
  t.throws(() => parseFlags(['--fast']), { message: /unknown flag --fast/ });
});

test('configurations: 1f1b for every M, plus gpipe and recomputation at M = 4', (t) => {
  t.deepEqual(configs([1, 4, 8]).map((c) => c.id), ['1f1b M=1', '1f1b M=4', '1f1b M=8', 'gpipe M=4', '1f1b M=4 recompute']);
  t.deepEqual(configs([2]).map((c) => c.id), ['1f1b M=2']);
});

test("PyTorch's line is read by key; anything else is null", (t) => {
  t.deepEqual(parseTorchLine('warning\ntorch pipeline stages=2 micro=4 width=512 batch=128 samples_per_s=2843 test_accuracy=0.8050 samples=59904 wall_s=24.1\n'), { samplesPerSecond: 2843, testAccuracy: 0.805 });
  t.is(parseTorchLine('Traceback (most recent call last):'), null);
  t.is(parseTorchLine('torch pipeline stages=2 samples_per_s=nan'), null);
});

test('median: the lower middle of an even count, NaN of none', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 3, 2]), 2);
  t.true(Number.isNaN(median([])));
});
