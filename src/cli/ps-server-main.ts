// Process entry of the `ps-server` command (bin/ps-server.js runs the compiled copy of this file).
import { main } from './ps-server.js';

process.exitCode = await main(process.argv);
