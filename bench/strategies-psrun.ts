// `psrun` from source for the strategy benchmark: the same main() bin/psrun.js runs compiled;
// from a .ts file psrun starts its ps-server and trainer processes from source too.
import { main } from '../src/cli/psrun.js';

// wallSeconds counts from the process start, as bin/psrun.js does.
process.exitCode = await main(process.argv, { startTime: 0 });
