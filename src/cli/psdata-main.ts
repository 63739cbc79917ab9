// Process entry of the `psdata` command (bin/psdata.js runs the compiled copy of this file).
import { main } from './psdata.js';

process.exitCode = await main(process.argv);
