// Owns running one Mosquitto for the local cluster: the single-node external broker, configured from the PKI by
// certs/mosquitto.ts (every gateway replica's identity is in its ACL), on a free loopback port.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { type DevPkiPaths, writeMosquittoFiles } from '../certs/index.ts';
import { freePort } from './ports.ts';

/** What the cluster needs of a broker: where replicas and cars connect, and (for a cluster of nodes) a way to stop one. */
export interface ClusterBroker {
  kind: string;
  /** One URL per node, in node order; MQTT_URL and the simulator's --broker take them comma-separated. */
  urls: string[];
  /** Each node of a clustered broker, with the ports it listens on besides MQTT; absent for a single node. */
  nodes?: ReadonlyArray<{
    name: string;
    url: string;
    ports: { client: number; cluster: number };
    pid(): number | undefined;
  }>;
  /** Stops node i (a clustered broker); absent for a single node. */
  stopNode?(i: number): Promise<void>;
  /** Starts node i again and waits until it serves MQTT (a clustered broker); absent for a single node. */
  startNode?(i: number): Promise<void>;
  close(): Promise<void>;
}

/** MOSQUITTO_BIN, else mosquitto on PATH, else Debian's /usr/sbin/mosquitto. */
export function mosquittoBinary(env: Record<string, string | undefined>): string {
  const candidates = [
    env.MOSQUITTO_BIN,
    ...(env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'mosquitto')),
    '/usr/sbin/mosquitto',
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
  throw new Error('mosquitto not found: install it (apt-get install mosquitto) or set MOSQUITTO_BIN');
}

export async function startClusterMosquitto(options: {
  pki: DevPkiPaths;
  dir: string;
  env: Record<string, string | undefined>;
}): Promise<ClusterBroker> {
  const bin = mosquittoBinary(options.env);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const { conf } = await writeMosquittoFiles({
      pki: options.pki,
      outDir: options.dir,
      host: '127.0.0.1',
      port,
      // Run as root, Mosquitto would switch to its own account and could not read the 0600 broker key.
      ...(userInfo().uid === 0 ? { user: userInfo().username } : {}),
    });
    const child: ChildProcess = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr?.setEncoding('utf8');
    const started = await new Promise<boolean>((resolve) => {
      child.stderr?.on('data', (chunk: string) => {
        log += chunk;
        if (/mosquitto version \S+ running/.test(log)) resolve(true);
      });
      child.once('exit', () => resolve(false));
    });
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    if (started) {
      return {
        kind: 'mosquitto',
        urls: [`mqtts://127.0.0.1:${port}`],
        async close() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      };
    }
    if (!/Address already in use/.test(log) || attempt >= 2)
      throw new Error(`mosquitto did not start:\n${log}`);
  }
}
