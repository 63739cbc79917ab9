// The `cnn` preset: two 5x5 convolutions with ReLU and 2x2 max pooling, then two dense layers, the
// CNN of the peer script (../shared/anchors/torch_more.py `cnn`), initialised from the run's seed:
//   Conv2d(C->16, 5x5, padding 2) ReLU MaxPool2d(2) -> Conv2d(16->32, 5x5, padding 2) ReLU
//   MaxPool2d(2) -> Flatten -> Linear(32 * H/4 * W/4 -> 128) ReLU -> Linear(128 -> classes).
// On 28x28 grey images (fashion-mnist, mnist) that is exactly 1->16->32, 1568->128->10. It needs
// image samples [channels, height, width]; `--model-options '{"channels": [16, 32], "hidden": 128}'`
// changes the widths.
import { Conv2d, Flatten, Generator, Linear, MaxPool2d, ReLU, Sequential } from '../../tensor/index.js';
import type { ModelContext } from '../model.js';

function positive(options: Record<string, unknown>, key: string, fallback: number): number {
  const v = options[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new RangeError(`cnn: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function channels(options: Record<string, unknown>): [number, number] {
  const v = options.channels ?? [16, 32];
  if (!Array.isArray(v) || v.length !== 2 || !v.every((c) => typeof c === 'number' && Number.isSafeInteger(c) && c >= 1)) {
    throw new RangeError(`cnn: channels must be two positive integers [c1, c2], got ${JSON.stringify(v)}`);
  }
  return [v[0] as number, v[1] as number];
}

export function createModel(ctx: ModelContext): Sequential {
  const shape = ctx.inputShape;
  if (shape.length !== 3) {
    throw new RangeError(`cnn: needs image samples [channels, height, width], but the dataset's samples have shape [${shape.join(', ')}]`);
  }
  const [inChannels, height, width] = shape as [number, number, number];
  if (height < 4 || width < 4) throw new RangeError(`cnn: needs images of at least 4x4 (two 2x2 poolings), got [${shape.join(', ')}]`);
  const [c1, c2] = channels(ctx.options);
  const hidden = positive(ctx.options, 'hidden', 128);
  const generator = new Generator(ctx.seed);
  const flat = c2 * Math.floor(Math.floor(height / 2) / 2) * Math.floor(Math.floor(width / 2) / 2);
  return new Sequential(
    new Conv2d(inChannels, c1, 5, { padding: 2, generator }), new ReLU(), new MaxPool2d(2),
    new Conv2d(c1, c2, 5, { padding: 2, generator }), new ReLU(), new MaxPool2d(2),
    new Flatten(),
    new Linear(flat, hidden, { generator }), new ReLU(),
    new Linear(hidden, ctx.classes, { generator }),
  );
}
