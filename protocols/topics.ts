// Owns the MQTT topic layout shared by gateway, broker policy and cars (PROTOCOL.md §2).

export const TOPIC_ROOT = 'vehicles';

export type TopicKind = 'commands' | 'acks' | 'state';

export const commandTopic = (vin: string): string => `${TOPIC_ROOT}/${vin}/commands`;
export const ackTopic = (vin: string): string => `${TOPIC_ROOT}/${vin}/acks`;
export const stateTopic = (vin: string): string => `${TOPIC_ROOT}/${vin}/state`;

/** Subscriptions the gateway holds: every car's acks and state. */
export const GATEWAY_SUBSCRIPTIONS = [`${TOPIC_ROOT}/+/acks`, `${TOPIC_ROOT}/+/state`] as const;

/**
 * Where a gateway session probes its own subscriptions (PROTOCOL.md §2.1): one topic under each subscription,
 * at a level that is not a VIN, so no car may write it and no car's subscription covers it.
 */
export const PROBE_LEVEL = '_probe';
export const PROBE_TOPICS = [
  `${TOPIC_ROOT}/${PROBE_LEVEL}/acks`,
  `${TOPIC_ROOT}/${PROBE_LEVEL}/state`,
] as const;
export const isProbeTopic = (topic: string): boolean => (PROBE_TOPICS as readonly string[]).includes(topic);
/** The probe topic under the same subscription as a car's acks or state. */
export const probeTopicOf = (kind: 'acks' | 'state'): string => `${TOPIC_ROOT}/${PROBE_LEVEL}/${kind}`;

export interface ParsedTopic {
  vin: string;
  kind: TopicKind;
}

/** Parses a concrete (wildcard-free) topic; anything off the layout is null. */
export function parseTopic(topic: string): ParsedTopic | null {
  const parts = topic.split('/');
  if (parts.length !== 3 || parts[0] !== TOPIC_ROOT) return null;
  const [, vin, kind] = parts as [string, string, string];
  if (vin.length === 0 || vin.includes('+') || vin.includes('#')) return null;
  if (kind !== 'commands' && kind !== 'acks' && kind !== 'state') return null;
  return { vin, kind };
}
