// `certs nats`: the nats-server cluster's files from the PKI, deny by default, a revoked car left out on a re-run,
// the route password private and kept, and hostile options refused with nothing written.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CertError,
  type DevPkiPaths,
  ensureDevPki,
  ensureReplicaIdentity,
  natsAuthorization,
  natsIdentities,
  natsPortsFrom,
  revokeVehicle,
  writeNatsFiles,
} from '../certs/index.ts';

const A = '1G1ZE5ST5KF100231';
const B = 'YV1A22MK3F1900345';
let dir: string;
let pki: DevPkiPaths;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'curbside-nats-config-'));
  pki = await ensureDevPki({ dir: join(dir, 'pki'), vins: [A, B] });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const codeOf = async (fn: () => Promise<unknown>): Promise<string> => {
  try {
    await fn();
    return 'no error';
  } catch (error) {
    return error instanceof CertError ? error.code : String(error);
  }
};

describe('certs nats', () => {
  it('lists the gateway and each car with only its own subjects, over MQTT only', () => {
    const text = natsAuthorization({ gateways: ['gateway'], vins: [A] });
    const users = text.split('\n').filter((line) => line.includes('user: '));
    expect(users).toEqual([
      '    { user: "CN=gateway", allowed_connection_types: ["MQTT"], permissions: { publish: { allow: ["vehicles.*.commands", "vehicles._probe.acks", "vehicles._probe.state"] }, subscribe: { allow: ["$MQTT.sub.>", "vehicles.*.acks", "vehicles.*.state"] } } }',
      `    { user: "CN=${A}", allowed_connection_types: ["MQTT"], permissions: { publish: { allow: ["vehicles.${A}.acks", "vehicles.${A}.state"] }, subscribe: { allow: ["$MQTT.sub.>", "vehicles.${A}.commands"] } } }`,
    ]);
    // No default permissions and no user without a certificate: whoever is not listed is refused.
    expect(text).not.toMatch(/default_permissions|no_auth_user|password/);
  });

  it('writes one 0600 file per node with routes to the others, and keeps the route password on a re-run', async () => {
    const out = join(dir, 'out');
    const files = await writeNatsFiles({
      pki,
      outDir: out,
      host: '127.0.0.1',
      nodes: natsPortsFrom(18883, 3),
    });
    expect(files.urls).toEqual([
      'mqtts://127.0.0.1:18883',
      'mqtts://127.0.0.1:18884',
      'mqtts://127.0.0.1:18885',
    ]);
    expect(files.nodes.map((p) => statSync(p).mode & 0o777)).toEqual([0o600, 0o600, 0o600]);
    const n1 = readFileSync(files.nodes[0] as string, 'utf8');
    expect(n1).toContain('server_name: n1');
    expect(n1).toContain('listen: "127.0.0.1:18883"'); // MQTT
    expect(n1).toContain('listen: "127.0.0.1:19083"'); // routes
    expect(n1).toMatch(/nats-route:\/\/route:[0-9a-f]{48}@127\.0\.0\.1:19084/);
    expect(n1).toMatch(/nats-route:\/\/route:[0-9a-f]{48}@127\.0\.0\.1:19085/);
    expect(n1).not.toMatch(/@127\.0\.0\.1:19083/); // no route to itself
    expect(n1.match(/verify_and_map: true/g)).toHaveLength(2);
    expect(n1).toContain('include "authorization.conf"');
    const password = /password: "([0-9a-f]+)"/.exec(n1)?.[1];
    await writeNatsFiles({ pki, outDir: out, host: '127.0.0.1', nodes: natsPortsFrom(18883, 3) });
    expect(/password: "([0-9a-f]+)"/.exec(readFileSync(files.nodes[2] as string, 'utf8'))?.[1]).toBe(
      password,
    );
  });

  it('leaves a car out once its certificate is revoked', async () => {
    expect(natsIdentities(pki).vins).toEqual([A, B].sort());
    await revokeVehicle({ dir: pki.dir, vin: B });
    expect(natsIdentities(pki)).toEqual({ gateways: ['gateway'], vins: [A] });
    const out = join(dir, 'revoked');
    const files = await writeNatsFiles({
      pki,
      outDir: out,
      host: '127.0.0.1',
      nodes: natsPortsFrom(28883, 1),
    });
    const text = readFileSync(files.authorization, 'utf8');
    expect(text).toContain(`CN=${A}`);
    expect(text).not.toContain(B);
    // One node: no cluster block (JetStream refuses one without routes).
    expect(readFileSync(files.nodes[0] as string, 'utf8')).not.toContain('cluster {');
  });

  it("gives each replica's own certificate (certs replica) a gateway user, named from the certificate", async () => {
    await ensureReplicaIdentity({ dir: pki.dir, replica: 'r2' });
    // A file whose name claims another identity than its certificate is left out.
    copyFileSync(join(pki.dir, 'gateways', 'gateway-r2.crt'), join(pki.dir, 'gateways', 'gateway-r9.crt'));
    expect(natsIdentities(pki).gateways).toEqual(['gateway', 'gateway-r2']);
    expect(natsAuthorization(natsIdentities(pki))).toContain(
      '{ user: "CN=gateway-r2", allowed_connection_types',
    );
  });

  it.each([
    ['a host with a space', { host: 'a b' }],
    ['a host with a quote', { host: '127.0.0.1"' }],
    ['a host with a variable', { host: '$HOME' }],
    ['a port out of range', { nodes: [{ mqtt: 70_000, client: 1, cluster: 2 }] }],
    ['no node', { nodes: [] }],
    ['a route password with a quote', { routePassword: 'a"b' }],
  ])('refuses %s and writes nothing', async (_why, over) => {
    const out = join(dir, `bad-${Math.random().toString(36).slice(2)}`);
    const code = await codeOf(() =>
      writeNatsFiles({ pki, outDir: out, host: '127.0.0.1', nodes: natsPortsFrom(38883, 3), ...over }),
    );
    expect(code).toBe('CERT_OPTIONS_INVALID');
    expect(existsSync(out)).toBe(false);
  });
});
