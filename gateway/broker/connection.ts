// Owns the stream aedes reads a client from: the TLS socket behind a duplex that passes on only bytes the wire limits accept.
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { FrameScanner, WireViolation } from './wire.ts';

/**
 * aedes has no packet size limit and buffers a packet until its last byte arrives, so the limit is applied
 * here, in front of its parser: the first byte past a limit closes the socket and aedes never sees it.
 */
export class GuardedConnection extends Duplex {
  readonly socket: TLSSocket;

  constructor(socket: TLSSocket, scanner: FrameScanner, onViolation: (violation: WireViolation) => void) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    // MQTT packets are small and answered one by one: Nagle's algorithm would hold each reply for an ACK.
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      const violation = scanner.push(chunk);
      if (violation !== null) {
        onViolation(violation);
        this.destroy();
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, encoding, callback);
  }

  /** mqtt-packet corks, writes a packet in pieces and uncorks: one socket write keeps it in one TLS record. */
  override _writev(
    chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>,
    callback: (error?: Error | null) => void,
  ): void {
    this.socket.write(Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    callback(error);
  }
}
