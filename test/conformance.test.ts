// The conformance kit's parts without a broker: its cases against the published vectors, the pacing, the
// JUnit report, the state hooks, its command line; and the simulator's flaws, off unless named.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDevPki } from '../certs/index.ts';
import {
  CASES,
  type CaseResult,
  caseLine,
  commandHook,
  createPacer,
  interactiveHook,
  junitXml,
  parseHookSpec,
  parseCli as parseKitCli,
  summaryLines,
  VECTORS_NOT_RUN_LIVE,
  vehicleKeyFrom,
} from '../protocols/conformance/index.ts';
import { loadSeeds } from '../seeds/index.ts';
import { parseCli as parseSimulatorCli, USAGE as SIMULATOR_USAGE } from '../simulator/cli.ts';
import { carView } from '../simulator/control.ts';
import { FLAW_CHECKS, FLAWS, flawedVerification, NO_FLAWS, parseFlaws } from '../simulator/flaws.ts';
import { type Fleet, startFleet } from '../simulator/fleet.ts';
import { createMemoryReplayStore } from '../simulator/replay-store.ts';
import { fakeClients } from './helpers/fake-mqtt.ts';
import { parseJunit, parseXml } from './helpers/junit.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VIN = '1G1ZE5ST5KF100231';

describe('the cases', () => {
  const vectors = (name: string): string[] =>
    (
      JSON.parse(readFileSync(join(ROOT, 'protocols', 'vectors', `${name}.json`), 'utf8')) as {
        cases: Array<{ name: string }>;
      }
    ).cases.map((c) => `${name}: ${c.name}`);
  const published = [...vectors('tokens'), ...vectors('announcements'), ...vectors('commands')];
  const run = CASES.flatMap((c) => c.vectors ?? []);

  it('run every published token, announcement and command vector live, but those listed with a reason', () => {
    const missing = published.filter((v) => !run.includes(v) && !Object.hasOwn(VECTORS_NOT_RUN_LIVE, v));
    expect(missing).toEqual([]);
    expect(Object.keys(VECTORS_NOT_RUN_LIVE)).toEqual(['tokens: the replay store is full']);
  });

  it('name only vectors that exist', () => {
    expect(run.filter((v) => !published.includes(v))).toEqual([]);
  });

  it('have unique ids of the form group.name, and each cites a section of the protocol documents', () => {
    const ids = CASES.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const c of CASES) {
      expect(c.id).toMatch(/^[a-z]+\.[a-z0-9-]+$/);
      expect(c.spec).toMatch(/^(PROTOCOL|TOKEN|PROVIDERS)\.md §\d/);
      expect(c.expected.length).toBeGreaterThan(0);
    }
  });

  it('cite only sections the documents have', () => {
    const docs = Object.fromEntries(
      ['PROTOCOL', 'TOKEN', 'PROVIDERS'].map((d) => [
        d,
        readFileSync(join(ROOT, 'protocols', `${d}.md`), 'utf8'),
      ]),
    );
    for (const c of CASES) {
      // "PROTOCOL.md §5.1, TOKEN.md §7, §8": a section belongs to the last document named before it.
      let doc = '';
      for (const [, name, section] of c.spec.matchAll(
        /(?:(PROTOCOL|TOKEN|PROVIDERS)\.md )?(?:\(?)§(\d+(?:\.\d+)*)/g,
      )) {
        if (name) doc = name;
        expect(docs[doc], `${c.id}: §${section} of ${doc}.md`).toMatch(
          new RegExp(`^#+ ${(section as string).replaceAll('.', '\\.')}\\.? `, 'm'),
        );
      }
    }
  });

  it('import nothing of ours outside protocols/ (the kit is the protocol’s, not the gateway’s or the car’s)', () => {
    const kit = join(ROOT, 'protocols', 'conformance');
    const files = readdirSync(kit, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const text = readFileSync(join(kit, file), 'utf8');
      for (const [, spec] of text.matchAll(/from '(\.[^']+)'/g)) {
        const target = relative(join(ROOT, 'protocols'), resolve(dirname(join(kit, file)), spec as string));
        expect(target.startsWith('..'), `${file} imports ${spec}`).toBe(false);
      }
    }
  });
});

describe('pacing (PROTOCOL.md §2: a car may publish 20 at once, then 5 a second)', () => {
  function clock() {
    let t = 0;
    const slept: number[] = [];
    return {
      now: () => t,
      sleep: async (ms: number) => {
        slept.push(ms);
        t += ms;
      },
      slept,
    };
  }

  it('lets a burst through, then waits so the endpoint stays within the rate', async () => {
    const c = clock();
    const pacer = createPacer({ perSecond: 4, burst: 16, now: c.now, sleep: c.sleep });
    for (let i = 0; i < 8; i++) {
      await pacer.ready(2);
      pacer.spent();
      pacer.spent();
      pacer.settle();
    }
    expect(c.slept).toEqual([]);
    await pacer.ready(2);
    expect(c.slept).toEqual([500]);
    expect(pacer.waitedMs()).toBe(500);
  });

  it('counts what the endpoint sends unasked, and gives back reservations no message used', async () => {
    const c = clock();
    const pacer = createPacer({ perSecond: 4, burst: 16, now: c.now, sleep: c.sleep });
    for (let i = 0; i < 14; i++) pacer.spent(); // periodic reports, a reconnect…
    await pacer.ready(2);
    expect(c.slept).toEqual([]);
    pacer.spent(); // a refusal: one ack, not the two reserved
    pacer.settle();
    await pacer.ready(2);
    expect(c.slept).toEqual([250]);
  });

  it('waits for nothing when off', async () => {
    const c = clock();
    const pacer = createPacer({ perSecond: 0, burst: 16, now: c.now, sleep: c.sleep });
    for (let i = 0; i < 100; i++) {
      await pacer.ready(2);
      pacer.spent();
    }
    expect(c.slept).toEqual([]);
  });
});

const result = (over: Partial<CaseResult>): CaseResult => ({
  id: 'token.aud-mismatch',
  title: 'aud another VIN',
  spec: 'TOKEN.md §5 step 12',
  expected: 'refused TOKEN_AUDIENCE_MISMATCH',
  requires: ['locked'],
  verdict: 'pass',
  observed: 'refused TOKEN_AUDIENCE_MISMATCH',
  durationMs: 12,
  ...over,
});

describe('the report', () => {
  it('prints one line per case: verdict, id, what the endpoint did, the spec section; a failure says why', () => {
    expect(caseLine(result({}), 20)).toBe(
      'PASS  token.aud-mismatch    refused TOKEN_AUDIENCE_MISMATCH     TOKEN.md §5 step 12',
    );
    expect(
      caseLine(result({ verdict: 'fail', observed: 'executed, unlocked', detail: 'expected refused X' }), 18),
    ).toBe(
      'FAIL  token.aud-mismatch  executed, unlocked                  TOKEN.md §5 step 12  — expected refused X',
    );
  });

  it('sums up and names the failed cases', () => {
    const lines = summaryLines(
      [result({}), result({ id: 'a.b', verdict: 'fail' }), result({ id: 'c.d', verdict: 'skip' })],
      12_345,
      2_000,
    );
    expect(lines).toEqual([
      '3 cases: 1 passed, 1 failed, 1 skipped in 12.3 s (2.0 s of it paced, PROTOCOL.md §2)',
      'failed: a.b',
    ]);
  });

  it('writes JUnit XML that parses, with one testsuite per group and the counts CI reads', () => {
    const hostile = 'a <tag> & "quotes" \u0001 \u00e9';
    const xml = junitXml({
      properties: { vin: VIN, note: hostile },
      startedAt: new Date('2026-01-01T12:00:00Z'),
      durationMs: 1_500,
      results: [
        result({}),
        result({ id: 'token.aud-array', verdict: 'fail', observed: hostile, detail: hostile }),
        result({ id: 'reboot.replay-kept', verdict: 'skip', observed: 'not run', detail: 'declined' }),
      ],
    });
    expect(() => parseXml(xml)).not.toThrow();
    const report = parseJunit(xml);
    expect(report).toMatchObject({ tests: 3, failures: 1, skipped: 1 });
    expect(report.testcases).toEqual([
      { name: 'token.aud-mismatch', classname: 'conformance.token', failure: false, skipped: false },
      { name: 'token.aud-array', classname: 'conformance.token', failure: true, skipped: false },
      { name: 'reboot.replay-kept', classname: 'conformance.reboot', failure: false, skipped: true },
    ]);
    expect(xml.match(/<testsuite /g)).toHaveLength(2);
    expect(xml).toContain('a &lt;tag&gt; &amp; &quot;quotes&quot; \ufffd \u00e9');
  });
});

describe('the state hook', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'conformance-hook-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('parses its four forms and nothing else', () => {
    expect(parseHookSpec('interactive')).toEqual({ kind: 'interactive' });
    expect(parseHookSpec('none')).toEqual({ kind: 'none' });
    expect(parseHookSpec('sim:http://127.0.0.1:8890')).toEqual({ kind: 'sim', url: 'http://127.0.0.1:8890' });
    expect(parseHookSpec('command:./bench-hook.sh')).toEqual({ kind: 'command', script: './bench-hook.sh' });
    for (const bad of ['sim:ftp://x', 'sim:', 'command:', 'manual']) expect(parseHookSpec(bad)).toBeNull();
  });

  it('runs a script with the request and the VIN: exit 0 done, 3 declined, anything else a failure', async () => {
    const script = join(dir, 'hook.sh');
    writeFileSync(
      script,
      '#!/bin/sh\necho "$1 $2 $CONFORMANCE_VIN" >> "$(dirname "$0")/calls"\n' +
        'case "$1" in baseline) exit 0;; reboot) echo "no relay on this bench" >&2; exit 3;; *) echo broken >&2; exit 1;; esac\n',
    );
    chmodSync(script, 0o755);
    const hook = commandHook(script, VIN);
    expect(await hook.request({ kind: 'baseline' })).toEqual({ done: true });
    expect(await hook.request({ kind: 'reboot' })).toEqual({
      done: false,
      reason: `${script}: no relay on this bench`,
    });
    await expect(hook.request({ kind: 'clock', known: false })).rejects.toMatchObject({
      code: 'CONFORMANCE_HOOK_FAILED',
      message: expect.stringContaining('clock-unknown: broken'),
    });
    expect(readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean)).toEqual([
      `baseline ${VIN} ${VIN}`,
      `reboot ${VIN} ${VIN}`,
      `clock-unknown ${VIN} ${VIN}`,
    ]);
  });

  it('asks a person and waits for Enter; "skip" declines, and so does a closed input', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let shown = '';
    output.on('data', (d: Buffer) => {
      shown += d.toString();
    });
    const hook = interactiveHook(input, output);
    const first = hook.request({ kind: 'reboot' });
    input.write('\n');
    expect(await first).toEqual({ done: true });
    expect(shown).toContain('Power-cycle the unit');
    const second = hook.request({ kind: 'clock', known: false });
    input.write('skip\n');
    expect(await second).toMatchObject({ done: false });
    input.end();
    expect(await hook.request({ kind: 'baseline' })).toMatchObject({ done: false });
    hook.close?.();
  });
});

describe('the command line', () => {
  const base = ['--broker', 'mqtts://127.0.0.1:8883', '--vin', VIN, '--provider', 'onstar'];

  it('takes every file from the PKI folder unless named, and the defaults of the usage text', () => {
    const cmd = parseKitCli([...base, '--pki', '/pki', '--cert', '/elsewhere/kit.crt']);
    expect(cmd).toMatchObject({
      kind: 'run',
      options: {
        provider: 'onstar',
        relockMs: 120_000,
        pace: 4,
        clientId: 'gateway-conformance',
        hook: { kind: 'interactive' },
        junit: 'conformance-report.xml',
        files: {
          ca: '/pki/ca.crt',
          cert: '/elsewhere/kit.crt',
          key: '/pki/gateway.key',
          signingKey: '/pki/token-signing.key',
          trustedKeys: { path: '/pki/trusted-keys.json', explicit: false },
          vehicleCert: `/pki/vehicles/${VIN}.crt`,
        },
      },
    });
  });

  it.each([
    [[], /^--broker is required$/],
    [['--broker', 'mqtts://h:1', '--vin', '1G1ZE5ST5KF100232', '--provider', 'onstar'], /VIN_CHECK_DIGIT/],
    [['--broker', 'mqtts://h:1', '--vin', VIN, '--provider', 'tesla'], /^--provider must be one of/],
    [[...base, '--hook', 'manual'], /^--hook manual:/],
    [[...base, '--only', 'nothing.'], /^--only nothing\. matches no case/],
    [[...base, '--client-id', 'gateway#'], /^--client-id must be/],
    [[...base, '--pace', 'fast'], /^--pace must be a whole number/],
    [[...base, '--relock-ms', '0'], /^--relock-ms must be a whole number from 1/],
    [[...base, 'extra'], /Unexpected argument 'extra'/],
  ])('refuses %j with one line', (argv, reason) => {
    expect(() => parseKitCli(argv)).toThrow(
      expect.objectContaining({ code: 'CONFORMANCE_ARGS_INVALID', message: expect.stringMatching(reason) }),
    );
  });

  it('checks the vehicle certificate as the gateway pins one: issued by the CA, for this VIN', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conformance-cert-'));
    try {
      const pki = await ensureDevPki({ dir, vins: [VIN, 'YV1A22MK3F1900345'] });
      const ca = readFileSync(pki.caCert, 'utf8');
      expect(vehicleKeyFrom(readFileSync(pki.vehicleCert(VIN), 'utf8'), ca, VIN).asymmetricKeyType).toBe(
        'ec',
      );
      expect(() =>
        vehicleKeyFrom(readFileSync(pki.vehicleCert('YV1A22MK3F1900345'), 'utf8'), ca, VIN),
      ).toThrow(
        expect.objectContaining({
          code: 'CONFORMANCE_MATERIAL_INVALID',
          message: expect.stringContaining('does not bind'),
        }),
      );
      expect(() => vehicleKeyFrom(readFileSync(pki.gatewayCert, 'utf8'), ca, VIN)).toThrow(/does not bind/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the simulator’s flaws', () => {
  it('are off unless named: none by default, on the command line and in a fleet', async () => {
    const cli = parseSimulatorCli(['--broker', 'mqtts://127.0.0.1:8883']);
    expect(cli.kind === 'run' && cli.options.flaws).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'sim-flaws-'));
    let fleet: Fleet | undefined;
    try {
      const { generateKeyPairSync } = await import('node:crypto');
      const carKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      });
      const { trustedJwkFor } = await import('../protocols/keys.ts');
      fleet = await startFleet({
        brokerUrl: 'mqtts://127.0.0.1:8883',
        vehicles: loadSeeds().vehicles.filter((v) => v.vin === VIN),
        pki: { ca: 'CA', certFor: () => ({ cert: 'C', key: carKey }) },
        trustedKeys: { keys: [await trustedJwkFor(generateKeyPairSync('ed25519').publicKey)] },
        dataDir: dir,
        createClient: fakeClients().create,
      });
      expect(fleet.car(VIN).flaws).toEqual([]);
      expect(carView(fleet.car(VIN)).flaws).toEqual([]);
    } finally {
      await fleet?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('are named one by one with --flaw, and an unknown one is refused', () => {
    const cli = parseSimulatorCli(['--broker', 'mqtts://h:1', '--flaw', 'skip-aud', '--flaw', 'no-failsafe']);
    expect(cli.kind === 'run' && cli.options.flaws).toEqual(['skip-aud', 'no-failsafe']);
    expect(() => parseSimulatorCli(['--broker', 'mqtts://h:1', '--flaw', 'skip-everything'])).toThrow(
      expect.objectContaining({
        code: 'SIM_ARGS_INVALID',
        message: expect.stringMatching(/^--flaw: unknown flaw skip-everything/),
      }),
    );
    expect(() => parseFlaws(['skip-aud', 'bogus'])).toThrow(RangeError);
  });

  it('are each listed with the check they disable in --help', () => {
    for (const flaw of FLAWS) expect(SIMULATOR_USAGE).toContain(`${flaw.padEnd(25)}  ${FLAW_CHECKS[flaw]}`);
  });

  it('leave the verification untouched when there are none', () => {
    const ctx = {
      keys: new Map(),
      issuer: 'urn:gateway:gateway',
      vin: VIN,
      action: 'unlock' as const,
      commandId: 'cmd_1',
      deliveryId: 'dlv_1',
      now: Date.now(),
      replay: createMemoryReplayStore({ capacity: 10 }),
      isRevoked: () => false,
    };
    const same = flawedVerification('a.b.c', ctx, NO_FLAWS);
    expect(same.token).toBe('a.b.c');
    expect(same.ctx).toBe(ctx);
  });
});
