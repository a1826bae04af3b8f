// Owns a local cluster on loopback: the PKI (with a certificate per replica), the broker (a 3-node nats-server cluster
// by default), N gateway replicas as processes of their own on one PostgreSQL database, the simulated fleet, and one
// HTTP entry point over the replicas.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DevPkiPaths, ensureDevPki, ensureReplicaIdentity } from '../certs/index.ts';
import { loadSeeds } from '../seeds/index.ts';
import { type Fleet, readFleetPki, type StartFleetDeps, startFleet } from '../simulator/index.ts';
import { type Balancer, startBalancer } from './balancer.ts';
import { startBrokerCluster } from './broker.ts';
import { type ClusterBroker, startClusterMosquitto } from './mosquitto.ts';
import { type ReplicaProcess, startReplicaProcess } from './replica-process.ts';

export interface ClusterOptions {
  /** Working folder: pki/, broker/, data-<replica>/, sim/. */
  dir: string;
  /** The PostgreSQL database every replica shares (with its search_path, if any). */
  databaseUrl: string;
  /** How many replicas (default 3), named r1, r2, … */
  replicas?: number;
  /** Starts the broker on the cluster's PKI: a 3-node nats-server cluster by default, clusterMosquitto for one node. */
  broker?: (pki: DevPkiPaths, dir: string) => Promise<ClusterBroker>;
  /** More gateway settings for every replica (timings, limits…). */
  env?: Record<string, string>;
  /** Runs the seeded simulated fleet against the broker (default on), with these options. */
  fleet?:
    | false
    | Pick<
        StartFleetDeps,
        'createClient' | 'failsafeRelockMs' | 'reportIntervalMs' | 'tickIntervalMs' | 'replayStoreFor'
      >;
  /** The balancer's port (0, the default, picks a free one). */
  balancerPort?: number;
}

/** The single-node option: one Mosquitto, found through MOSQUITTO_BIN or PATH in `env`. */
export const clusterMosquitto =
  (env: Record<string, string | undefined>) =>
  (pki: DevPkiPaths, dir: string): Promise<ClusterBroker> =>
    startClusterMosquitto({ pki, dir, env });

/** The default: three nats-server nodes, so JetStream keeps a quorum with one of them down. */
export const clusterNats = (pki: DevPkiPaths, dir: string): Promise<ClusterBroker> =>
  startBrokerCluster({ pki, dir, nodes: 3 });

export interface Cluster {
  pki: DevPkiPaths;
  broker: ClusterBroker;
  replicas: ReplicaProcess[];
  balancer: Balancer;
  fleet: Fleet | null;
  /** The development admin key the first replica created (CERTS_DIR/api-key). */
  apiKey: string;
  stop(): Promise<void>;
}

export const replicaNames = (n: number): string[] => Array.from({ length: n }, (_, i) => `r${i + 1}`);

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const names = replicaNames(options.replicas ?? 3);
  const seeds = loadSeeds();
  const pki = await ensureDevPki({ dir: join(options.dir, 'pki'), vins: seeds.vehicles.map((v) => v.vin) });
  // Before the broker's ACL is written: it lists every replica's identity.
  for (const name of names) await ensureReplicaIdentity({ dir: pki.dir, replica: name });
  const broker = await (options.broker ?? clusterNats)(pki, join(options.dir, 'broker'));
  const replicas: ReplicaProcess[] = [];
  let balancer: Balancer | null = null;
  let fleet: Fleet | null = null;
  const stop = async (): Promise<void> => {
    await balancer?.close();
    await fleet?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await broker.close();
  };
  try {
    const envOf = (name: string): Record<string, string> => ({
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      CERTS_DIR: pki.dir,
      DATA_DIR: join(options.dir, `data-${name}`),
      DATABASE_URL: options.databaseUrl,
      // Every node: a replica moves to the next one when its node goes away.
      MQTT_URL: broker.urls.join(','),
      ...options.env,
    });
    // The first one migrates the store and creates the development API key; the others find both.
    const [first, ...rest] = names;
    replicas.push(await startReplicaProcess({ name: first ?? 'r1', env: envOf(first ?? 'r1') }));
    replicas.push(
      ...(await Promise.all(rest.map((name) => startReplicaProcess({ name, env: envOf(name) })))),
    );
    const apiKey = readFileSync(join(pki.dir, 'api-key'), 'utf8').trim();
    if (options.fleet !== false) {
      fleet = await startFleet({
        brokerUrl: broker.urls.join(','),
        vehicles: seeds.vehicles,
        ...readFleetPki(pki.dir),
        dataDir: join(options.dir, 'sim'),
        ...(options.fleet ?? {}),
      });
    }
    balancer = await startBalancer({
      targets: () => replicas.map((r) => r.url),
      ...(options.balancerPort === undefined ? {} : { port: options.balancerPort }),
    });
    return { pki, broker, replicas, balancer, fleet, apiKey, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
