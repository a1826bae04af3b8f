// Owns the broker's limits on raw MQTT bytes as pure state machines: the fixed-header scanner and the token bucket.

/** Why a connection's bytes were refused before any of them reached the MQTT parser. */
export type WireViolation = 'PACKET_TOO_LARGE' | 'LENGTH_MALFORMED' | 'PACKET_MALFORMED' | 'RATE_LIMITED';

export interface TokenBucket {
  /** Spends one token; false (and nothing spent) when the bucket is empty. */
  take(): boolean;
}

export interface TokenBucketOptions {
  /** Tokens the bucket holds when full: the largest burst allowed. */
  burst: number;
  /** Tokens added per second, up to burst. */
  perSecond: number;
  /** Milliseconds; injected so that tests freeze time. */
  now: () => number;
}

export function createTokenBucket(options: TokenBucketOptions): TokenBucket {
  let tokens = options.burst;
  let last = options.now();
  return {
    take() {
      const t = options.now();
      // A clock that steps back adds nothing rather than taking tokens away.
      tokens = Math.min(options.burst, tokens + (Math.max(0, t - last) / 1000) * options.perSecond);
      last = t;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    },
  };
}

/** MQTT 3.1.1 §2.2.1 control packet types the scanner looks at. */
export const PACKET_TYPE = { PUBLISH: 3, SUBSCRIBE: 8, UNSUBSCRIBE: 10 } as const;

/**
 * Smallest remaining length per packet type where the parser would accept less: mqtt-packet returns a
 * SUBSCRIBE or UNSUBSCRIBE with an empty list, which the standard calls a protocol violation.
 */
const MINIMUM_REMAINING_LENGTH: Partial<Record<number, number>> = {
  // packet id 2 + topic filter length 2 + at least one character [MQTT-4.7.3-1] + requested QoS 1 [MQTT-3.8.3-3]
  [PACKET_TYPE.SUBSCRIBE]: 6,
  // packet id 2 + topic filter length 2 + at least one character [MQTT-3.10.3-2]
  [PACKET_TYPE.UNSUBSCRIBE]: 5,
};

export interface FrameScannerOptions {
  /** Largest whole packet, fixed header included, as Mosquitto's max_packet_size counts. */
  maxPacketBytes: number;
  /** Asked once per PUBLISH header; false refuses the connection with RATE_LIMITED. */
  allowPublish?: () => boolean;
}

export interface FrameScanner {
  /**
   * Feeds the next bytes of the stream, split anywhere. Returns the first violation, and keeps
   * returning it: a connection that broke a limit is never trusted again.
   */
  push(chunk: Uint8Array): WireViolation | null;
}

/**
 * Follows packet boundaries by reading only fixed headers (§2.2) and skipping bodies, so a packet's size
 * is judged from its header, before a byte of its body is buffered.
 */
export function createFrameScanner(options: FrameScannerOptions): FrameScanner {
  let violation: WireViolation | null = null;
  let bodyLeft = 0;
  let header: number[] = [];

  const onHeader = (type: number, remainingLength: number, headerBytes: number): WireViolation | null => {
    if (headerBytes + remainingLength > options.maxPacketBytes) return 'PACKET_TOO_LARGE';
    const minimum = MINIMUM_REMAINING_LENGTH[type];
    if (minimum !== undefined && remainingLength < minimum) return 'PACKET_MALFORMED';
    if (type === PACKET_TYPE.PUBLISH && options.allowPublish && !options.allowPublish())
      return 'RATE_LIMITED';
    return null;
  };

  return {
    push(chunk) {
      let i = 0;
      while (violation === null && i < chunk.length) {
        if (bodyLeft > 0) {
          const n = Math.min(bodyLeft, chunk.length - i);
          bodyLeft -= n;
          i += n;
          continue;
        }
        const byte = chunk[i++] as number;
        header.push(byte);
        if (header.length === 1) continue;
        if (byte & 0x80) {
          // §2.2.3: the remaining length takes at most four bytes.
          if (header.length === 5) violation = 'LENGTH_MALFORMED';
          continue;
        }
        let remainingLength = 0;
        for (let k = header.length - 1; k >= 1; k--)
          remainingLength = remainingLength * 128 + (header[k]! & 0x7f);
        violation = onHeader((header[0] as number) >> 4, remainingLength, header.length);
        bodyLeft = remainingLength;
        header = [];
      }
      return violation;
    },
  };
}
