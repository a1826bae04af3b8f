// The audit log across kill -9: a child appends decisions to a real store (the run's dialect) and is SIGKILLed
// mid-stream, twice.
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createAuditLog } from '../gateway/audit/log.ts';
import { timelinesOf } from '../gateway/store/timeline.ts';
import { type AuditEntry, verifierKeyFor, verifyBundle } from '../protocols/audit/index.ts';
import { type ScratchStore, scratchStore } from './helpers/temp-store.ts';

const WRITER = fileURLToPath(new URL('./helpers/audit-writer.ts', import.meta.url));
const children: ChildProcess[] = [];
const dirs: string[] = [];
const stores: ScratchStore[] = [];

afterEach(async () => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const store of stores.splice(0)) await store.drop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs the writer until it has reported `commits` commits, SIGKILLs it, and returns the last n it reported. */
function runAndKill(store: ScratchStore, round: number, commits: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', WRITER, JSON.stringify(store.config), String(round)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    let last = -1;
    let buffered = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const m = /^committed (\d+)$/.exec(line);
        if (m) last = Number(m[1]);
      }
      if (last + 1 >= commits && child.signalCode === null) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(last);
      else reject(new Error(`writer exited ${code}: ${stderr.slice(0, 500)}`));
    });
  });
}

describe('kill -9 while appending', () => {
  it('leaves no gap: contiguous indexes, whole decisions only, nothing acknowledged lost, and a tree that verifies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'curbside-crash-'));
    dirs.push(dir);
    const scratch = await scratchStore(dir);
    stores.push(scratch);
    const acknowledged = [await runAndKill(scratch, 1, 40), await runAndKill(scratch, 2, 20)];

    const store = await scratch.open();
    try {
      const rows = await store.db
        .selectFrom('audit_entries')
        .select(['idx', 'entry'])
        .orderBy('idx')
        .execute();
      expect(rows.map((r) => Number(r.idx))).toEqual(rows.map((_, i) => i));
      // The timeline is a view of the log: every entry (each names the delivery) is on it, in the same order.
      const ids = [...new Set(rows.map((r) => (JSON.parse(r.entry) as AuditEntry).deliveryId as string))];
      const timelines = await timelinesOf(store.db, ids);
      expect([...timelines.values()].flat().length).toBe(rows.length);
      const entries = rows.map((r) => JSON.parse(r.entry) as AuditEntry);
      for (const [round, last] of acknowledged.entries()) {
        const mine = entries.filter((e) => e.detail.round === round + 1);
        // Two entries per decision, decisions 0..k with no hole, k at least the last one acknowledged.
        expect(mine.length % 2).toBe(0);
        const ns = mine.filter((e) => e.kind === 'unlock_granted').map((e) => e.detail.n);
        expect(ns).toEqual(ns.map((_, i) => i));
        expect(ns.length - 1).toBeGreaterThanOrEqual(last);
        expect(ns.length - 1).toBeLessThanOrEqual(last + 1);
        expect(mine.filter((e) => e.kind === 'command_sent').map((e) => e.detail.n)).toEqual(ns);
      }
      const { privateKey } = generateKeyPairSync('ed25519');
      const origin = 'curbside-key.test/audit';
      const audit = createAuditLog({ db: store.db, signer: { origin, privateKey }, now: Date.now });
      const verified = verifyBundle(await audit.exportBundle(), { key: verifierKeyFor(origin, privateKey) });
      expect(verified.latest.size).toBe(rows.length);
    } finally {
      await store.close();
    }
  }, 30_000);
});
