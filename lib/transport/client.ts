import WebSocket from 'ws';
import type { Message } from '../../protocols/messages.ts';
import {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_RECONNECT_INITIAL_MS,
  DEFAULT_RECONNECT_MAX_MS,
} from './defaults.ts';
import { PeerConnection } from './peer.ts';

export interface ClientOptions {
  url: string;
  maxPayloadBytes?: number;
  heartbeatMs?: number;
  /** Dial again after a lost connection (workers: yes, for ever). */
  reconnect: boolean;
  /** With reconnect on: still fail `start()` when the very first dial fails (a workbench should say so at once). */
  failFirstDial?: boolean;
  /** Extra CA certificates (PEM) to trust for wss:// (a self-signed scheduler). */
  ca?: Buffer;
  onOpen(peer: PeerConnection): void;
  onMessage(message: Message): void;
  onClose?(code: number, reason: string): void;
  /** Every failed dial, with the delay before the next one. */
  onRetry?(error: Error, delayMs: number): void;
  random?: () => number;
}

/** Exponential backoff with full jitter, so a thousand workers do not return in lockstep. */
export function reconnectDelay(failures: number, random: () => number = Math.random): number {
  const cap = Math.min(DEFAULT_RECONNECT_MAX_MS, DEFAULT_RECONNECT_INITIAL_MS * 2 ** Math.min(failures, 20));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** A dial-out connection: workers and workbenches open no port. */
export class Client {
  private peer: PeerConnection | undefined;
  private failures = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ClientOptions) {}

  /** Resolves on the first open; rejects only when reconnect is off and the dial fails. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let first = true;
      const dial = () => {
        if (this.stopped) return;
        const maxPayloadBytes = this.opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
        const ws = new WebSocket(this.opts.url, {
          perMessageDeflate: false,
          maxPayload: maxPayloadBytes,
          handshakeTimeout: 10_000,
          ...(this.opts.ca ? { ca: this.opts.ca } : {}),
        });
        let opened = false;
        ws.once('open', () => {
          // Not a success yet: a scheduler that refuses the peer (too many connections, a bad
          // hello) closes right after opening. The backoff is reset by `established()`.
          opened = true;
          const peer = new PeerConnection(ws, this.opts.url, this.opts.heartbeatMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, {}, maxPayloadBytes);
          this.peer = peer;
          peer.attach({
            onMessage: (m) => this.opts.onMessage(m),
            onClose: (code, reason) => {
              if (this.peer === peer) this.peer = undefined;
              this.opts.onClose?.(code, reason);
              this.schedule(dial);
            },
          });
          this.opts.onOpen(peer);
          if (first) {
            first = false;
            resolve();
          }
        });
        ws.once('error', (err) => {
          if (opened) return;
          ws.terminate();
          if (first && (!this.opts.reconnect || this.opts.failFirstDial)) {
            this.stopped = true;
            first = false;
            reject(new Error(`cannot reach the scheduler at ${this.opts.url}: ${err.message}`));
            return;
          }
          this.failures++;
          const delay = reconnectDelay(this.failures, this.opts.random);
          this.opts.onRetry?.(err, delay);
          this.schedule(dial, delay);
        });
      };
      dial();
    });
  }

  private schedule(dial: () => void, delay?: number): void {
    if (this.stopped || !this.opts.reconnect) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(dial, delay ?? reconnectDelay(++this.failures, this.opts.random));
  }

  /**
   * The session is up (the scheduler welcomed us): the next loss starts the backoff afresh. Until
   * then every close counts as a failure, so peers the scheduler keeps refusing back off instead
   * of redialing at the first step for ever.
   */
  established(): void {
    this.failures = 0;
  }

  get connected(): boolean {
    return this.peer?.isOpen ?? false;
  }

  /** False when there is no open connection: the caller decides what waiting means. */
  send(message: Message): boolean {
    if (!this.peer?.isOpen) return false;
    this.peer.send(message);
    return true;
  }

  /** An encoded frame (a resourceChunk); `cb` once the socket has taken it (back-pressure for streams). */
  sendFrame(bytes: Uint8Array, cb: (err?: Error) => void): boolean {
    return this.peer?.sendFrame(bytes, cb) ?? false;
  }

  /** Test seam (fault injection): raw bytes on the open connection. */
  sendRaw(bytes: Uint8Array): boolean {
    if (!this.peer?.isOpen) return false;
    this.peer.sendRaw(bytes);
    return true;
  }

  /** Drops the connection abruptly, as a network cut would; it is dialed again (fault injection). */
  cut(): void {
    this.peer?.terminate();
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.peer?.close(1000, 'bye');
  }
}
