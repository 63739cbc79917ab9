// Process entry of the `ps-server` command (bin/ps-server.js runs the compiled copy of this file).
import { main } from './cli.js';

process.exitCode = await main(process.argv);
