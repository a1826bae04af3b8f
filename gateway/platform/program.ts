// Owns what the gateway programs (npm run gateway, npm start) share: their arguments, --help, and exit codes.
import { parseArgs } from 'node:util';
import { configHelpText } from './config.ts';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export type ProgramArgs = { kind: 'help' } | { kind: 'run' } | { kind: 'usage'; reason: string };

/** Settings come from the environment; the only argument is --help, anything else is a one-line refusal. */
export function parseProgramArgs(argv: string[]): ProgramArgs {
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { help: { type: 'boolean', short: 'h', default: false } },
    });
    return values.help ? { kind: 'help' } : { kind: 'run' };
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0] ?? 'bad arguments';
    return { kind: 'usage', reason: `${reason}; settings are environment variables, see --help` };
  }
}

export function programHelp(usage: string): string {
  return `${usage}\n\nEnvironment (CONFIG_FILE may hold the same names; the environment wins):\n${configHelpText()}\n`;
}
