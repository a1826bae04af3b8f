// Owns the certs command line: parsing arguments, running one command, and what it prints.
import { resolve } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';

type ParsedResults<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>;

import { vinProblem } from '../protocols/vin.ts';
import { DEFAULT_DEV_PKI_DIR, ensureDevPki, loadDevPki, reissueVehicle, revokeVehicle } from './dev-pki.ts';
import { CertError } from './errors.ts';
import { issueFleet, MAX_FLEET_SIZE } from './fleet.ts';
import { DEFAULT_MOSQUITTO_PORT, writeMosquittoFiles } from './mosquitto.ts';
import {
  DEFAULT_NATS_MQTT_PORT,
  DEFAULT_NATS_NODES,
  MAX_NATS_NODES,
  natsPortsFrom,
  writeNatsFiles,
} from './nats.ts';
import { ensureReplicaIdentity, REPLICA_PATTERN, replicaGatewayName } from './replicas.ts';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Redraw the progress bar in place only on a terminal; logs get a line per tenth. */
  stderrIsTty: boolean;
  now(): Date;
  /** Monotonic milliseconds. */
  clock(): number;
  /** VINs of the seeded fleet, for the dev command. */
  seededVins(): string[];
  /** A new empty directory, for fleet without --out. */
  makeTempDir(): string;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

const MAIN_HELP = `Usage: npm run certs -- [command] [options]

Commands:
  dev              create the development PKI, keeping what already exists (default)
  revoke <VIN>     revoke a car's certificate and re-sign the CRL
  rotate <VIN>     issue a new certificate for a car; the old one stays valid until revoked
  replica <NAME>   issue a gateway replica its own client certificate (CN gateway-<NAME>)
  mosquitto        write mosquitto.conf and its ACL for running with an external Mosquitto
  nats             write a nats-server cluster's configuration (the clustered broker) and its users
  fleet --count N  issue N synthetic vehicle identities and print the rate

Run a command with --help for its options.
`;

const DEV_HELP = `Usage: npm run certs -- dev [--dir DIR]

Creates the CA, broker, gateway and one identity per seeded VIN, the token-signing key,
trusted-keys.json, the audit checkpoint key pair and the CRL; files already valid are kept.

  --dir DIR   where the PKI lives (default ${DEFAULT_DEV_PKI_DIR})
`;

const REVOKE_HELP = `Usage: npm run certs -- revoke <VIN> [--serial HEX] [--dir DIR]

Adds the car's certificate serial to revoked.json and re-signs crl.pem with the next CRL number.
A running embedded broker picks the new CRL up by itself and drops the car's live session;
Mosquitto reads it on SIGHUP; for nats-server, run certs nats again and restart its nodes in turn.

  --serial HEX  revoke this serial instead of the car's current certificate (after rotate)
  --dir DIR     where the PKI lives (default ${DEFAULT_DEV_PKI_DIR})
`;

const ROTATE_HELP = `Usage: npm run certs -- rotate <VIN> [--dir DIR]

Writes a new key and certificate for the car over vehicles/<VIN>.crt|.key and prints the serial
of the one replaced. Both stay valid until that serial is revoked, so the car can reconnect with
the new one first: then run revoke <VIN> --serial <previous serial>.

  --dir DIR   where the PKI lives (default ${DEFAULT_DEV_PKI_DIR})
`;

const REPLICA_HELP = `Usage: npm run certs -- replica <NAME> [--dir DIR]

Issues the client certificate of one gateway replica (GATEWAY_REPLICA=NAME): CN and URI gateway-<NAME>,
written to gateways/gateway-<NAME>.crt|.key (key 0600); kept when it exists. A replica started with that
name uses it, so that a broker which takes the client id from the certificate (Mosquitto) gives each replica
its own session. Run mosquitto afterwards: its ACL lists every replica's identity.

  --dir DIR   where the PKI lives (default ${DEFAULT_DEV_PKI_DIR})
`;

const MOSQUITTO_HELP = `Usage: npm run certs -- mosquitto [--dir DIR] [--out DIR] [--host HOST] [--port N] [--user NAME]

Writes mosquitto.conf and acl applying the broker rules of protocols/PROTOCOL.md: one TLS 1.3
listener, client certificates from the PKI's CA, the CN as user name and client id, pattern ACLs,
the CRL, no anonymous access, no retained messages, no $SYS, the packet size cap.
Then: mosquitto -c OUT/mosquitto.conf, and start the gateway with MQTT_URL=mqtts://HOST:PORT.

  --dir DIR    the PKI (default ${DEFAULT_DEV_PKI_DIR}); create it first with: npm run certs -- dev
  --out DIR    where to write the two files (default DIR/mosquitto)
  --host HOST  listen address (default 127.0.0.1)
  --port N     listen port (default ${DEFAULT_MOSQUITTO_PORT})
  --user NAME  account Mosquitto runs as when started by root; it must be able to read the broker key
`;

const NATS_HELP = `Usage: npm run certs -- nats [--dir DIR] [--out DIR] [--host HOST] [--port N] [--nodes N]

Writes one configuration per node (n1.conf, n2.conf, ...) and authorization.conf for a clustered
nats-server 2.9 with MQTT and JetStream, applying the broker rules of protocols/PROTOCOL.md as far as
NATS can (README lists the differences): mutual TLS with the PKI's CA, the certificate subject as the
user, one user per car whose certificate is not revoked plus the gateway, each with only its own
subjects, MQTT only. Node i listens for MQTT on PORT+i, NATS clients on PORT+100+i, routes on PORT+200+i.
After a revoke, run it again (the car is left out) and restart the nodes one at a time, each once the
one before answers MQTT: clients reconnect through the others, the revoked car is refused. Not a SIGHUP
reload: nats-server 2.9.10 stops QoS 1 delivery to live sessions after one (README).
Node files hold the route password (0600); a re-run keeps it.
Then: nats-server -c OUT/n1.conf (and n2, n3), and start the gateway with
MQTT_URL=mqtts://HOST:PORT,mqtts://HOST:PORT+1,...

  --dir DIR    the PKI (default ${DEFAULT_DEV_PKI_DIR}); create it first with: npm run certs -- dev
  --out DIR    where to write the files and each node's JetStream data (default DIR/nats)
  --host HOST  listen address (default 127.0.0.1)
  --port N     first node's MQTT port (default ${DEFAULT_NATS_MQTT_PORT})
  --nodes N    how many nodes, 1..${MAX_NATS_NODES} (default ${DEFAULT_NATS_NODES}; 3 keeps a quorum with one down)
`;

const FLEET_HELP = `Usage: npm run certs -- fleet --count N [--out DIR]

Issues N synthetic vehicle identities (and a CA, unless DIR has one) and prints identities/s.

  --count N   how many, 1..${MAX_FLEET_SIZE}
  --out DIR   where to write them (default: a new temporary directory)
`;

const usage = (reason: string): CertError => new CertError('CLI_USAGE', reason);

/** parseArgs with our exit code for its complaints, first line only. */
function parse<T extends ParseArgsConfig>(config: T): ParsedResults<T> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw usage((error as Error).message.split('\n')[0] ?? 'bad arguments');
  }
}

const common = { help: { type: 'boolean', short: 'h' } } as const;
const dirOption = { dir: { type: 'string' } } as const;

async function dev(args: string[], io: CliIo): Promise<number> {
  const { values } = parse({
    args,
    options: { ...common, ...dirOption },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.stdout(DEV_HELP);
    return EXIT_OK;
  }
  const dir = resolve(values.dir ?? DEFAULT_DEV_PKI_DIR);
  const result = await ensureDevPki({ dir, vins: io.seededVins(), now: io.now });
  for (const name of result.created) io.stdout(`created  ${name}\n`);
  for (const name of result.kept) io.stdout(`kept     ${name}\n`);
  io.stdout(`development PKI in ${dir}: ${result.created.length} created, ${result.kept.length} kept\n`);
  return EXIT_OK;
}

/** The one VIN a command takes, checked. */
function oneVin(command: string, positionals: string[]): string {
  if (positionals.length !== 1) throw usage(`${command} takes exactly one VIN`);
  const vin = positionals[0] as string;
  const problem = vinProblem(vin);
  if (problem !== null) throw usage(`${problem}: ${vin}`);
  return vin;
}

async function revoke(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse({
    args,
    options: { ...common, ...dirOption, serial: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    io.stdout(REVOKE_HELP);
    return EXIT_OK;
  }
  const vin = oneVin('revoke', positionals);
  if (values.serial !== undefined && !/^[0-9A-Fa-f]{1,40}$/.test(values.serial))
    throw usage(`--serial must be 1..40 hex digits, got ${values.serial}`);
  const dir = resolve(values.dir ?? DEFAULT_DEV_PKI_DIR);
  const result = await revokeVehicle({
    dir,
    vin,
    now: io.now,
    ...(values.serial === undefined ? {} : { serial: values.serial }),
  });
  const what = result.alreadyRevoked ? 'was already revoked' : 'revoked';
  io.stdout(`${vin} ${what} (serial ${result.serial}); CRL number ${result.crlNumber} written to ${dir}\n`);
  return EXIT_OK;
}

async function rotate(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse({
    args,
    options: { ...common, ...dirOption },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    io.stdout(ROTATE_HELP);
    return EXIT_OK;
  }
  const vin = oneVin('rotate', positionals);
  const dir = resolve(values.dir ?? DEFAULT_DEV_PKI_DIR);
  const result = await reissueVehicle({ dir, vin, now: io.now });
  io.stdout(`${vin}: new certificate, serial ${result.serial}, written to ${dir}\n`);
  if (result.previousSerial !== null) {
    io.stdout(
      `the previous one (serial ${result.previousSerial}) stays valid; once the car runs on the new one:\n` +
        `  npm run certs -- revoke ${vin} --serial ${result.previousSerial} --dir ${dir}\n`,
    );
  }
  return EXIT_OK;
}

async function replica(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse({
    args,
    options: { ...common, ...dirOption },
    strict: true,
    allowPositionals: true,
  });
  if (values.help) {
    io.stdout(REPLICA_HELP);
    return EXIT_OK;
  }
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length > 0) throw usage('replica takes exactly one replica name');
  if (!REPLICA_PATTERN.test(name))
    throw usage(`the replica name must be 1 to 32 of A-Z a-z 0-9 _, got ${name}`);
  const dir = resolve(values.dir ?? DEFAULT_DEV_PKI_DIR);
  const made = await ensureReplicaIdentity({ dir, replica: name, now: io.now });
  io.stdout(`${replicaGatewayName(name)}: ${made.created ? 'issued' : 'kept'} ${made.cert}
`);
  io.stdout(`then: npm run certs -- mosquitto --dir ${dir}   (its ACL lists every replica)
`);
  return EXIT_OK;
}

async function mosquitto(args: string[], io: CliIo): Promise<number> {
  const { values } = parse({
    args,
    options: {
      ...common,
      ...dirOption,
      out: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      user: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.stdout(MOSQUITTO_HELP);
    return EXIT_OK;
  }
  const port = values.port === undefined ? DEFAULT_MOSQUITTO_PORT : Number(values.port);
  if (!/^[0-9]{1,5}$/.test(values.port ?? '8883') || port < 1 || port > 65_535)
    throw usage(`--port must be 1..65535, got ${values.port}`);
  const host = values.host ?? '127.0.0.1';
  const dir = resolve(values.dir ?? DEFAULT_DEV_PKI_DIR);
  const outDir = resolve(values.out ?? `${dir}/mosquitto`);
  const written = await writeMosquittoFiles({
    pki: loadDevPki(dir),
    outDir,
    host,
    port,
    ...(values.user === undefined ? {} : { user: values.user }),
  });
  io.stdout(`wrote ${written.conf}\nwrote ${written.acl}\n`);
  io.stdout(`run:  mosquitto -c ${written.conf}\nthen: MQTT_URL=mqtts://${host}:${port} npm start\n`);
  return EXIT_OK;
}

async function nats(args: string[], io: CliIo): Promise<number> {
  const { values } = parse({
    args,
    options: {
      ...common,
      ...dirOption,
      out: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      nodes: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.stdout(NATS_HELP);
    return EXIT_OK;
  }
  const port = values.port === undefined ? DEFAULT_NATS_MQTT_PORT : Number(values.port);
  if (!/^[0-9]{1,5}$/.test(values.port ?? '8883') || port < 1 || port > 65_535 - 200 - MAX_NATS_NODES)
    throw usage(`--port must be 1..${65_535 - 200 - MAX_NATS_NODES}, got ${values.port}`);
  const nodes = values.nodes === undefined ? DEFAULT_NATS_NODES : Number(values.nodes);
  if (!/^[0-9]$/.test(values.nodes ?? '3') || nodes < 1 || nodes > MAX_NATS_NODES)
    throw usage(`--nodes must be 1..${MAX_NATS_NODES}, got ${values.nodes}`);
  const host = values.host ?? '127.0.0.1';
  const dir = resolve(values.dir ?? DEFAULT_DEV_PKI_DIR);
  const outDir = resolve(values.out ?? `${dir}/nats`);
  const written = await writeNatsFiles({
    pki: loadDevPki(dir),
    outDir,
    host,
    nodes: natsPortsFrom(port, nodes),
  });
  io.stdout(`wrote ${written.authorization}\n`);
  for (const node of written.nodes) io.stdout(`wrote ${node}\n`);
  io.stdout(`run:  ${written.nodes.map((n) => `nats-server -c ${n}`).join(' & ')}\n`);
  io.stdout(`then: MQTT_URL=${written.urls.join(',')} npm start\n`);
  return EXIT_OK;
}

/** `[##########..........]  1000/2000  50%` */
export function progressBar(done: number, total: number, width = 30): string {
  const filled = Math.round((done / total) * width);
  const percent = Math.floor((done / total) * 100);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${String(percent).padStart(3)}%`;
}

async function fleet(args: string[], io: CliIo): Promise<number> {
  const { values } = parse({
    args,
    options: { ...common, count: { type: 'string' }, out: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    io.stdout(FLEET_HELP);
    return EXIT_OK;
  }
  if (values.count === undefined) throw usage('fleet needs --count N');
  if (!/^[1-9][0-9]*$/.test(values.count) || Number(values.count) > MAX_FLEET_SIZE) {
    throw usage(`--count must be an integer in 1..${MAX_FLEET_SIZE}, got ${values.count}`);
  }
  const count = Number(values.count);
  const dir = values.out === undefined ? io.makeTempDir() : resolve(values.out);
  const step = io.stderrIsTty ? 100 : 10;
  let shown = -1;
  const report = await issueFleet({
    dir,
    count,
    now: io.now,
    clock: io.clock,
    onProgress(done, total) {
      const bucket = Math.floor((done / total) * step);
      if (bucket === shown) return;
      shown = bucket;
      io.stderr(io.stderrIsTty ? `\r${progressBar(done, total)}` : `${progressBar(done, total)}\n`);
    },
  });
  if (io.stderrIsTty) io.stderr('\n');
  const seconds = (report.elapsedMs / 1000).toFixed(2);
  io.stdout(
    `issued ${report.count} identities (${report.firstVin}..${report.lastVin}) into ${dir} in ${seconds} s\n`,
  );
  io.stdout(`${Math.round(report.perSecond)} identities/s\n`);
  return EXIT_OK;
}

const COMMANDS: Record<string, (args: string[], io: CliIo) => Promise<number>> = {
  dev,
  revoke,
  rotate,
  replica,
  mosquitto,
  nats,
  fleet,
};

/** Runs one command; 0 done, 1 failed, 2 bad arguments. Never prints a private key. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (first === '--help' || first === '-h') {
      io.stdout(MAIN_HELP);
      return EXIT_OK;
    }
    const named = first !== undefined && !first.startsWith('-');
    const name = named ? first : 'dev';
    const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (command === undefined) throw usage(`unknown command ${name}; try --help`);
    return await command(named ? rest : [...argv], io);
  } catch (error) {
    if (error instanceof CertError) {
      io.stderr(`certs: ${error.message}\n`);
      return error.code === 'CLI_USAGE' ? EXIT_USAGE : EXIT_FAILURE;
    }
    throw error;
  }
}
