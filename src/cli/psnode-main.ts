// Process entry of the `psnode` command (bin/psnode.js runs the compiled copy of this file).
import { main } from './psnode.js';

process.exitCode = await main(process.argv);
