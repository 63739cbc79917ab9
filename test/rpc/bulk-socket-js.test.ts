// The side-channel and shared-memory tests again on the JS implementation of the side channel
// (node's net sockets) instead of the native transport: both must behave the same.
import './env-js-bulk.js';
import './bulk-socket.test.js';
import './shm.test.js';
