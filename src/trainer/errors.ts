// The training layer's errors: every message names the option and the value that was wrong.

/**
 * A model that cannot be trained as given: a module that does not exist or does not import, no
 * createModel, a factory that throws or builds no Module, output that does not fit the dataset,
 * processes whose models differ. `model` is the --model value as given.
 */
export class ModelError extends Error {
  constructor(readonly model: string, problem: string) {
    super(`--model ${model}: ${problem}`);
    this.name = 'ModelError';
  }
}
