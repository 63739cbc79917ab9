// The RPC layer in one file: two agents (in one process here; normally one per process), a
// registered function, a remote reference with a method proxy, and distributed autograd across
// the two workers with a DistributedOptimizer step.
//
//   node --import tsx examples/rpc-basics.ts
import { Agent, crossEntropy, DistributedOptimizer, Linear, relu, Tensor, tensor, type RRef } from '../src/index.js';

// A model that lives on its owner: trainers reach it through an RRef.
class RemoteLayer {
  readonly layer = new Linear(4, 3, { seed: 1 });
  forward(x: Tensor): Tensor {
    return this.layer.forward(x);
  }
  parameterRefs(owner: Agent): RRef<Tensor>[] {
    return this.layer.parameters().map((p) => owner.rref(p));
  }
}

// Rank 0 hosts the rendezvous; port 0 lets it pick a free port, which the others then use.
const ps = await Agent.start({ name: 'ps', rank: 0, worldSize: 2, master: '127.0.0.1:0' });
const trainerStart = Agent.start({ name: 'trainer', rank: 1, worldSize: 2, master: ps.address });
const [, trainer] = await Promise.all([ps.rendezvous(), trainerStart.then((a) => a.rendezvous())]);

ps.register('add', (a: number, b: number) => a + b);
ps.register('makeLayer', () => new RemoteLayer());
ps.register('layerParams', async (ref: RRef<RemoteLayer>) => (await ref.toHere()).parameterRefs(ps));

console.log('add(2, 3) on ps =', await trainer.call('ps', 'add', [2, 3]));

const layer = trainer.remote<RemoteLayer>('ps', 'makeLayer');   // returns at once
const params = await trainer.call<RRef<Tensor>[]>('ps', 'layerParams', [layer]);
const x = tensor(Float32Array.from({ length: 8 }, (_, i) => (i % 5) / 5), [2, 4]);
const labels = Int32Array.of(0, 2);

const optimizer = new DistributedOptimizer(trainer, 'sgd', params, { lr: 0.1 });
for (let step = 0; step < 3; step++) {
  await trainer.distAutograd.context(async (ctx) => {
    const hidden = await layer.rpcSync().forward(x);      // forward on the owner, recorded
    const loss = crossEntropy(relu(hidden), labels);
    await trainer.distAutograd.backward(ctx, [loss]);              // backward reaches the owner
    await optimizer.step(ctx);                                     // the owner steps its parameters
    console.log(`step ${step}: loss ${loss.item().toFixed(4)}`);
  });
}

await optimizer.release();
layer.release();
await Promise.all([trainer.shutdown({ graceful: true }), ps.shutdown({ graceful: true })]);
