// The side-channel and shared-memory tests again with shared memory off (PSRPC_SHM=0): the native
// transport over TCP only.
import './env-no-shm.js';
import './bulk-socket.test.js';
import './shm.test.js';
