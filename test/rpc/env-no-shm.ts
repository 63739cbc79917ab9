// Imported first by bulk-socket-tcp.test.ts: the native transport with shared memory off, in
// this process and the children it starts.
process.env.PSRPC_SHM = '0';
