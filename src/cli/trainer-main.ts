// Process entry of the `trainer` command (bin/trainer.js runs the compiled copy of this file).
import { main } from './trainer.js';

process.exitCode = await main(process.argv);
