// Owns the token program: wires stdio and the file system into the reviewer's command line.
import '../../runtime.ts';
import { readFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { runTokenCli } from './token.ts';

process.exitCode = await runTokenCli(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  readFile: (path) => readFileSync(path, 'utf8'),
  readStdin: () => text(process.stdin),
});
