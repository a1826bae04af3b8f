// Owns what the gateway programs (npm run gateway, npm start) share: their arguments, --help, exit codes and stop signals.
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

export interface StopSignals {
  /** Resolves with the first SIGINT or SIGTERM. */
  first: Promise<NodeJS.Signals>;
  /** The first stop signal received so far, or null. */
  received(): NodeJS.Signals | null;
}

/**
 * Installs the SIGINT and SIGTERM handlers now. A program calls it before its HTTP port opens, so that a
 * signal at any later point (during start-up included) is answered with a drain rather than Node's default
 * kill. A second signal exits at once with EXIT_FAILED.
 */
export function watchStopSignals(): StopSignals {
  let received: NodeJS.Signals | null = null;
  const first = new Promise<NodeJS.Signals>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.once('SIGINT', () => process.exit(EXIT_FAILED));
      process.once('SIGTERM', () => process.exit(EXIT_FAILED));
      received = signal;
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return { first, received: () => received };
}
