// The full table of strategies, as the commands see it: the trainer layer's (registered by
// src/trainer/strategies/index.ts itself) plus those of the layers above it, each added by
// importing its declaration module here. Every command and the process roles import this module
// first, so `--strategy` offers, and every check knows, the same strategies.
import '../trainer/strategies/index.js';
import '../hogwild/strategy.js';

export { findStrategy, strategies, strategyOf, worldStrategies } from '../trainer/strategies/index.js';
