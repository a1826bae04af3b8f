// Owns one conformance run as a function (main.ts and the tests call it): check the material, connect as the
// gateway, run the cases, close.
import { type KeyObject, X509Certificate } from 'node:crypto';
import type { ProviderId } from '../catalog.ts';
import type { TrustedJwk } from '../keys.ts';
import { TOKEN_ISSUER } from '../token.ts';
import type { ConformanceCase } from './case.ts';
import { CASES } from './cases/index.ts';
import { ConformanceError } from './errors.ts';
import type { StateHook } from './hook.ts';
import { openLink } from './link.ts';
import { createPacer, DEFAULT_PACE } from './pacer.ts';
import { type CaseResult, runCases } from './runner.ts';
import { createSession } from './session.ts';
import { kitKey } from './signer.ts';

export const DEFAULT_CLIENT_ID = 'gateway-conformance';
export const DEFAULT_RELOCK_MS = 120_000;
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_REBOOT_TIMEOUT_MS = 120_000;

/** Cases that run whatever --only says: without them nothing else means anything. */
export const GATES = ['state.query-answered', 'session.kit-key-trusted'] as const;

export interface ConformanceOptions {
  brokerUrl: string;
  vin: string;
  provider: ProviderId;
  /** PEM: the CA, the kit's gateway certificate and its key. */
  tls: { ca: string; cert: string; key: string };
  clientId?: string;
  servername?: string;
  /** The Ed25519 key the kit signs tokens and announcements with; the endpoint must trust it. */
  signingKey: KeyObject;
  /** PEM of the certificate the CA issued for the VIN: its key must sign every ack. */
  vehicleCert: string;
  /** The gateway keys the endpoint was enrolled with; every announcement keeps them. */
  enrolledKeys?: readonly TrustedJwk[];
  issuer?: string;
  hook: StateHook;
  /** The endpoint's fail-safe relock time, ms. */
  relockMs?: number;
  /** Endpoint messages per second the kit allows itself to cause; 0 turns pacing off. */
  pacePerSecond?: number;
  timeoutMs?: number;
  rebootTimeoutMs?: number;
  /** Runs only these cases (and the gates). */
  select?: (c: ConformanceCase) => boolean;
  onResult?: (result: CaseResult) => void;
  sleep?: (ms: number) => Promise<void>;
}

export interface ConformanceReport {
  results: CaseResult[];
  startedAt: Date;
  durationMs: number;
  /** Time spent waiting to stay inside the endpoint's publish budget. */
  pacedMs: number;
  /** True when every case passed (none failed, none skipped). */
  passed: boolean;
}

/**
 * Checks the vehicle certificate as the gateway does when it pins one (TOKEN.md §9.3): issued and signed by the
 * CA, for exactly this VIN, valid now, with a P-256 key. Returns its public key.
 */
export function vehicleKeyFrom(certPem: string, caPem: string, vin: string, now = Date.now()): KeyObject {
  const bad = (why: string) =>
    new ConformanceError('CONFORMANCE_MATERIAL_INVALID', `the vehicle certificate ${why}`);
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
    ca = new X509Certificate(caPem);
  } catch {
    throw bad('or the CA certificate is not a PEM certificate');
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw bad('was not issued by the CA');
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  const uris = (cert.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:'));
  if (cn !== vin || uris.length !== 1 || uris[0] !== `URI:urn:vin:${vin}`) throw bad(`does not bind ${vin}`);
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) throw bad('is not valid now');
  const key = cert.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw bad('does not hold a P-256 key');
  }
  return key;
}

/** The cases a run takes: all of them, or the selected ones and the gates. */
export function selectedCases(select?: (c: ConformanceCase) => boolean): ConformanceCase[] {
  return CASES.filter((c) => !select || (GATES as readonly string[]).includes(c.id) || select(c));
}

export async function runConformance(options: ConformanceOptions): Promise<ConformanceReport> {
  const vehicleKey = vehicleKeyFrom(options.vehicleCert, options.tls.ca, options.vin);
  const signer = await kitKey(options.signingKey);
  const pace = options.pacePerSecond ?? DEFAULT_PACE.perSecond;
  const pacer = createPacer({ perSecond: pace, burst: DEFAULT_PACE.burst });
  const link = await openLink({
    brokerUrl: options.brokerUrl,
    vin: options.vin,
    ...options.tls,
    clientId: options.clientId ?? DEFAULT_CLIENT_ID,
    ...(options.servername === undefined ? {} : { servername: options.servername }),
  });
  const session = createSession({
    link,
    vin: options.vin,
    provider: options.provider,
    vehicleKey,
    signer,
    issuer: options.issuer ?? TOKEN_ISSUER,
    pacer,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  const startedAt = new Date();
  try {
    const results = await runCases({
      session,
      hook: options.hook,
      cases: selectedCases(options.select),
      relockMs: options.relockMs ?? DEFAULT_RELOCK_MS,
      rebootTimeoutMs: options.rebootTimeoutMs ?? DEFAULT_REBOOT_TIMEOUT_MS,
      enrolledKeys: options.enrolledKeys ?? [],
      ...(options.onResult ? { onResult: options.onResult } : {}),
      ...(options.sleep ? { sleep: options.sleep } : {}),
    });
    return {
      results,
      startedAt,
      durationMs: Date.now() - startedAt.getTime(),
      pacedMs: pacer.waitedMs(),
      passed: results.every((r) => r.verdict === 'pass'),
    };
  } finally {
    session.close();
    await link.close();
  }
}
