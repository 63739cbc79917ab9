// The training flags psrun passes through to its processes, taken from `addTrainFlags` itself so
// psrun accepts exactly the flags `trainer` accepts, validated by the same parsers, with no list
// of its own to drift out of date.
//
// Excluded: the flags psrun sets per process (--json, --progress) and the process-identity flags
// (--name, --rank, --world-size, --master, --servers) should options.ts define them for
// ps-server/trainer: psrun computes those.
import { Command, InvalidArgumentError, type Option } from 'commander';
import { addTrainFlags, type TrainOptions } from '../trainer/options.js';

/** TrainOptions keys that psrun owns per process and never passes through from the user. */
// authToken: psrun hands it to its processes in the environment (PSRPC_AUTH_TOKEN), never on a
// command line, which any user of the machine can read.
export const PER_PROCESS_KEYS = new Set(['json', 'progress', 'name', 'rank', 'worldSize', 'master', 'listen', 'advertise', 'servers', 'trainers', 'topology', 'authToken']);

/** Keys that describe the topology (top level of a topology file), not the training run. */
export const TOPOLOGY_KEYS = new Set(['strategy', 'consistency', 'staleness']);

/** A value a training flag can take (an object: --model-options, parsed from its JSON). */
export type FlagValue = string | number | boolean | number[] | Record<string, unknown>;

/** The training options given explicitly (flags or a topology file), by TrainOptions key. */
export type TrainFlags = Partial<Record<keyof TrainOptions, FlagValue>>;

let table: Map<string, Option> | undefined;

/** Every pass-through option of addTrainFlags, by attribute name (camelCase TrainOptions key). */
export function trainFlagTable(): Map<string, Option> {
  if (!table) {
    table = new Map();
    for (const opt of addTrainFlags(new Command()).options) {
      const key = opt.attributeName();
      if (!PER_PROCESS_KEYS.has(key)) table.set(key, opt);
    }
  }
  return table;
}

/**
 * Checks one value with the option's own choices and parser; returns the parsed value or throws
 * an Error whose message names the value (the caller prefixes where it came from).
 */
export function parseFlagValue(key: string, raw: unknown): FlagValue {
  const opt = trainFlagTable().get(key);
  if (!opt) throw new Error(`unknown training option '${key}'`);
  if (opt.isBoolean()) {
    if (typeof raw !== 'boolean') throw new Error(`must be true or false, got ${JSON.stringify(raw)}`);
    return raw;
  }
  if (typeof raw !== 'string' && typeof raw !== 'number') throw new Error(`must be a string or a number, got ${JSON.stringify(raw)}`);
  const text = String(raw);
  if (opt.argChoices && !opt.argChoices.includes(text)) {
    throw new Error(`must be one of ${opt.argChoices.join(', ')}, got '${text}'`);
  }
  if (opt.parseArg) {
    try {
      return opt.parseArg<unknown>(text, undefined) as FlagValue;
    } catch (e) {
      if (e instanceof InvalidArgumentError) throw new Error(e.message);
      throw e;
    }
  }
  return text;
}

/** The command-line form of training options: `--batch-size 64 --lr 0.05 ...`, in table order. */
export function trainFlagArgs(flags: TrainFlags): string[] {
  const out: string[] = [];
  for (const [key, opt] of trainFlagTable()) {
    const v = flags[key as keyof TrainOptions];
    // a negatable flag (--no-reshard-after-forward) is given as false and written as itself
    if (opt.negate) {
      if (v === false) out.push(opt.long!);
      continue;
    }
    if (v === undefined || v === false) continue;
    out.push(opt.long!);
    // an object goes back as the JSON it was parsed from (String() would make it '[object Object]')
    // and a list (--split) as the comma-separated indices it was parsed from
    if (v !== true) out.push(Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v));
  }
  return out;
}
