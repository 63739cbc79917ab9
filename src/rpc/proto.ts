// The services of protos/psrpc.proto, loaded with @grpc/proto-loader, and the channel options the
// agents use.
//
// Rendezvous keeps protobuf messages (they are small and rare). The Agent service's Frame messages
// are psrpc's own bytes: their (de)serializers are replaced with identity functions, so that a
// tensor goes from its typed array into grpc-js's framing buffer with no protobuf copy in between.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function protoFile(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const f = join(dir, 'protos', 'psrpc.proto');
    if (existsSync(f)) return f;
    const up = dirname(dir);
    if (up === dir) throw new Error(`psrpc: cannot find protos/psrpc.proto above ${dirname(fileURLToPath(import.meta.url))}`);
    dir = up;
  }
}

export interface WireWorkerInfo { name: string; rank: number; address: string }
export interface JoinRequest { worker: WireWorkerInfo; worldSize: number; rejoin?: boolean }
export interface LookupRequest { name: string; staleAddress: string; waitMs: number }
export interface JoinReply { workers: WireWorkerInfo[]; departed?: string[] }
export interface LeaveRequest { name: string }
export interface BarrierRequest { name: string; round: number; idle: boolean; activity: number }
export interface BarrierReply { allIdle: boolean; activity: number }

let loaded: { rendezvous: grpc.ServiceDefinition; agent: grpc.ServiceDefinition } | undefined;

const identity = (b: Buffer) => b;

function load() {
  if (loaded) return loaded;
  const def = protoLoader.loadSync(protoFile(), { keepCase: false, longs: Number, defaults: true, oneofs: true });
  const rendezvous = def['psrpc.Rendezvous'] as grpc.ServiceDefinition;
  const agentProto = def['psrpc.Agent'] as grpc.ServiceDefinition;
  const agent: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  for (const [key, m] of Object.entries(agentProto)) {
    agent[key] = { ...m, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity };
  }
  loaded = { rendezvous, agent: agent as grpc.ServiceDefinition };
  return loaded;
}

export const rendezvousService = () => load().rendezvous;
export const agentService = () => load().agent;
export const EXCHANGE_PATH = '/psrpc.Agent/Exchange';
export const BULK_PATH = '/psrpc.Agent/Bulk';
export const RendezvousClient = () => grpc.makeGenericClientConstructor(load().rendezvous, 'psrpc.Rendezvous');

/** Options shared by the server and every channel. */
export function channelOptions(maxMessageBytes: number): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // 'grpc-node.flow_control_window' stays at HTTP/2's default: measured here (bench/rpc.ts,
    // 16 MiB windows on both sides), larger windows made large echoes slower, not faster
    'grpc.max_concurrent_streams': 1 << 20,
    // a peer that vanishes without closing its socket is noticed by keepalive
    'grpc.keepalive_time_ms': 20_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    // each agent pair gets its own connection, not one shared through grpc-js's subchannel pool
    'grpc.use_local_subchannel_pool': 1,
  };
}
