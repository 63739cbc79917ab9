// Finds a free TCP port for the rendezvous: bind port 0 on the host, read the port the kernel
// chose, release it. Another program could take it in between; the window is milliseconds and
// rank 0 then fails with a clear "address in use", which psrun reports like any failure.
import { createServer } from 'node:net';
import { LaunchError } from './errors.js';

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (e) => reject(new LaunchError(`cannot find a free port on ${host}: ${e.message}`, undefined, { cause: e })));
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new LaunchError(`cannot find a free port on ${host}`))));
    });
  });
}
