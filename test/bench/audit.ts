// Measures the audit log on a real SQLite file: appends per second (one transaction each, fsync on commit),
// then signing a checkpoint, building an export bundle and verifying it. Run: npx tsx test/bench/audit.ts [N]
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuditLog } from '../../gateway/audit/log.ts';
import { openStore } from '../../gateway/store/store.ts';
import { verifierKeyFor, verifyBundle } from '../../protocols/audit/index.ts';

const n = Number(process.argv[2] ?? 5000);
const dir = mkdtempSync(join(tmpdir(), 'curbside-audit-bench-'));
const store = await openStore({ kind: 'sqlite', file: join(dir, 'gateway.sqlite') });
const { privateKey } = generateKeyPairSync('ed25519');
const origin = 'curbside-key.bench/audit';
const audit = createAuditLog({ db: store.db, signer: { origin, privateKey }, now: Date.now });
const time = async <T>(label: string, fn: () => Promise<T> | T): Promise<T> => {
  const t0 = performance.now();
  const result = await fn();
  console.log(`${label.padEnd(44)} ${(performance.now() - t0).toFixed(0).padStart(7)} ms`);
  return result;
};
try {
  await time(`append ${n} entries, one transaction each`, async () => {
    for (let i = 0; i < n; i++) {
      await audit.append({
        at: Date.now(),
        kind: 'unlock_granted',
        outcome: 'granted',
        code: null,
        deliveryId: `dlv_${i % 97}`,
        detail: { driverId: 'driver-7', checks: ['driver', 'window', 'package', 'location', 'unlocks'], i },
      });
      if ((i + 1) % Math.ceil(n / 10) === 0) await audit.checkpoint();
    }
  });
  await time('checkpoint (tree head over every leaf, sign)', async () => {
    await audit.append({
      at: Date.now(),
      kind: 'delivery_completed',
      outcome: 'info',
      code: null,
      deliveryId: null,
      detail: {},
    });
    return audit.checkpoint();
  });
  const bundle = await time('export bundle (entries, 11 checkpoints, proofs)', () => audit.exportBundle());
  const text = JSON.stringify(bundle);
  console.log(`${'bundle size'.padEnd(44)} ${(text.length / 1024).toFixed(0).padStart(7)} KiB`);
  await time('verify bundle offline', () =>
    verifyBundle(JSON.parse(text), { key: verifierKeyFor(origin, privateKey) }),
  );
  await time('inclusion proof of entry n/2', () => audit.inclusion({ index: Math.floor(n / 2) }));
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
