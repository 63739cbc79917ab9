// Test accuracy of a classifier on a dataset, in batches, without recording a graph.
import type { Dataset } from '../data/index.js';
import { countCorrect, noGrad, Tensor, type Module } from '../tensor/index.js';
import type { MetricFunction } from './model.js';

export interface Classifier extends Module {
  forward(x: Tensor): Tensor;
}

/**
 * Fraction of `data` the model classifies correctly (0 for an empty set); `metric` counts the
 * correct samples of a batch (default: argmax equals the label; a model module's `metric` export).
 */
export function evaluate(model: Classifier, data: Dataset, metric: MetricFunction = countCorrect, batchSize = 1000): number {
  if (data.length === 0) return 0;
  const wasTraining = model.training;
  model.eval();
  let correct = 0;
  try {
    noGrad(() => {
      const f = data.features;
      for (let start = 0; start < data.length; start += batchSize) {
        const n = Math.min(batchSize, data.length - start);
        const x = new Tensor(data.x.subarray(start * f, (start + n) * f), [n, ...data.shape]);
        correct += metric(model.forward(x), data.y.subarray(start, start + n));
      }
    });
  } finally {
    if (wasTraining) model.train();
  }
  return correct / data.length;
}
