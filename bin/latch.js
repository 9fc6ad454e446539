#!/usr/bin/env node
// `latch` command: runs the compiled CLI (built by `npm run build`, which `prepare` runs on install).
let cli;
try {
  cli = await import('../dist/src/cli/index.js');
} catch (err) {
  process.stderr.write(`latch: cannot load the CLI (${err && err.code === 'ERR_MODULE_NOT_FOUND' ? 'run `npm run build` first' : String(err && err.message)})\n`);
  process.exit(1);
}
try {
  process.exitCode = await cli.runCli(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`latch: ${err && err.message ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
