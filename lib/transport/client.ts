import type { Socket } from 'node:net';
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
  /**
   * The schedulers to dial, in order: one, or the active and its standby (docs/DEPLOY.md). A
   * refused dial or a lost connection moves to the next URL; a round of refused dials backs off.
   */
  urls: readonly string[];
  maxPayloadBytes?: number;
  heartbeatMs?: number;
  /** Dial again after a lost connection (workers: yes, for ever). */
  reconnect: boolean;
  /** With reconnect on: still fail `start()` when the first round of dials fails (a workbench should say so at once). */
  failFirstDial?: boolean;
  /** Extra CA certificates (PEM) to trust for wss:// (a self-signed scheduler). */
  ca?: Buffer;
  onOpen(peer: PeerConnection): void;
  onMessage(message: Message): void;
  onClose?(code: number, reason: string): void;
  /** Every failed dial, with its URL and the delay before the next one (0: the next URL at once). */
  onRetry?(error: Error, delayMs: number, url: string): void;
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
  /** Index in `urls` of the next dial. */
  private next = 0;
  /** Dials refused since the last backoff or open: a round ends when every URL has refused. */
  private refusedInRound = 0;

  constructor(private readonly opts: ClientOptions) {
    if (opts.urls.length === 0) throw new Error('a client needs at least one scheduler URL');
  }

  /** The URL of the open connection, else of the next dial. */
  get url(): string {
    return this.opts.urls[this.next % this.opts.urls.length] as string;
  }

  /** Resolves on the first open; rejects only when reconnect is off and the dial fails. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let first = true;
      const dial = () => {
        if (this.stopped) return;
        const maxPayloadBytes = this.opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
        const url = this.url;
        const ws = new WebSocket(url, {
          perMessageDeflate: false,
          maxPayload: maxPayloadBytes,
          handshakeTimeout: 10_000,
          ...(this.opts.ca ? { ca: this.opts.ca } : {}),
        });
        let opened = false;
        // The connection's socket, for the heartbeat to count bytes as they arrive (PeerConnection.countBytesAsLife).
        let socket: Socket | undefined;
        ws.once('upgrade', (response) => {
          socket = response.socket;
        });
        ws.once('open', () => {
          // Not a success yet: a scheduler that refuses the peer (too many connections, a bad
          // hello) closes right after opening. The backoff is reset by `established()`.
          opened = true;
          this.refusedInRound = 0;
          // Not rate-limited: the limit protects a scheduler from its peers. A client that paused
          // and then dropped its own scheduler for answering fast (a workbench with many requests in
          // flight, a worker sent a burst of work) would fail requests for nothing.
          const peer = new PeerConnection(ws, url, this.opts.heartbeatMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, 'unlimited', maxPayloadBytes);
          if (socket) peer.countBytesAsLife(socket);
          this.peer = peer;
          peer.attach({
            onMessage: (m) => this.opts.onMessage(m),
            onClose: (code, reason) => {
              if (this.peer === peer) this.peer = undefined;
              this.opts.onClose?.(code, reason);
              // A killed scheduler's standby may be the one to take over: the next dial tries it.
              this.rotate();
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
          this.rotate();
          // Another URL not yet tried in this round: at once (a standby refuses until it is active).
          if (++this.refusedInRound < this.opts.urls.length) {
            this.opts.onRetry?.(err, 0, url);
            if (!this.stopped) dial();
            return;
          }
          this.refusedInRound = 0;
          if (first && (!this.opts.reconnect || this.opts.failFirstDial)) {
            this.stopped = true;
            first = false;
            reject(new Error(`cannot reach the scheduler at ${this.opts.urls.join(', ')}: ${err.message}`));
            return;
          }
          this.failures++;
          const delay = reconnectDelay(this.failures, this.opts.random);
          this.opts.onRetry?.(err, delay, url);
          this.schedule(dial, delay);
        });
      };
      dial();
    });
  }

  private rotate(): void {
    this.next = (this.next + 1) % this.opts.urls.length;
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
