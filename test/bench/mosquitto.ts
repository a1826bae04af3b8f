// Owns phase 4's external broker: a Mosquitto on a free loopback port with a minimal config written here
// (TLS 1.3, client certificates required, the certificate's CN as the user name, an ACL), stopped afterwards.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import type { DevPkiPaths } from '../../certs/dev-pki.ts';
import { GATEWAY_NAME } from '../../certs/dev-pki.ts';
import { TOPIC_ROOT } from '../../protocols/topics.ts';

export interface Mosquitto {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** A port nobody listens on right now; the bench's own 1883 neighbour is never used. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The same rules as the embedded broker's policy (gateway/broker/policy.ts), as far as an ACL file says them:
 * a car (user = its certificate's CN, the VIN) reads only its command topic and writes only its acks and
 * state; the gateway writes commands and reads every car's acks and state.
 */
export function mosquittoAcl(): string {
  return [
    `pattern read ${TOPIC_ROOT}/%u/commands`,
    `pattern write ${TOPIC_ROOT}/%u/acks`,
    `pattern write ${TOPIC_ROOT}/%u/state`,
    '',
    `user ${GATEWAY_NAME}`,
    `topic write ${TOPIC_ROOT}/+/commands`,
    `topic read ${TOPIC_ROOT}/+/acks`,
    `topic read ${TOPIC_ROOT}/+/state`,
    '',
  ].join('\n');
}

export interface MosquittoFiles {
  caCert: string;
  brokerCert: string;
  brokerKey: string;
  crl: string;
}

/** uid and gid of a system user, from /etc/passwd; null when there is no such user. */
function systemUser(name: string): { uid: number; gid: number } | null {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${name}:`));
    const [, , uid, gid] = line?.split(':') ?? [];
    return uid && gid ? { uid: Number(uid), gid: Number(gid) } : null;
  } catch {
    return null;
  }
}

export function mosquittoConfig(input: { port: number; files: MosquittoFiles; aclFile: string }): string {
  return [
    'per_listener_settings false',
    'allow_anonymous false',
    'persistence false',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'max_queued_messages 1000',
    // The embedded broker and every client here turn Nagle's algorithm off; so does this peer.
    'set_tcp_nodelay true',
    `acl_file ${input.aclFile}`,
    `listener ${input.port} 127.0.0.1`,
    `cafile ${input.files.caCert}`,
    `certfile ${input.files.brokerCert}`,
    `keyfile ${input.files.brokerKey}`,
    `crlfile ${input.files.crl}`,
    'tls_version tlsv1.3',
    'require_certificate true',
    'use_identity_as_username true',
    '',
  ].join('\n');
}

const listening = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

export async function startMosquitto(input: {
  binary: string;
  dir: string;
  pki: DevPkiPaths;
  logFile: string;
}): Promise<Mosquitto> {
  if (!existsSync(input.binary)) throw new Error(`no Mosquitto at ${input.binary}`);
  const port = await freePort();
  // Started as root, Mosquitto drops to its own user before it reads any file but its config, so it gets
  // its own copies: the broker key stays 0600, owned by that user, as a real deployment would have it.
  const dir = join(input.dir, 'mosquitto');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(input.dir, 0o711);
  const owner = process.getuid?.() === 0 ? systemUser('mosquitto') : null;
  const place = (name: string, from: string, mode: number): string => {
    const to = join(dir, name);
    copyFileSync(from, to);
    chmodSync(to, mode);
    if (owner) chownSync(to, owner.uid, owner.gid);
    return to;
  };
  const files = {
    caCert: place('ca.crt', input.pki.caCert, 0o644),
    brokerCert: place('broker.crt', input.pki.brokerCert, 0o644),
    brokerKey: place('broker.key', input.pki.brokerKey, 0o600),
    crl: place('crl.pem', input.pki.crl, 0o644),
  };
  const aclFile = join(dir, 'mosquitto.acl');
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(aclFile, mosquittoAcl(), { mode: 0o644 });
  writeFileSync(confFile, mosquittoConfig({ port, files, aclFile }), { mode: 0o644 });
  const log = openSync(input.logFile, 'a');
  const child: ChildProcess = spawn(input.binary, ['-c', confFile], { stdio: ['ignore', log, log] });
  closeSync(log);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
  });
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exit;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 5_000;
  while (!(await listening(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`Mosquitto did not start; see ${input.logFile}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { url: `mqtts://127.0.0.1:${port}`, pid: child.pid as number, stop };
}
