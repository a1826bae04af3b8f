// Owns the few MQTT 3.1.1 packets the floor's server side speaks (OASIS MQTT 3.1.1 §2-3), nothing more:
// CONNECT in, CONNACK out, SUBSCRIBE in, SUBACK out, PUBLISH both ways at QoS 1, PUBACK, PINGREQ, DISCONNECT.

export const CONNECT = 1;
export const PUBLISH = 3;
export const PUBACK = 4;
export const SUBSCRIBE = 8;
export const PINGREQ = 12;
export const DISCONNECT = 14;

export interface Packet {
  type: number;
  flags: number;
  body: Buffer;
}

/** §2.2.3: the remaining length, 1-4 bytes of 7 bits each. */
export function encodeLength(length: number): Buffer {
  const bytes: number[] = [];
  let n = length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    bytes.push(byte);
  } while (n > 0);
  return Buffer.from(bytes);
}

/** Splits a byte stream into packets; keeps what is left of an incomplete one for the next chunk. */
export class PacketReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Packet[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const packets: Packet[] = [];
    let at = 0;
    for (;;) {
      if (this.pending.length - at < 2) break;
      let length = 0;
      let multiplier = 1;
      let i = at + 1;
      let complete = false;
      for (; i < this.pending.length && i < at + 5; i++) {
        const byte = this.pending[i] as number;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete || this.pending.length - i < length) break;
      const first = this.pending[at] as number;
      packets.push({ type: first >> 4, flags: first & 0x0f, body: this.pending.subarray(i, i + length) });
      at = i + length;
    }
    this.pending = this.pending.subarray(at);
    return packets;
  }
}

/** §3.1.3.1: the client identifier, the first field of CONNECT's payload. */
export function connectClientId(body: Buffer): string {
  const nameLength = body.readUInt16BE(0);
  const payload = 2 + nameLength + 1 + 1 + 2;
  const idLength = body.readUInt16BE(payload);
  return body.toString('utf8', payload + 2, payload + 2 + idLength);
}

/** §3.2: session not present, connection accepted. */
export const CONNACK_ACCEPTED = Buffer.from([0x20, 0x02, 0x00, 0x00]);
export const PINGRESP = Buffer.from([0xd0, 0x00]);

/** §3.9: grants QoS 1 to every filter of a SUBSCRIBE. */
export function subackFor(body: Buffer): Buffer {
  let filters = 0;
  for (let at = 2; at < body.length; ) {
    at += 2 + body.readUInt16BE(at) + 1;
    filters++;
  }
  return Buffer.concat([
    Buffer.from([0x90]),
    encodeLength(2 + filters),
    body.subarray(0, 2),
    Buffer.alloc(filters, 1),
  ]);
}

export const pubackFor = (packetId: number): Buffer =>
  Buffer.from([0x40, 0x02, packetId >> 8, packetId & 0xff]);

/** §3.3: a QoS 1 PUBLISH. */
export function encodePublish(topic: string, packetId: number, payload: Buffer): Buffer {
  const topicBytes = Buffer.from(topic, 'utf8');
  const length = 2 + topicBytes.length + 2 + payload.length;
  const header = Buffer.concat([Buffer.from([0x32]), encodeLength(length)]);
  const variable = Buffer.alloc(2 + topicBytes.length + 2);
  variable.writeUInt16BE(topicBytes.length, 0);
  topicBytes.copy(variable, 2);
  variable.writeUInt16BE(packetId, 2 + topicBytes.length);
  return Buffer.concat([header, variable, payload]);
}

export interface IncomingPublish {
  topic: string;
  qos: number;
  packetId: number | null;
  payload: Buffer;
}

export function decodePublish(packet: Packet): IncomingPublish {
  const qos = (packet.flags >> 1) & 0x03;
  const topicLength = packet.body.readUInt16BE(0);
  const topic = packet.body.toString('utf8', 2, 2 + topicLength);
  let at = 2 + topicLength;
  let packetId: number | null = null;
  if (qos > 0) {
    packetId = packet.body.readUInt16BE(at);
    at += 2;
  }
  return { topic, qos, packetId, payload: packet.body.subarray(at) };
}
