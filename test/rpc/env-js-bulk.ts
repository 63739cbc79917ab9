// Imported first by bulk-socket-js.test.ts: the JS side channel (node's net sockets), in this
// process and the children it starts.
process.env.PSRPC_NATIVE_BULK = '0';
