// Runs psrun from source in a child process (tests only), with the fixture script named by
// PSRUN_FIXTURE_SCRIPT standing in for ps-server and trainer: node --import tsx run-psrun.ts ARGS.
import { main } from '../../src/cli/psrun.js';

const script = process.env.PSRUN_FIXTURE_SCRIPT!;
process.exitCode = await main(process.argv, { resolve: (role) => ({ command: process.execPath, args: [script, role] }) });
