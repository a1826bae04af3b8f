// Owns one simulated telematics unit: command handling (verify, dedupe, execute, sign the ack) around the pure state machine.
import { createHash, type KeyObject } from 'node:crypto';
import { signAck } from '../protocols/ack-signature.ts';
import type { ProviderId } from '../protocols/catalog.ts';
import { verifyKeyAnnouncement } from '../protocols/key-announcement.ts';
import {
  type Ack,
  type Action,
  type Command,
  type CommandMessage,
  CommandMessageSchema,
  CommandSchema,
  type KeysCommand,
  MAX_PAYLOAD_BYTES,
  type Position,
  PositionSchema,
  PROTOCOL_VERSION,
  type Presence,
  parseMessage,
  type StateReport,
  TokenActionSchema,
  type UnsignedAck,
} from '../protocols/messages.ts';
import { parseStrictJson } from '../protocols/strict-json.ts';
import { REVOCATION_RETENTION_S, TOKEN_ISSUER, verifyAccessToken } from '../protocols/token.ts';
import { carTime } from './car-clock.ts';
import {
  type CarEffect,
  type CarEvent,
  type CarState,
  DEFAULT_FAILSAFE_RELOCK_MS,
  type DoorName,
  type Ignition,
  initialCarState,
  type Latch,
  takeReportSeq,
  transition,
} from './car-state.ts';
import { type Flaws, flawedKeySeq, flawedVerification, NO_FLAWS } from './flaws.ts';
import type { KeyStore } from './key-store.ts';
import type { CarRefusalCode } from './refusal-codes.ts';
import type { ReplayStore } from './replay-store.ts';
import type { RevocationStore } from './revocation-store.ts';

export type { CarRefusalCode } from './refusal-codes.ts';

/** How many recent commands the car remembers to answer an MQTT redelivery with the same ack. */
export const DEFAULT_DEDUPE_CAPACITY = 256;

export interface SimulatedCarDeps {
  vin: string;
  make: string;
  model: string;
  year: number;
  provider: ProviderId;
  /**
   * `seq` is the first state report's sequence number (default 0); `state`, when given, is the state the car
   * had before a reboot (simulator/car-store.ts) and replaces the factory-fresh one.
   */
  initial: { position: Position; seq?: number; state?: CarState };
  /** The gateway keys the car trusts; key announcements replace them (TOKEN.md §8). */
  keys: KeyStore;
  /** Single-use jti memory, and the last known good time the car's time never goes back below. */
  replay: Pick<ReplayStore, 'claim' | 'lastGoodTime'>;
  revocations: Pick<RevocationStore, 'isRevoked' | 'revoke'>;
  /** The car's P-256 private key, the one its certificate binds to its VIN: it signs every ack (TOKEN.md §9). */
  signingKey: KeyObject;
  /** The car's raw clock in ms since the epoch; null when the car does not know it. */
  clock: () => number | null;
  failsafeRelockMs?: number;
  /** The token issuer the car was enrolled with (default TOKEN_ISSUER); others are refused TOKEN_ISSUER_MISMATCH. */
  issuer?: string;
  dedupeCapacity?: number;
  /** Fault injection (simulator/faults.ts): a low 12 V battery refuses remote commands with LOW_BATTERY. */
  faults?: { batteryLow(): boolean };
  /** Told of every command the car executed, with the token's jti and SHA-256 (an audit log for tests). */
  onExecuted?: (executed: ExecutedCommand) => void;
  /**
   * Deliberate flaws (simulator/flaws.ts), each disabling one check, for showing the conformance kit catches
   * it. Empty unless a caller names them; never set by the gateway's demo or tests of the car itself.
   */
  flaws?: Flaws;
}

export interface ExecutedCommand {
  commandId: string;
  deliveryId: string;
  action: Action;
  jti: string;
  /** SHA-256 of the token, base64url, as the gateway stores it. */
  tokenSha256: string;
  /** The car's time of execution. */
  at: number;
}

export interface CommandResult {
  /** The ack to publish; null when the command was too damaged to name (see handleCommand). */
  ack: Ack | null;
  /** Whether the reported state changed, so the caller publishes a state report after the ack. */
  stateChanged: boolean;
}

export type ChangeCause = 'command' | 'control' | 'tick';

export interface CarChange {
  cause: ChangeCause;
  state: CarState;
  effects: CarEffect[];
}

export type CarListener = (change: CarChange) => void;

export interface SimulatedCar {
  readonly vin: string;
  readonly make: string;
  readonly model: string;
  readonly year: number;
  readonly provider: ProviderId;
  readonly failsafeRelockMs: number;
  /**
   * Handles one command payload from the car's command topic. Commands are handled one at a time, in the
   * order they arrive. A payload that does not parse gets a 'refused'/'COMMAND_MALFORMED' ack only when its
   * commandId can be recovered safely (within the size limit, strict JSON without duplicate members, an
   * object whose commandId has the protocol's id syntax); otherwise there is nobody to address, the result
   * has no ack, and the gateway sees a timeout. `wire` is the payload as it arrived, before any dialect
   * translation: only a byte-identical redelivery of it is a duplicate (default: `raw`).
   */
  handleCommand(raw: Buffer, wire?: Buffer): Promise<CommandResult>;
  /**
   * Refuses a command the transport could name but not translate (foreign dialect, action outside unlock and
   * lock, malformed): an ack with the reason and the lock state as it is, in turn with other commands.
   */
  refuseCommand(ids: CommandIds, reason: CarRefusalCode): Promise<CommandResult>;
  openDoor(door: DoorName): CarEffect[];
  closeDoor(door: DoorName): CarEffect[];
  setTrunk(to: Latch): CarEffect[];
  setIgnition(to: Ignition): CarEffect[];
  moveTo(position: Position): CarEffect[];
  setOnline(online: boolean): CarEffect[];
  /** Advances time for the fail-safe relock; `now` defaults to the car's clock. */
  tick(now?: number | null): CarEffect[];
  snapshot(): CarState;
  /**
   * Builds the next state report; each call takes a new, larger `seq`. A report that answers a state query
   * echoes the query's nonce (PROTOCOL.md §3.5).
   */
  stateReport(nonce?: string): StateReport;
  /** The offline notice the transport registers as its MQTT will. */
  presence(): Presence;
  /**
   * Hears every change with its cause. Changes caused by handleCommand are also returned to its caller as
   * `stateChanged`, so a transport can publish the ack before the state report.
   */
  onChange(listener: CarListener): () => void;
  /** Signs acks from now on with this key: the car's new certificate after a rotation. */
  replaceSigningKey(key: KeyObject): void;
}

/** What an ack needs to name the command it answers. */
export interface CommandIds {
  commandId: string;
  deliveryId?: string;
  action: string;
}

/** Names a malformed command only when that is unambiguous; see SimulatedCar.handleCommand. */
function recoverIds(raw: Buffer): CommandIds | null {
  if (raw.length > MAX_PAYLOAD_BYTES) return null;
  let value: unknown;
  try {
    value = parseStrictJson(raw.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const record = value as Record<string, unknown>;
  const commandId = CommandSchema.shape.commandId.safeParse(record.commandId);
  if (!commandId.success) return null;
  const deliveryId = CommandSchema.shape.deliveryId.safeParse(record.deliveryId);
  const action = TokenActionSchema.safeParse(record.action);
  const named = record.type === 'keys' ? 'keys' : action.success ? action.data : 'unknown';
  const ids: CommandIds = { commandId: commandId.data, action: named };
  if (deliveryId.success) ids.deliveryId = deliveryId.data;
  return ids;
}

/** Parses a command; duplicate member names are refused too, so every reader sees the same commandId. */
function decodeCommand(raw: Buffer): CommandMessage | null {
  try {
    const command = parseMessage(CommandMessageSchema, raw);
    parseStrictJson(raw.toString('utf8'));
    return command;
  } catch {
    return null;
  }
}

export function createSimulatedCar(deps: SimulatedCarDeps): SimulatedCar {
  let signingKey = deps.signingKey;
  const config = { failsafeRelockMs: deps.failsafeRelockMs ?? DEFAULT_FAILSAFE_RELOCK_MS };
  const flaws = deps.flaws ?? NO_FLAWS;
  const dedupeCapacity = flaws.has('no-dedupe') ? 0 : (deps.dedupeCapacity ?? DEFAULT_DEDUPE_CAPACITY);
  const issuer = deps.issuer ?? TOKEN_ISSUER;
  let state =
    deps.initial.state ?? initialCarState(PositionSchema.parse(deps.initial.position), deps.initial.seq ?? 0);
  const listeners = new Set<CarListener>();
  /** SHA-256 of a command payload → the ack it got; a byte-identical redelivery gets the same ack. */
  const recentAcks = new Map<string, Ack>();
  let queue: Promise<unknown> = Promise.resolve();

  /** The car's time as the wire carries it: whole ms, never below the last good time, or null (car-clock.ts). */
  const readClock = (): number | null => carTime(deps.clock(), deps.replay.lastGoodTime());

  const dispatch = (event: CarEvent, cause: ChangeCause): CarEffect[] => {
    const result = transition(state, event, config);
    state = result.state;
    if (result.effects.length > 0) {
      for (const listener of listeners) listener({ cause, state, effects: result.effects });
    }
    return result.effects;
  };

  const ack = (
    ids: { commandId: string; deliveryId?: string; action: string },
    outcome: Ack['outcome'],
    at: number | null,
    reason?: string,
  ): Ack => {
    // Members in the order of AckSchema, so the wire text reads like PROTOCOL.md §3.2.
    const unsigned: UnsignedAck = {
      v: PROTOCOL_VERSION,
      type: 'ack',
      vin: deps.vin,
      commandId: ids.commandId,
      ...(ids.deliveryId !== undefined && { deliveryId: ids.deliveryId }),
      action: ids.action,
      outcome,
      ...(reason !== undefined && { reason }),
      locked: state.locked,
      at,
    };
    // unsigned-acks sends the ack without the member the protocol requires (TOKEN.md §9): a deliberate flaw.
    if (flaws.has('unsigned-acks')) return Object.freeze(unsigned as Ack);
    return Object.freeze(signAck(unsigned, signingKey));
  };

  const remember = (key: string, sent: Ack): void => {
    recentAcks.set(key, sent);
    if (recentAcks.size > dedupeCapacity) {
      const oldest = recentAcks.keys().next().value;
      if (oldest !== undefined) recentAcks.delete(oldest);
    }
  };

  /** Verifies and executes; the car unlocks only on the executed branch, after every check has passed. */
  const execute = async (command: Command): Promise<CommandResult> => {
    const now = readClock();
    // Checked before the token, so a refusal consumes no jti (PROTOCOL.md §5). A revoke moves no lock of a
    // locked car and must not wait for a charge, so only the door actions need the battery.
    if (command.action !== 'revoke' && deps.faults?.batteryLow()) {
      return {
        ack: ack(command, 'refused', now, 'LOW_BATTERY' satisfies CarRefusalCode),
        stateChanged: false,
      };
    }
    let verdict: Awaited<ReturnType<typeof verifyAccessToken>>;
    try {
      const verification = flawedVerification(
        command.token,
        {
          keys: deps.keys.ring(),
          issuer,
          vin: deps.vin,
          action: command.action,
          commandId: command.commandId,
          deliveryId: command.deliveryId,
          now,
          replay: deps.replay,
          isRevoked: (deliveryId) => deps.revocations.isRevoked(deliveryId),
        },
        flaws,
      );
      verdict = await verifyAccessToken(verification.token, verification.ctx);
    } catch {
      return { ack: ack(command, 'refused', now, 'CAR_FAULT' satisfies CarRefusalCode), stateChanged: false };
    }
    if (!verdict.ok) return { ack: ack(command, 'refused', now, verdict.code), stateChanged: false };
    // verifyAccessToken refuses with CLOCK_UNKNOWN before this point; the guard only narrows the type.
    if (now === null) return { ack: ack(command, 'refused', now, 'CLOCK_UNKNOWN'), stateChanged: false };
    if (command.action === 'revoke') {
      // TOKEN.md §10: kept until every token minted for the delivery before the revoke has expired here.
      const until = (verdict.claims.iat + REVOCATION_RETENTION_S) * 1000;
      if (deps.revocations.revoke(verdict.claims.sub, until) === 'full') {
        const reason: CarRefusalCode = 'REVOCATION_STORE_FULL';
        return { ack: ack(command, 'refused', now, reason), stateChanged: false };
      }
      // A revoked delivery must not leave the car open until the fail-safe: an unlocked car locks at once.
      const effects =
        state.locked || flaws.has('revoke-leaves-open')
          ? []
          : dispatch({ type: 'remote_command', action: 'lock', now }, 'command');
      return {
        ack: ack(command, 'executed', now),
        stateChanged: effects.some((e) => e.type === 'report_state'),
      };
    }
    const effects = dispatch({ type: 'remote_command', action: command.action, now }, 'command');
    deps.onExecuted?.({
      commandId: command.commandId,
      deliveryId: command.deliveryId,
      action: command.action,
      jti: verdict.claims.jti,
      tokenSha256: createHash('sha256').update(command.token).digest('base64url'),
      at: now,
    });
    const stateChanged = effects.some((e) => e.type === 'report_state');
    return { ack: ack(command, 'executed', now), stateChanged };
  };

  /** Verifies a key announcement and, only when it passes, replaces the trusted keys (TOKEN.md §8). */
  const rotateKeys = async (command: KeysCommand): Promise<CommandResult> => {
    const now = readClock();
    const ids = { commandId: command.commandId, action: 'keys' };
    let reason: string | undefined;
    try {
      const verdict = await verifyKeyAnnouncement(command.announcement, {
        keys: deps.keys.ring(),
        issuer,
        seq: flawedKeySeq(deps.keys.seq(), flaws),
        now,
      });
      if (verdict.ok) deps.keys.replace(verdict.announcement.seq, verdict.announcement.keys);
      else reason = verdict.code;
    } catch {
      reason = 'CAR_FAULT' satisfies CarRefusalCode;
    }
    return {
      ack: reason === undefined ? ack(ids, 'executed', now) : ack(ids, 'refused', now, reason),
      stateChanged: false,
    };
  };

  const handle = async (raw: Buffer, wire?: Buffer): Promise<CommandResult> => {
    const command = decodeCommand(raw);
    if (command === null) {
      const ids = recoverIds(raw);
      const reason: CarRefusalCode = 'COMMAND_MALFORMED';
      return { ack: ids ? ack(ids, 'refused', readClock(), reason) : null, stateChanged: false };
    }
    // Dedupe comes before verification: the replay guard would refuse the redelivered token as
    // TOKEN_REPLAYED although the first delivery executed. Only a byte-identical payload matches.
    const key = createHash('sha256')
      .update(wire ?? raw)
      .digest('hex');
    const previous = recentAcks.get(key);
    if (previous) return { ack: previous, stateChanged: false };
    const result = command.type === 'keys' ? await rotateKeys(command) : await execute(command);
    if (result.ack) remember(key, result.ack);
    return result;
  };

  const control = (event: CarEvent): CarEffect[] => dispatch(event, 'control');

  return {
    vin: deps.vin,
    make: deps.make,
    model: deps.model,
    year: deps.year,
    provider: deps.provider,
    failsafeRelockMs: config.failsafeRelockMs,
    handleCommand(raw, wire) {
      const run = queue.then(() => handle(raw, wire));
      queue = run.catch(() => {});
      return run;
    },
    refuseCommand(ids, reason) {
      const run = queue.then(
        (): CommandResult => ({ ack: ack(ids, 'refused', readClock(), reason), stateChanged: false }),
      );
      queue = run.catch(() => {});
      return run;
    },
    openDoor: (door) => control({ type: 'door', door, to: 'open' }),
    closeDoor: (door) => control({ type: 'door', door, to: 'closed' }),
    setTrunk: (to) => control({ type: 'trunk', to }),
    setIgnition: (to) => control({ type: 'ignition', to }),
    moveTo: (position) => control({ type: 'move', position: PositionSchema.parse(position) }),
    setOnline: (online) => control({ type: 'connectivity', online }),
    // no-failsafe: the car never relocks by itself (PROTOCOL.md §5), a deliberate flaw.
    tick: (now) =>
      flaws.has('no-failsafe')
        ? []
        : dispatch({ type: 'tick', now: now === undefined ? readClock() : now }, 'tick'),
    snapshot: () => state,
    stateReport(nonce) {
      const taken = takeReportSeq(state);
      state = taken.state;
      return {
        v: PROTOCOL_VERSION,
        type: 'state',
        vin: deps.vin,
        seq: taken.seq,
        online: true,
        locked: state.locked,
        doors: { ...state.doors },
        trunk: state.trunk,
        ignition: state.ignition,
        position: { lat: state.position.lat, lon: state.position.lon },
        at: readClock(),
        ...(nonce === undefined ? {} : { nonce }),
      };
    },
    presence: () => ({ v: PROTOCOL_VERSION, type: 'presence', vin: deps.vin, online: false }),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    replaceSigningKey(key) {
      signingKey = key;
    },
  };
}
