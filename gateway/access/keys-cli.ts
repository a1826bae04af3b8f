// Owns `npm run keys`: create, list and revoke API keys in the store; thin, exit 2 with one line on bad usage.
import { parseArgs } from 'node:util';
import type { Store } from '../store/store.ts';
import {
  CALLER_KINDS,
  createApiKey,
  GrantError,
  listApiKeys,
  parseGrant,
  revokeApiKey,
  SCOPES,
} from './api-keys.ts';

export const KEYS_HELP = `Usage: npm run keys -- <command>

  create --scope <s>[,<s>…] (--owner <id> | --carrier <id>) [--label <text>]
         prints the key once on stdout (only its SHA-256 is stored)
  list   every key: id, scopes, binding, created, revoked
  revoke <id>

Scopes: ${SCOPES.join(', ')}
Caller kinds (each expands to its scope set):
${Object.entries(CALLER_KINDS)
  .map(([k, s]) => `  ${k.padEnd(9)} ${s.join(', ')}`)
  .join('\n')}
deliveries and commands need --carrier; vehicles, locations, parking and blocking need --owner;
webhooks needs one of them; timelines:read takes either or none; admin takes none.
The store is the one under DATA_DIR (default ./data).`;

export interface KeysCliDeps {
  argv: string[];
  openStore: () => Promise<Store>;
  out: (line: string) => void;
  err: (line: string) => void;
  now: () => number;
  newId: () => string;
}

class UsageError extends Error {}

const iso = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

/** Runs one command; resolves with the exit code (0 done, 1 refused, 2 bad usage). */
export async function runKeysCli(deps: KeysCliDeps): Promise<number> {
  const [command, ...rest] = deps.argv;
  if (command === '--help' || command === '-h' || rest.includes('--help') || rest.includes('-h')) {
    deps.out(KEYS_HELP);
    return 0;
  }
  if (command === undefined) {
    deps.err('keys: missing command: create, list or revoke (see --help)');
    return 2;
  }
  let run: (store: Store) => Promise<number>;
  try {
    run = plan(command, rest, deps);
  } catch (err) {
    if (!(err instanceof UsageError || err instanceof GrantError || err instanceof TypeError)) throw err;
    // parseArgs reports unknown or valueless options as TypeError with a code; one line either way.
    deps.err(`keys: ${(err as Error).message.split('\n')[0]} (see --help)`);
    return 2;
  }
  const store = await deps.openStore();
  try {
    return await run(store);
  } finally {
    await store.close();
  }
}

function plan(command: string, args: string[], deps: KeysCliDeps): (store: Store) => Promise<number> {
  if (command === 'create') {
    const { values, positionals } = parseArgs({
      args,
      options: {
        scope: { type: 'string', multiple: true },
        owner: { type: 'string' },
        carrier: { type: 'string' },
        label: { type: 'string' },
      },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    if (!values.scope?.length) throw new UsageError('create needs --scope');
    const grant = parseGrant({
      scopes: values.scope.flatMap((s) => s.split(',')).filter(Boolean),
      ownerId: values.owner ?? null,
      carrierId: values.carrier ?? null,
    });
    const label = values.label ?? `${grant.scopes.join('+')} key`;
    if (label.length > 128) throw new UsageError('--label is at most 128 characters');
    return async (store) => {
      const { id, key } = await createApiKey(store.db, {
        label,
        grant,
        now: deps.now(),
        id: `key_${deps.newId()}`,
      });
      const binding = grant.ownerId
        ? `owner ${grant.ownerId}`
        : grant.carrierId
          ? `carrier ${grant.carrierId}`
          : 'unbound';
      deps.err(`Created ${id} (${grant.scopes.join(', ')}; ${binding}). The key is shown once:`);
      deps.out(key);
      return 0;
    };
  }
  if (command === 'list') {
    if (args.length > 0) throw new UsageError(`list takes no arguments, got ${args[0]}`);
    return async (store) => {
      const keys = await listApiKeys(store.db);
      deps.out(['id', 'scopes', 'binding', 'created', 'revoked', 'label'].join('\t'));
      for (const k of keys) {
        const binding = k.ownerId ? `owner:${k.ownerId}` : k.carrierId ? `carrier:${k.carrierId}` : '-';
        deps.out(
          [k.id, k.scopes.join(',') || '(none)', binding, iso(k.createdAt), iso(k.revokedAt), k.label].join(
            '\t',
          ),
        );
      }
      return 0;
    };
  }
  if (command === 'revoke') {
    const [id, ...extra] = args;
    if (id === undefined || id.startsWith('-')) throw new UsageError('revoke needs a key id');
    if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}`);
    return async (store) => {
      if (!(await revokeApiKey(store.db, id, deps.now()))) {
        deps.err(`keys: no active key ${id}`);
        return 1;
      }
      deps.out(`revoked ${id}`);
      return 0;
    };
  }
  throw new UsageError(`unknown command ${command}`);
}
