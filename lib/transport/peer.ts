import { randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import { type Decoded, decode, encode } from '../../protocols/codec.ts';
import { type WireError, wireError } from '../../protocols/errors.ts';
import type { Message } from '../../protocols/messages.ts';
import {
  DEFAULT_BAD_FRAME_LIMIT,
  DEFAULT_BAD_FRAME_WINDOW_MS,
  DEFAULT_RATE_LIMIT_BURST,
  DEFAULT_RATE_LIMIT_DISCONNECT_MS,
  DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND,
} from './defaults.ts';
import { Heartbeat } from './heartbeat.ts';

export interface RateLimit {
  framesPerSecond: number;
  burst: number;
  disconnectAfterMs: number;
}

export interface PeerEvents {
  /** A decoded, schema-checked message. */
  onMessage(message: Message): void;
  onClose(code: number, reason: string): void;
}

/**
 * One WebSocket peer, seen as messages: frames in are decoded and validated (a bad one
 * gets an `error` reply with its code and is otherwise ignored), messages out are encoded.
 * A peer that keeps sending bad frames is disconnected; nothing else is disturbed.
 */
export class PeerConnection {
  readonly id = randomUUID();
  private events: PeerEvents | undefined;
  private readonly badFrames: number[] = [];
  private readonly heartbeat: Heartbeat;
  private closed = false;
  private tokens: number;
  private refilledAt = Date.now();
  private overSince: number | undefined;
  private paused = false;
  private readonly rate: RateLimit;

  constructor(
    private readonly ws: WebSocket,
    readonly remoteAddress: string,
    heartbeatMs: number,
    rate: Partial<RateLimit> = {},
  ) {
    this.rate = {
      framesPerSecond: rate.framesPerSecond ?? DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND,
      burst: rate.burst ?? DEFAULT_RATE_LIMIT_BURST,
      disconnectAfterMs: rate.disconnectAfterMs ?? DEFAULT_RATE_LIMIT_DISCONNECT_MS,
    };
    this.tokens = this.rate.burst;
    this.heartbeat = new Heartbeat({ ping: () => ws.ping(), terminate: () => ws.terminate() }, heartbeatMs);
    ws.on('pong', () => this.heartbeat.heard());
    ws.on('message', (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    ws.on('close', (code, reason) => {
      this.closed = true;
      this.heartbeat.stop();
      this.events?.onClose(code, reason.toString());
    });
    ws.on('error', () => {
      // 'close' follows every 'error' in ws; the close handler reports it.
    });
    this.heartbeat.start();
  }

  attach(events: PeerEvents): void {
    this.events = events;
  }

  get isOpen(): boolean {
    return !this.closed && this.ws.readyState === this.ws.OPEN;
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(message: Message, cb?: (err?: Error) => void): void {
    if (!this.isOpen) {
      cb?.(new Error('connection closed'));
      return;
    }
    this.ws.send(encode(message), { binary: true }, cb);
  }

  /** Test seam (fault injection): bytes as they are, bypassing the codec. */
  sendRaw(bytes: Uint8Array): void {
    if (this.isOpen) this.ws.send(bytes, { binary: true });
  }

  sendError(error: WireError, reqId?: number): void {
    this.send(reqId === undefined ? { type: 'error', error } : { type: 'error', reqId, error });
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return;
    this.ws.close(code, reason.slice(0, 120));
  }

  terminate(): void {
    this.ws.terminate();
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    this.heartbeat.heard();
    if (!this.admit()) return;
    const decoded: Decoded = isBinary
      ? decode(data)
      : { ok: false, error: wireError('BAD_FRAME', 'text frames are not part of the protocol; send binary msgpack') };
    if (decoded.ok) {
      this.events?.onMessage(decoded.message);
      return;
    }
    this.sendError(decoded.error, decoded.reqId);
    if (decoded.error.code === 'PROTOCOL_VERSION_MISMATCH') {
      this.close(1002, 'protocol version mismatch');
      return;
    }
    this.countBadFrame();
  }

  /**
   * Token bucket per connection. Out of tokens, the peer is slowed: its socket stops being
   * read until a token is due (TCP pushes back on it). Kept over the rate for
   * `disconnectAfterMs`, it is disconnected. The frame in hand is still handled.
   */
  private admit(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.rate.framesPerSecond);
    this.refilledAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      if (this.overSince !== undefined && this.tokens >= this.rate.burst / 2) this.overSince = undefined;
      return true;
    }
    this.overSince ??= now;
    if (now - this.overSince > this.rate.disconnectAfterMs) {
      this.sendError(wireError('RATE_LIMITED', `more than ${this.rate.framesPerSecond} frames/s for too long; disconnecting`));
      this.close(1008, 'rate limited');
      return false;
    }
    if (!this.paused) {
      this.paused = true;
      this.ws.pause();
      const wait = Math.ceil(((1 - this.tokens) / this.rate.framesPerSecond) * 1000);
      setTimeout(() => {
        this.paused = false;
        if (!this.closed) this.ws.resume();
      }, wait).unref();
    }
    return true;
  }

  private countBadFrame(): void {
    const now = Date.now();
    this.badFrames.push(now);
    while (this.badFrames.length > 0 && (this.badFrames[0] as number) < now - DEFAULT_BAD_FRAME_WINDOW_MS) {
      this.badFrames.shift();
    }
    if (this.badFrames.length > DEFAULT_BAD_FRAME_LIMIT) {
      this.sendError(wireError('TOO_MANY_BAD_FRAMES', 'too many bad frames; disconnecting'));
      this.close(1008, 'too many bad frames');
    }
  }
}
