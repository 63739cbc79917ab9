// The public face: every strategy and building block a user composes a topology from is reachable
// from the package's one entry point (src/index.ts), as the docs and examples use it.
import test from 'ava';
import * as psrpc from '../../src/index.js';

test('src/index.ts exports the building blocks of every strategy', (t) => {
  const names = [
    // tensors, data, RPC
    'Tensor', 'mlp', 'SGD', 'Adam', 'loadDataset', 'DistributedSampler', 'DataLoader', 'Agent', 'DistributedOptimizer',
    // servers and placement
    'ParameterServer', 'planShards', 'parsePlacement', 'RemoteModelHost', 'SharedModel',
    // strategies, processes, launcher
    'trainLocal', 'trainCentralized', 'trainPartitioned', 'trainRemoteForward', 'trainHogwild', 'hogwild',
    'runServerProcess', 'runTrainerProcess', 'Launcher', 'parseTopology', 'evaluate', 'resolveOptions',
  ];
  const missing = names.filter((n) => typeof (psrpc as Record<string, unknown>)[n] !== 'function' && typeof (psrpc as Record<string, unknown>)[n] !== 'object');
  t.deepEqual(missing, []);
});
