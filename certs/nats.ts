// Owns the nats-server configuration that applies PROTOCOL.md §1-2 on a clustered broker: one file per node, and
// the authorization every node includes, generated from the PKI (issued certificates minus revoked ones).
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_PAYLOAD_BYTES, PROBE_LEVEL, TOPIC_ROOT } from '../protocols/index.ts';
import { type DevPkiPaths, readRevocationState } from './dev-pki.ts';
import { CertError } from './errors.ts';
import { writePrivateFile, writePublicFile } from './files.ts';
import { gatewayNameFromCertificate, vinFromCertificate } from './identity.ts';

export const NATS_AUTHORIZATION = 'authorization.conf';
export const natsNodeConf = (name: string): string => `${name}.conf`;
export const NATS_CLUSTER_NAME = 'curbside';
export const DEFAULT_NATS_NODES = 3;
/** Node i listens for MQTT on base + i, NATS clients on base + 100 + i, routes on base + 200 + i. */
export const DEFAULT_NATS_MQTT_PORT = 8883;
export const MAX_NATS_NODES = 9;

export interface NatsNodePorts {
  /** MQTT over TLS: what cars and the gateway use. */
  mqtt: number;
  /** The NATS protocol listener nats-server always opens; no user may connect on it (allowed_connection_types). */
  client: number;
  /** Cluster routes between the nodes. */
  cluster: number;
}

export interface NatsClusterOptions {
  pki: Pick<
    DevPkiPaths,
    'dir' | 'caCert' | 'brokerCert' | 'brokerKey' | 'gatewayCert' | 'vehiclesDir' | 'revoked'
  >;
  /** Where the node files, the authorization and each node's JetStream directory go. */
  outDir: string;
  host: string;
  /** One entry per node; node i is named n<i+1>. */
  nodes: readonly NatsNodePorts[];
  /** The secret the nodes' routes authenticate with; a fresh one by default. */
  routePassword?: string;
}

export interface NatsFiles {
  authorization: string;
  /** Path of each node's configuration, in node order. */
  nodes: string[];
  /** MQTT URL of each node, in node order. */
  urls: string[];
}

// One token of the config format inside double quotes: no quote, backslash, newline or variable sigil.
const SAFE_VALUE = /^[^\s"\\$#{}[\]]+$/;
function value(what: string, text: string): string {
  if (!SAFE_VALUE.test(text))
    throw new CertError(
      'CERT_OPTIONS_INVALID',
      `${what} must not contain spaces, quotes, $, # or brackets: ${text}`,
    );
  return text;
}

function checkPort(what: string, port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65_535)
    throw new CertError('CERT_OPTIONS_INVALID', `${what} port must be 1..65535, got ${port}`);
  return port;
}

/** MQTT topic → NATS subject: NATS maps "/" to "." (PROTOCOL.md §2 topics hold no "." or space). */
const subject = (...levels: string[]): string => [TOPIC_ROOT, ...levels].join('.');

/** Who may connect: the gateway identities (the shared one, each replica's) and every car not revoked. */
export interface NatsIdentities {
  gateways: string[];
  vins: string[];
}

/**
 * Reads the identities from the PKI: the gateway certificate's name, and the VIN of every vehicles/<VIN>.crt whose
 * serial is not in revoked.json. A certificate whose names do not bind (CN and SAN URI disagreeing) is left out.
 */
export function natsIdentities(pki: NatsClusterOptions['pki']): NatsIdentities {
  const gateway = gatewayNameFromCertificate(new X509Certificate(readFileSync(pki.gatewayCert)));
  if (gateway === null) throw new CertError('CERT_MALFORMED', `${pki.gatewayCert} names no gateway`);
  // Each replica's own certificate (certs/replicas.ts): its name read from the certificate, not the file name.
  const replicasDir = join(pki.dir, 'gateways');
  const replicas: string[] = [];
  for (const file of existsSync(replicasDir) ? readdirSync(replicasDir).sort() : []) {
    if (!file.endsWith('.crt')) continue;
    const name = gatewayNameFromCertificate(new X509Certificate(readFileSync(join(replicasDir, file))));
    if (name !== null && `${name}.crt` === file && name !== gateway) replicas.push(name);
  }
  const revoked = new Set(
    existsSync(pki.revoked)
      ? readRevocationState(pki.revoked).revoked.map((r) => r.serial.toUpperCase())
      : [],
  );
  const vins: string[] = [];
  const files = existsSync(pki.vehiclesDir) ? readdirSync(pki.vehiclesDir).sort() : [];
  for (const file of files) {
    if (!file.endsWith('.crt')) continue;
    const cert = new X509Certificate(readFileSync(join(pki.vehiclesDir, file)));
    const vin = vinFromCertificate(cert);
    if (vin === null || `${vin}.crt` !== file) continue;
    if (revoked.has(cert.serialNumber.toUpperCase())) continue;
    vins.push(vin);
  }
  return { gateways: [gateway, ...replicas], vins };
}

/**
 * The users block, deny by default: verify_and_map makes the certificate subject the user name ("CN=<VIN>"), a
 * subject not listed is refused at CONNECT, and each user may use only the subjects listed. `$MQTT.sub.>` is
 * where nats-server delivers a QoS 1 subscription to its own session; MQTT clients cannot subscribe to it by
 * topic (the conformance table checks `$MQTT/sub/#`), and allowed_connection_types keeps them off the NATS
 * protocol, where they could.
 */
export function natsAuthorization(identities: NatsIdentities): string {
  const user = (name: string, publish: string[], subscribe: string[]): string =>
    `    { user: "CN=${value('identity', name)}", allowed_connection_types: ["MQTT"], permissions: { ` +
    `publish: { allow: [${publish.map((s) => `"${s}"`).join(', ')}] }, ` +
    `subscribe: { allow: ["$MQTT.sub.>", ${subscribe.map((s) => `"${s}"`).join(', ')}] } } }`;
  return [
    '# Generated by `npm run certs -- nats` from the PKI; regenerated after a revocation, then the nodes restart in turn.',
    '# Deny by default: only these certificate subjects connect, only over MQTT, only on these subjects.',
    'authorization {',
    '  users = [',
    '    # Only the gateway (each replica its own identity) writes commands and its subscription probes; it reads every car acks and state (PROTOCOL.md §2).',
    ...identities.gateways.map((gateway) =>
      user(
        gateway,
        [subject('*', 'commands'), subject(PROBE_LEVEL, 'acks'), subject(PROBE_LEVEL, 'state')],
        [subject('*', 'acks'), subject('*', 'state')],
      ),
    ),
    '    # A car reads only its own command topic and writes only its own acks and state.',
    ...identities.vins.map((vin) =>
      user(vin, [subject(vin, 'acks'), subject(vin, 'state')], [subject(vin, 'commands')]),
    ),
    '  ]',
    '}',
    '',
  ].join('\n');
}

/** One node's configuration: TLS 1.3-capable mutual TLS on MQTT, JetStream for sessions, routes to the others. */
export function natsNodeConfig(options: NatsClusterOptions, index: number, routePassword: string): string {
  const node = options.nodes[index];
  if (node === undefined) throw new CertError('CERT_OPTIONS_INVALID', `no node ${index}`);
  const host = value('host', options.host);
  const name = `n${index + 1}`;
  const tls = [
    `    cert_file: "${value('broker certificate', options.pki.brokerCert)}"`,
    `    key_file: "${value('broker key', options.pki.brokerKey)}"`,
    `    ca_file: "${value('CA file', options.pki.caCert)}"`,
    '    # The client certificate is required, and its subject is the user name.',
    '    verify_and_map: true',
    '    timeout: 5',
  ];
  const routes = options.nodes
    .map((other, i) => ({ other, i }))
    .filter(({ i }) => i !== index)
    .map(
      ({ other }) =>
        `    "nats-route://route:${routePassword}@${host}:${checkPort('cluster', other.cluster)}"`,
    );
  return [
    `# Generated by \`npm run certs -- nats\`: node ${name} of ${options.nodes.length}, the broker rules of`,
    '# PROTOCOL.md §1-2 for nats-server 2.9. README lists where NATS differs from the embedded broker.',
    '# Holds the route password: keep it 0600.',
    `server_name: ${name}`,
    `listen: "${host}:${checkPort('client', node.client)}"`,
    '# Payloads above this many bytes drop their sender (PROTOCOL.md §2 caps packets; NATS can cap only payloads).',
    `max_payload: ${MAX_PAYLOAD_BYTES}`,
    'tls {',
    ...tls,
    '}',
    `include "${NATS_AUTHORIZATION}"`,
    '# MQTT sessions, subscriptions and unacknowledged QoS 1 messages live in JetStream, replicated over the cluster.',
    'jetstream {',
    `  store_dir: "${value('store directory', join(options.outDir, name))}"`,
    '  max_memory_store: 64MB',
    '  max_file_store: 1GB',
    '}',
    // One node runs without routes: JetStream refuses a cluster block with no route.
    ...(options.nodes.length === 1
      ? []
      : [
          'cluster {',
          `  name: ${NATS_CLUSTER_NAME}`,
          `  listen: "${host}:${checkPort('cluster', node.cluster)}"`,
          `  authorization { user: route, password: "${routePassword}", timeout: 5 }`,
          '  routes: [',
          ...routes,
          '  ]',
          '}',
        ]),
    'mqtt {',
    `  listen: "${host}:${checkPort('mqtt', node.mqtt)}"`,
    '  # Sessions and in-flight messages on up to 3 nodes, whatever number of peers is up when they are created.',
    `  stream_replicas: ${Math.min(3, options.nodes.length)}`,
    '  tls {',
    ...tls.map((line) => `  ${line}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Node i's ports from a base MQTT port: MQTT base + i, NATS clients base + 100 + i, routes base + 200 + i. */
export function natsPortsFrom(base: number, nodes: number): NatsNodePorts[] {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NATS_NODES)
    throw new CertError('CERT_OPTIONS_INVALID', `nodes must be 1..${MAX_NATS_NODES}, got ${nodes}`);
  return Array.from({ length: nodes }, (_, i) => ({
    mqtt: checkPort('mqtt', base + i),
    client: checkPort('client', base + 100 + i),
    cluster: checkPort('cluster', base + 200 + i),
  }));
}

/** Writes the authorization alone, atomically (a node reloading mid-write reads the old file or the new one). */
export async function writeNatsAuthorization(
  pki: NatsClusterOptions['pki'],
  outDir: string,
): Promise<{ path: string; identities: NatsIdentities }> {
  const identities = natsIdentities(pki);
  const path = join(outDir, NATS_AUTHORIZATION);
  await writePublicFile(`${path}.tmp`, natsAuthorization(identities));
  await rename(`${path}.tmp`, path);
  return { path, identities };
}

/** The route password of a configuration written before, so re-running after a revocation keeps running nodes in one cluster. */
function existingRoutePassword(outDir: string): string | null {
  const path = join(outDir, natsNodeConf('n1'));
  if (!existsSync(path)) return null;
  return (
    /authorization \{ user: route, password: "([0-9a-f]{16,})"/.exec(readFileSync(path, 'utf8'))?.[1] ?? null
  );
}

/** Writes the authorization and one configuration per node (0600: it holds the route password). */
export async function writeNatsFiles(options: NatsClusterOptions): Promise<NatsFiles> {
  if (options.nodes.length < 1 || options.nodes.length > MAX_NATS_NODES)
    throw new CertError(
      'CERT_OPTIONS_INVALID',
      `nodes must be 1..${MAX_NATS_NODES}, got ${options.nodes.length}`,
    );
  const routePassword =
    options.routePassword ?? existingRoutePassword(options.outDir) ?? randomBytes(24).toString('hex');
  value('route password', routePassword);
  // Every file is built before any is written: a bad option leaves nothing behind.
  const configs = options.nodes.map((_, i) => natsNodeConfig(options, i, routePassword));
  const { path: authorization } = await writeNatsAuthorization(options.pki, options.outDir);
  const nodes: string[] = [];
  for (const [i, config] of configs.entries()) {
    const path = join(options.outDir, natsNodeConf(`n${i + 1}`));
    await writePrivateFile(path, config);
    nodes.push(path);
  }
  const urls = options.nodes.map((n) => `mqtts://${options.host}:${n.mqtt}`);
  return { authorization, nodes, urls };
}
