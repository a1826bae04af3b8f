// The conformance kit's program (npm run conformance): reads the files, picks the hook, runs, prints, writes
// the JUnit report. The only module of the kit with side effects and the only reader of process state.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { type TrustedJwk, TrustedKeysFileSchema } from '../keys.ts';
import { CASES } from './cases/index.ts';
import { type CliOptions, parseCli, USAGE } from './cli.ts';
import { ConformanceError } from './errors.ts';
import { commandHook, interactiveHook, noHook, type StateHook, simulatorHook } from './hook.ts';
import { junitXml } from './junit.ts';
import { caseLine, listLines, summaryLines } from './report.ts';
import { runConformance, selectedCases, vehicleKeyFrom } from './run.ts';
import { kitKey } from './signer.ts';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

const material = (why: string): ConformanceError => new ConformanceError('CONFORMANCE_MATERIAL_INVALID', why);

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw material(`${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
}

function signingKeyFrom(path: string): KeyObject {
  try {
    const key = createPrivateKey(read(path, '--signing-key'));
    if (key.asymmetricKeyType === 'ed25519') return key;
  } catch (err) {
    if (err instanceof ConformanceError) throw err;
  }
  throw material(`--signing-key ${path} is not an Ed25519 private key (PEM)`);
}

function enrolledFrom(files: CliOptions['files']): TrustedJwk[] {
  const { path, explicit } = files.trustedKeys;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    if (explicit) throw material(`--trusted-keys ${path}: unreadable`);
    return [];
  }
  try {
    return TrustedKeysFileSchema.parse(JSON.parse(text)).keys;
  } catch {
    throw material(`--trusted-keys ${path} is not a trusted-keys.json (TOKEN.md §2)`);
  }
}

function hookFor(options: CliOptions): StateHook {
  switch (options.hook.kind) {
    case 'sim':
      return simulatorHook(options.hook.url, options.vin);
    case 'command':
      return commandHook(options.hook.script, options.vin);
    case 'none':
      return noHook;
    case 'interactive':
      return interactiveHook(process.stdin, process.stderr);
  }
}

async function main(argv: string[]): Promise<number> {
  const usage = (reason: string): number => {
    console.error(`conformance: ${reason} (see --help)`);
    return EXIT_USAGE;
  };
  let command: ReturnType<typeof parseCli>;
  try {
    command = parseCli(argv);
  } catch (err) {
    if (err instanceof ConformanceError) return usage(err.message);
    throw err;
  }
  if (command.kind === 'help') {
    console.log(USAGE);
    return EXIT_OK;
  }
  if (command.kind === 'list') {
    for (const line of listLines(CASES)) console.log(line);
    return EXIT_OK;
  }
  const { options } = command;
  let signingKey: KeyObject;
  let enrolledKeys: TrustedJwk[];
  let tls: { ca: string; cert: string; key: string };
  let vehicleCert: string;
  try {
    signingKey = signingKeyFrom(options.files.signingKey);
    enrolledKeys = enrolledFrom(options.files);
    tls = {
      ca: read(options.files.ca, '--ca'),
      cert: read(options.files.cert, '--cert'),
      key: read(options.files.key, '--key'),
    };
    vehicleCert = read(options.files.vehicleCert, '--vehicle-cert');
    vehicleKeyFrom(vehicleCert, tls.ca, options.vin);
  } catch (err) {
    if (err instanceof ConformanceError) return usage(err.message);
    throw err;
  }
  const select =
    options.only.length === 0
      ? undefined
      : (c: { id: string }) => options.only.some((p) => c.id.startsWith(p));
  const cases = selectedCases(select);
  const idWidth = Math.max(...cases.map((c) => c.id.length));
  const hook = hookFor(options);
  const kid = (await kitKey(signingKey)).kid;
  console.log(
    `Curbside Key conformance kit: endpoint ${options.vin} (${options.provider}) on ${options.brokerUrl}`,
  );
  console.log(
    `  kit: client ${options.clientId}, signing key ${kid}${enrolledKeys.some((k) => k.kid === kid) ? '' : ' (not in --trusted-keys: the endpoint must trust it some other way)'}, issuer ${options.issuer}`,
  );
  console.log(
    `  hook: ${hook.name}; fail-safe relock ${options.relockMs / 1000} s; pacing ${options.pace === 0 ? 'off' : `${options.pace} messages/s`}; ${cases.length} cases`,
  );
  console.log('');
  let report: Awaited<ReturnType<typeof runConformance>>;
  try {
    report = await runConformance({
      brokerUrl: options.brokerUrl,
      vin: options.vin,
      provider: options.provider,
      tls,
      clientId: options.clientId,
      ...(options.servername === undefined ? {} : { servername: options.servername }),
      signingKey,
      vehicleCert,
      enrolledKeys,
      issuer: options.issuer,
      hook,
      relockMs: options.relockMs,
      pacePerSecond: options.pace,
      timeoutMs: options.timeoutMs,
      rebootTimeoutMs: options.rebootTimeoutMs,
      ...(select ? { select } : {}),
      onResult: (result) => console.log(caseLine(result, idWidth)),
    });
  } catch (err) {
    if (err instanceof ConformanceError && err.code === 'CONFORMANCE_MATERIAL_INVALID')
      return usage(err.message);
    throw err;
  } finally {
    hook.close?.();
  }
  console.log('');
  for (const line of summaryLines(report.results, report.durationMs, report.pacedMs)) console.log(line);
  writeFileSync(
    options.junit,
    junitXml({
      properties: {
        vin: options.vin,
        provider: options.provider,
        broker: options.brokerUrl,
        relockMs: String(options.relockMs),
        hook: hook.name,
      },
      startedAt: report.startedAt,
      durationMs: report.durationMs,
      results: report.results,
    }),
  );
  console.log(`JUnit report: ${options.junit}`);
  return report.passed ? EXIT_OK : EXIT_FAILED;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const code = err instanceof ConformanceError ? ` ${err.code}` : '';
    console.error(`conformance:${code} ${err instanceof Error ? err.message : String(err)}`);
    process.exit(EXIT_FAILED);
  },
);
