import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { type Decoded, decode, encode, FRAME_LIMITS, type FrameLimits } from '../../protocols/codec.ts';
import { type WireError, wireError } from '../../protocols/errors.ts';
import type { Message } from '../../protocols/messages.ts';
import type { Admission, AdmittedPeer } from './admission.ts';
import {
  DEFAULT_BAD_FRAME_LIMIT,
  DEFAULT_BAD_FRAME_WINDOW_MS,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_RATE_LIMIT_BURST,
  DEFAULT_RATE_LIMIT_DISCONNECT_MS,
  DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND,
  PRE_AUTH_FRAME_SHAPE,
  REFUSAL_LINGER_MS,
} from './defaults.ts';
import { Heartbeat } from './heartbeat.ts';

export interface RateLimit {
  framesPerSecond: number;
  burst: number;
  disconnectAfterMs: number;
}

/** A peer that dialed in: it is held to the scheduler's admission until its hello is accepted. */
export interface Inbound {
  /** The socket under the WebSocket: its reads are counted before ws assembles any frame. */
  socket: Duplex;
  admission: Admission;
}

/** Why a peer's socket is not being read; it is read again when no reason is left. */
type WaitReason = 'rate' | 'budget' | 'hello' | 'refused';

const HELLOS: ReadonlySet<string> = new Set(['workerHello', 'workbenchHello']);

/**
 * Refuses a peer with a reason it can read: an `error` frame, a close frame; its socket is no
 * longer read (a refused peer makes us buffer nothing more) and is cut if the peer has not
 * answered the close within REFUSAL_LINGER_MS.
 */
export function refuseSocket(ws: WebSocket, error: WireError, closeCode: number, reason: string): void {
  if (ws.readyState !== ws.OPEN) return;
  ws.send(encode({ type: 'error', error }), { binary: true });
  ws.close(closeCode, reason.slice(0, 120));
  ws.pause();
  setTimeout(() => ws.terminate(), REFUSAL_LINGER_MS).unref();
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
/** A masked control frame from a client (ping, pong, close): 2 + 4 header bytes, at most 125 of payload. */
const MAX_CONTROL_FRAME_BYTES = 131;

export class PeerConnection implements AdmittedPeer {
  readonly id = randomUUID();
  private events: PeerEvents | undefined;
  private readonly badFrames: number[] = [];
  private readonly heartbeat: Heartbeat;
  private closed = false;
  private tokens: number;
  private refilledAt = Date.now();
  private overSince: number | undefined;
  private rateWaiting = false;
  private readonly waitingFor = new Set<WaitReason>();
  /** Undefined: not limited (a dial-out client does not police the scheduler it chose to dial). */
  private readonly rate: RateLimit | undefined;
  /** The shape a frame may have now: tight before the hello of an inbound peer. */
  private frameLimits: Readonly<FrameLimits>;
  private readonly sessionLimits: Readonly<FrameLimits>;
  private helloTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastTraffic = Date.now();

  constructor(
    private readonly ws: WebSocket,
    readonly remoteAddress: string,
    heartbeatMs: number,
    rate: Partial<RateLimit> | 'unlimited' = {},
    maxPayloadBytes: number = DEFAULT_MAX_PAYLOAD_BYTES,
    private readonly inbound?: Inbound,
  ) {
    this.rate =
      rate === 'unlimited'
        ? undefined
        : {
            framesPerSecond: rate.framesPerSecond ?? DEFAULT_RATE_LIMIT_FRAMES_PER_SECOND,
            burst: rate.burst ?? DEFAULT_RATE_LIMIT_BURST,
            disconnectAfterMs: rate.disconnectAfterMs ?? DEFAULT_RATE_LIMIT_DISCONNECT_MS,
          };
    this.tokens = this.rate?.burst ?? 0;
    this.sessionLimits = { ...FRAME_LIMITS, maxBytes: maxPayloadBytes };
    this.frameLimits = this.sessionLimits;
    this.heartbeat = new Heartbeat(
      { ping: () => ws.ping(), terminate: () => ws.terminate(), notReading: () => this.heldBack() },
      heartbeatMs,
    );
    ws.on('pong', () => {
      this.heartbeat.heard();
      inbound?.admission.delivered(this);
    });
    ws.on('message', (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    ws.on('close', (code, reason) => {
      this.closed = true;
      this.heartbeat.stop();
      clearTimeout(this.helloTimer);
      clearTimeout(this.idleTimer);
      inbound?.admission.closed(this);
      this.events?.onClose(code, reason.toString());
    });
    if (inbound) {
      const { admission, socket } = inbound;
      this.frameLimits = { ...PRE_AUTH_FRAME_SHAPE, maxBytes: admission.limits.preAuthMaxBytes };
      admission.opened(this);
      // Why count here: ws's maxPayload is fixed per server when the socket is handed over, so
      // it cannot be tighter before the hello than after (short of writing ws's private
      // `_receiver._maxPayload`). Counting the socket's reads (prepended, so before ws buffers
      // them) bounds everything a peer sends before its hello, all frames together, to the
      // pre-auth bytes plus one read, and feeds the budget of bytes in flight.
      this.countBytesAsLife(socket);
      socket.prependListener('data', (chunk: Buffer) => {
        // Part of a message on its way counts as traffic; a read no larger than one control
        // frame (a pong answering our heartbeat) does not, or no session would ever be idle.
        if (chunk.length > MAX_CONTROL_FRAME_BYTES) this.lastTraffic = Date.now();
        admission.received(this, chunk.length);
      });
      this.helloTimer = setTimeout(() => this.close(1008, 'no hello'), admission.limits.helloTimeoutMs);
      this.helloTimer.unref();
    }
    ws.on('error', () => {
      // 'close' follows every 'error' in ws; the close handler reports it.
    });
    this.heartbeat.start();
  }

  /**
   * Bytes arriving on `socket` (this peer's) prove it alive to the heartbeat: its pong to our ping
   * may be queued behind a large frame still on its way (a control frame cannot cut into a frame),
   * and a slow link, or our own pause for the in-flight budget, must not get it cut mid-frame.
   * The server's peers are watched from their construction; a client passes its socket once open.
   */
  countBytesAsLife(socket: { prependListener(event: 'data', listener: (chunk: Buffer) => void): unknown }): void {
    socket.prependListener('data', () => this.heartbeat.heard());
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
    this.lastTraffic = Date.now();
    this.ws.send(encode(message), { binary: true }, cb);
  }

  /**
   * The peer's hello was accepted: frames get the session's limits, and a workbench session
   * is closed after the idle time without a data frame either way (workers stay connected:
   * they wait for work, and the heartbeat finds the dead ones).
   */
  authenticated(role: 'worker' | 'workbench'): void {
    clearTimeout(this.helloTimer);
    this.frameLimits = this.sessionLimits;
    if (!this.inbound) return;
    this.inbound.admission.authenticated(this);
    this.resumeFor('hello');
    if (role === 'workbench') this.closeWhenIdle(this.inbound.admission.limits.workbenchIdleTimeoutMs);
  }

  /** Stop reading the socket (TCP pushes back on the peer); called by the admission's budget. */
  wait(): void {
    this.waitFor('budget');
  }

  resume(): void {
    this.resumeFor('budget');
  }

  refuse(error: WireError, closeCode: number, reason: string): void {
    this.waitingFor.add('refused');
    refuseSocket(this.ws, error, closeCode, reason);
  }

  /** Not read by our choice (over the budget or its rate): its silence is ours, not its. */
  private heldBack(): boolean {
    return this.waitingFor.has('budget') || this.waitingFor.has('rate');
  }

  private waitFor(reason: WaitReason): void {
    if (this.waitingFor.size === 0) this.ws.pause();
    this.waitingFor.add(reason);
  }

  private resumeFor(reason: WaitReason): void {
    if (!this.waitingFor.delete(reason) || this.waitingFor.size > 0 || this.closed) return;
    // The time it was held back was ours, not its silence: its idle time starts again now, and
    // so does its heartbeat (its pong waited unread in the socket with the rest of its frame).
    this.lastTraffic = Date.now();
    this.heartbeat.heard();
    this.ws.resume();
  }

  private closeWhenIdle(idleMs: number): void {
    const check = () => {
      // A peer we are not reading is not idle of its own doing.
      if (this.heldBack()) this.lastTraffic = Date.now();
      const quiet = Date.now() - this.lastTraffic;
      if (quiet < idleMs) {
        this.idleTimer = setTimeout(check, idleMs - quiet);
        this.idleTimer.unref();
        return;
      }
      // A close reason, not an `error` frame: a client reads an unsolicited error as the
      // session's fault and would repeat it on requests made while it dials again.
      this.close(4002, 'idle timeout');
    };
    this.idleTimer = setTimeout(check, idleMs);
    this.idleTimer.unref();
  }

  /** A frame already encoded (a resourceChunk, lib/transport/stream.ts); `cb` once the socket took it. */
  sendFrame(bytes: Uint8Array, cb: (err?: Error) => void): boolean {
    if (!this.isOpen) return false;
    this.lastTraffic = Date.now();
    this.ws.send(bytes, { binary: true }, cb);
    return true;
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
    this.lastTraffic = Date.now();
    this.inbound?.admission.delivered(this);
    if (!this.admit()) return;
    const decoded: Decoded = isBinary
      ? decode(data, this.frameLimits)
      : { ok: false, error: wireError('BAD_FRAME', 'text frames are not part of the protocol; send binary msgpack') };
    if (decoded.ok) {
      // Nothing more is read until the hello is judged: what follows it gets the session's limits.
      if (this.frameLimits !== this.sessionLimits && HELLOS.has(decoded.message.type)) this.waitFor('hello');
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
    if (!this.rate) return true;
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
    if (!this.rateWaiting) {
      this.rateWaiting = true;
      this.waitFor('rate');
      const wait = Math.ceil(((1 - this.tokens) / this.rate.framesPerSecond) * 1000);
      setTimeout(() => {
        this.rateWaiting = false;
        this.resumeFor('rate');
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
