// DistributedSampler: which sample indices each of numReplicas trainers visits in an epoch, with
// the semantics of torch.utils.data.distributed.DistributedSampler.
//
// Same arithmetic as torch: without dropLast each replica gets ceil(N / R) samples and the index
// list is padded by repeating it from the start; with dropLast (and N not divisible by R) each
// gets floor(N / R) = ceil((N - R) / R) and the tail is dropped; rank r takes
// indices[r : total : R]. With shuffle, the order of epoch e is a permutation seeded with
// seed + e, so every replica computes the same permutation without communicating and a different
// one each epoch. The permutation comes from psrpc's generator, not torch.randperm: the same
// indices as torch for shuffle=false, a different (deterministic) order for shuffle=true.
import { checkBoolean, checkInteger, DataOptionError } from './errors.js';
import { permutation } from './random.js';

/** What a DataLoader needs from a sampler: a length and an epoch's indices. */
export interface Sampler {
  /** Indices per epoch. */
  readonly length: number;
  /** Selects the epoch whose order `indices()` returns. */
  setEpoch(epoch: number): void;
  /** This epoch's indices; the array is owned by the sampler and valid until the next call. */
  indices(): Int32Array;
}

export interface DistributedSamplerOptions {
  /** Number of replicas (trainers) sharing the dataset; default 1. */
  numReplicas?: number;
  /** This replica's rank in [0, numReplicas); default 0. */
  rank?: number;
  /** Shuffle every epoch (default true). */
  shuffle?: boolean;
  /** Seed shared by all replicas (default 0). */
  seed?: number;
  /** Drop the tail instead of padding to a multiple of numReplicas (default false). */
  dropLast?: boolean;
}

const KNOWN = new Set(['numReplicas', 'rank', 'shuffle', 'seed', 'dropLast']);

export class DistributedSampler implements Sampler, Iterable<number> {
  readonly numReplicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  /** Size of the dataset. */
  readonly datasetLength: number;
  /** Indices this replica visits per epoch (torch's num_samples). */
  readonly length: number;
  /** Indices of all replicas together per epoch (torch's total_size). */
  readonly totalSize: number;
  private epochValue = 0;
  private readonly order: Int32Array;
  private readonly mine: Int32Array;
  private builtFor = -1;

  /** `dataset` is a dataset (anything with a length) or its length. */
  constructor(dataset: number | { readonly length: number }, options: DistributedSamplerOptions = {}) {
    if (options === null || typeof options !== 'object') throw new DataOptionError('DistributedSampler options', options, 'an object');
    for (const key of Object.keys(options)) {
      if (!KNOWN.has(key)) throw new DataOptionError('DistributedSampler options', key, `one of ${[...KNOWN].join(', ')}`);
    }
    const n = typeof dataset === 'number' ? dataset : dataset?.length;
    this.datasetLength = checkInteger('DistributedSampler dataset length', n, 0, 2 ** 31 - 1);
    this.numReplicas = checkInteger('DistributedSampler.numReplicas', options.numReplicas ?? 1, 1);
    const rank = options.rank ?? 0;
    if (typeof rank !== 'number' || !Number.isSafeInteger(rank) || rank < 0 || rank >= this.numReplicas) {
      throw new DataOptionError('DistributedSampler.rank', rank, `an integer in [0, ${this.numReplicas - 1}] (numReplicas is ${this.numReplicas})`);
    }
    this.rank = rank;
    this.shuffle = checkBoolean('DistributedSampler.shuffle', options.shuffle ?? true);
    this.seed = checkInteger('DistributedSampler.seed', options.seed ?? 0, Number.MIN_SAFE_INTEGER);
    this.dropLast = checkBoolean('DistributedSampler.dropLast', options.dropLast ?? false);

    const N = this.datasetLength;
    const R = this.numReplicas;
    // Math.max turns the -0 of ceil((N - R) / R) for N < R into 0.
    this.length = Math.max(0, this.dropLast && N % R !== 0 ? Math.ceil((N - R) / R) : Math.ceil(N / R));
    this.totalSize = this.length * R;
    this.order = new Int32Array(N);
    this.mine = new Int32Array(this.length);
  }

  get epoch(): number {
    return this.epochValue;
  }

  /** Selects the epoch; with shuffle, epoch e is ordered by a permutation seeded with seed + e. */
  setEpoch(epoch: number): void {
    checkInteger('DistributedSampler.setEpoch epoch', epoch, 0);
    if (!Number.isSafeInteger(this.seed + epoch)) throw new DataOptionError('DistributedSampler.setEpoch epoch', epoch, `such that seed + epoch is a safe integer (seed ${this.seed})`);
    this.epochValue = epoch;
  }

  /** This replica's indices for the current epoch, in visiting order (reused array; see Sampler). */
  indices(): Int32Array {
    const key = this.shuffle ? this.epochValue : 0;
    if (this.builtFor === key) return this.mine;
    const N = this.datasetLength;
    const R = this.numReplicas;
    if (this.shuffle) permutation(N, this.seed + this.epochValue, this.order);
    else for (let i = 0; i < N; i++) this.order[i] = i;
    // Position p of the padded (or cut) list is order[p mod N]: torch pads by repeating the list
    // from its start, as many times as needed, and dropLast only ever cuts, so p < N there.
    for (let k = 0, p = this.rank; k < this.length; k++, p += R) this.mine[k] = this.order[p % N]!;
    this.builtFor = key;
    return this.mine;
  }

  [Symbol.iterator](): Iterator<number> {
    return this.indices()[Symbol.iterator]();
  }
}
