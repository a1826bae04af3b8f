// Owns the certs process: wires the real clock, stdio, seeds and temp dirs into the command line.
import '../runtime.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSeeds } from '../seeds/index.ts';
import { runCli } from './cli.ts';

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stderrIsTty: process.stderr.isTTY === true,
  now: () => new Date(),
  clock: () => performance.now(),
  seededVins: () => loadSeeds().vehicles.map((vehicle) => vehicle.vin),
  makeTempDir: () => mkdtempSync(join(tmpdir(), 'curbside-fleet-')),
});
