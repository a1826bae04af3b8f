// Owns running a local nats-server cluster as the clustered MQTT broker: nodes on free loopback ports, waiting until
// MQTT answers on each, stopping and restarting one node, reloading the authorization, and cleaning up.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import mqtt from 'mqtt';
import {
  type DevPkiPaths,
  type NatsIdentities,
  type NatsNodePorts,
  writeNatsAuthorization,
  writeNatsFiles,
} from '../certs/index.ts';
import { freePort } from './ports.ts';

export interface BrokerClusterOptions {
  pki: DevPkiPaths;
  /** Where the configuration, JetStream data and nothing else go; the caller owns and removes it. */
  dir: string;
  /** How many nodes; 3 lets JetStream keep a quorum with one node down. */
  nodes?: number;
  host?: string;
  /** How long the nodes may take to form the cluster and answer MQTT. */
  readyTimeoutMs?: number;
  /** nats-server binary; natsServerBinary() by default. */
  binary?: string;
}

export interface BrokerNode {
  name: string;
  url: string;
  ports: NatsNodePorts;
  running(): boolean;
  pid(): number | undefined;
  /** Everything this node logged since it last started. */
  log(): string;
}

/** Fits cluster.ts's ClusterBroker: `npm run cluster` and `npm run test:cluster` run on it. */
export interface BrokerCluster {
  kind: 'nats';
  /** MQTT URL of each node, in node order; MQTT_URL takes them comma-separated. */
  urls: string[];
  nodes: BrokerNode[];
  /** SIGTERM one node and wait for it to exit. */
  stopNode(index: number): Promise<void>;
  /** Start a stopped node again with its configuration and data, and wait until it answers MQTT. */
  startNode(index: number): Promise<void>;
  /**
   * Regenerates the authorization from the PKI (a revoked car is left out) and restarts the running nodes one at a
   * time, each once the one before answers MQTT again: every connection is closed and its client reconnects
   * through another node (MQTT_URL lists them), and a revoked car is refused. Not a SIGHUP reload: nats-server
   * 2.9.10 does close a revoked car's live connection on reload, but measured, every QoS 1 subscription still
   * open stops receiving after one (README, "Clustered broker"). Resolves with who may connect now.
   */
  applyAuthorization(): Promise<NatsIdentities>;
  stop(): Promise<void>;
  /** The same as stop(). */
  close(): Promise<void>;
}

/** NATS_SERVER_BIN, else nats-server on PATH, else Debian's /usr/sbin/nats-server. .ci/run installs it. */
export function natsServerBinary(): string {
  const candidates = [
    process.env.NATS_SERVER_BIN,
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'nats-server')),
    '/usr/sbin/nats-server',
  ];
  for (const candidate of candidates) {
    if (!candidate) continue;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error('nats-server not found: install it (apt-get install nats-server) or set NATS_SERVER_BIN');
}

const running = new Set<ChildProcess>();
let reaperInstalled = false;
/** Once, on the first start: a process that exits without stop() still takes its nodes with it. */
function installReaper(): void {
  if (reaperInstalled) return;
  reaperInstalled = true;
  process.once('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

class NodeProcess implements BrokerNode {
  private child: ChildProcess | null = null;
  private text = '';
  private exited: Promise<void> = Promise.resolve();
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly url: string,
    readonly ports: NatsNodePorts,
    private readonly binary: string,
    private readonly conf: string,
  ) {}

  running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  pid(): number | undefined {
    return this.running() ? this.child?.pid : undefined;
  }

  log(): string {
    return this.text;
  }

  start(): void {
    installReaper();
    this.text = '';
    const child = spawn(this.binary, ['-c', this.conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    running.add(child);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.text += chunk;
      this.wake();
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', () => {
        running.delete(child);
        this.wake();
        resolve();
      }),
    );
  }

  private wake(): void {
    for (const wake of this.waiters) wake();
  }

  /** Resolves once a line logged after `since` characters matches; rejects if the node exits first. */
  waitForLog(pattern: RegExp, since = 0, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.name}: no ${pattern} within ${timeoutMs} ms:\n${this.text.slice(-2000)}`));
      }, timeoutMs);
      const check = (): void => {
        if (pattern.test(this.text.slice(since))) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve();
        } else if (!this.running()) {
          this.waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`${this.name} exited before logging ${pattern}:\n${this.text.slice(-2000)}`));
        }
      };
      this.waiters.add(check);
      check();
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.running()) this.child?.kill(signal);
    await this.exited;
  }
}

/**
 * Connects with the gateway certificate and subscribes at QoS 1 in a session of `kind`. A clean one makes the node
 * create the replicated MQTT streams, which needs the JetStream cluster to have a leader; a persistent one, as every
 * car and replica holds, also stores the session and makes a durable consumer through this node, which a node
 * refuses for a while after the streams exist (a car's first SUBSCRIBE came back 0x80, SIM_SUBSCRIBE_REFUSED).
 * Resolves true once the subscription was granted at QoS 1.
 */
function mqttAnswers(
  url: string,
  pki: DevPkiPaths,
  clientId: string,
  kind: 'clean' | 'persistent',
): Promise<boolean> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, {
      protocolVersion: 4,
      clientId,
      clean: kind === 'clean',
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ca: readFileSync(pki.caCert, 'utf8'),
      cert: readFileSync(pki.gatewayCert, 'utf8'),
      key: readFileSync(pki.gatewayKey, 'utf8'),
    });
    let settled = false;
    const done = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve(ok);
    };
    client.on('error', () => done(false));
    client.on('close', () => done(false));
    client.once('connect', () => {
      client.subscribe('vehicles/+/acks', { qos: 1 }, (err, granted) =>
        done(!err && granted?.[0]?.qos === 1),
      );
    });
  });
}

/**
 * Ready means a persistent session's QoS 1 subscription is granted on this node, what a car's first connect needs.
 * The probe's session is then ended by a clean connect with its client id [MQTT-3.1.2-6], so none is left behind.
 */
async function untilMqttAnswers(node: NodeProcess, pki: DevPkiPaths, deadline: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const clientId = `probe-${node.name}-${attempt}`;
    const answers = await mqttAnswers(node.url, pki, clientId, 'clean');
    const ready = answers && (await mqttAnswers(node.url, pki, clientId, 'persistent'));
    // Granted or not, the persistent attempt may have left a session.
    if (answers) await mqttAnswers(node.url, pki, clientId, 'clean');
    if (ready) return;
    if (!node.running()) throw new Error(`${node.name} exited:\n${node.log().slice(-2000)}`);
    if (Date.now() > deadline)
      throw new Error(`${node.name}: MQTT did not answer in time:\n${node.log().slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function startOnce(options: BrokerClusterOptions): Promise<BrokerCluster | 'PORT_TAKEN'> {
  const host = options.host ?? '127.0.0.1';
  const count = options.nodes ?? 3;
  const binary = options.binary ?? natsServerBinary();
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  // A previous attempt's JetStream state names peers on other ports.
  for (let i = 0; i < count; i++) await rm(join(options.dir, `n${i + 1}`), { recursive: true, force: true });
  const ports: NatsNodePorts[] = [];
  for (let i = 0; i < count; i++)
    ports.push({ mqtt: await freePort(host), client: await freePort(host), cluster: await freePort(host) });
  const files = await writeNatsFiles({ pki: options.pki, outDir: options.dir, host, nodes: ports });
  const nodes = ports.map(
    (p, i) => new NodeProcess(`n${i + 1}`, files.urls[i] as string, p, binary, files.nodes[i] as string),
  );
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (const node of nodes) node.start();
    await Promise.all(nodes.map((n) => n.waitForLog(/Server is ready/, 0, readyTimeoutMs)));
    // MQTT needs JetStream's metadata leader; asking before there is one costs a 4 s timeout per attempt.
    if (count > 1)
      await Promise.all(
        nodes.map((n) =>
          // "Self is new JetStream cluster metadata leader" or "JetStream cluster new metadata leader: n2/…"
          n.waitForLog(/metadata leader/, 0, readyTimeoutMs),
        ),
      );
    const deadline = Date.now() + readyTimeoutMs;
    for (const node of nodes) await untilMqttAnswers(node, options.pki, deadline);
  } catch (error) {
    await stopAll();
    if (nodes.some((n) => /address already in use/.test(n.log()))) return 'PORT_TAKEN';
    throw error;
  }
  const startAndAnswer = async (node: NodeProcess): Promise<void> => {
    node.start();
    await node.waitForLog(/Server is ready/, 0, readyTimeoutMs);
    await untilMqttAnswers(node, options.pki, Date.now() + readyTimeoutMs);
  };
  const at = (index: number): NodeProcess => {
    const node = nodes[index];
    if (node === undefined) throw new Error(`no broker node ${index}`);
    return node;
  };
  return {
    kind: 'nats',
    urls: files.urls,
    nodes,
    stopNode: (index) => at(index).stop(),
    async startNode(index) {
      const node = at(index);
      if (!node.running()) await startAndAnswer(node);
    },
    async applyAuthorization() {
      const { identities } = await writeNatsAuthorization(options.pki, options.dir);
      for (const node of nodes) {
        if (!node.running()) continue;
        await node.stop();
        await startAndAnswer(node);
      }
      return identities;
    },
    stop: stopAll,
    close: stopAll,
  };
}

/** Starts the cluster; retries on fresh ports when another process took one between picking and binding. */
export async function startBrokerCluster(options: BrokerClusterOptions): Promise<BrokerCluster> {
  for (let i = 0; i < 3; i++) {
    const started = await startOnce(options);
    if (started !== 'PORT_TAKEN') return started;
  }
  throw new Error('nats-server: no free ports after 3 tries');
}
