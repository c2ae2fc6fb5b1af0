import { type WireError, wireError } from '../../protocols/errors.ts';
import {
  DEFAULT_HELLO_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
  DEFAULT_MAX_UNAUTHENTICATED,
  DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
  DEFAULT_PRE_AUTH_MAX_BYTES,
  DEFAULT_WORKBENCH_IDLE_TIMEOUT_MS,
} from './defaults.ts';

/** What the scheduler admits: `connection_limits` in its config. */
export interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** Connections whose hello has not been accepted yet. */
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  /** Bytes a connection may send before its hello is accepted. */
  preAuthMaxBytes: number;
  helloTimeoutMs: number;
  /** Bytes of frames being received, over all peers. */
  maxInFlightBytes: number;
  workbenchIdleTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = {
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  maxConnectionsPerAddress: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
  maxUnauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
  maxUnauthenticatedPerAddress: DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
  preAuthMaxBytes: DEFAULT_PRE_AUTH_MAX_BYTES,
  helloTimeoutMs: DEFAULT_HELLO_TIMEOUT_MS,
  maxInFlightBytes: DEFAULT_MAX_IN_FLIGHT_BYTES,
  workbenchIdleTimeoutMs: DEFAULT_WORKBENCH_IDLE_TIMEOUT_MS,
};

/** What admission needs of a peer (a seam: tested without sockets). */
export interface AdmittedPeer {
  readonly remoteAddress: string;
  /** Stop reading the peer's socket until `resume` (TCP pushes back on it). */
  wait(): void;
  resume(): void;
  refuse(error: WireError, closeCode: number, reason: string): void;
}

interface AddressCount {
  all: number;
  unauthenticated: number;
}

/**
 * The scheduler's door: caps on connections (in total, before the hello, per address), the
 * bytes a peer may send before its hello, and one budget of bytes in flight over all peers.
 *
 * In flight means read off a socket and not yet delivered as a whole message: what ws holds
 * while it assembles a frame. It is counted per peer from the socket's reads (the peer's
 * count restarts at each whole message or pong), so it is right to within one read (64 KiB)
 * per peer. Over the budget, the peer whose read crossed it waits; peers resume in order as
 * messages complete. If every peer holding bytes is waiting, none could ever complete, so the
 * first in line goes on alone until its message is whole: memory stays within the budget plus
 * one frame.
 */
export class Admission {
  private total = 0;
  private readonly byAddress = new Map<string, AddressCount>();
  /** Peers before their hello, with the bytes they have sent. */
  private readonly unauthenticated = new Map<AdmittedPeer, number>();
  private readonly inFlight = new Map<AdmittedPeer, number>();
  private inFlightTotal = 0;
  private readonly waiting = new Set<AdmittedPeer>();
  /** The peer let through alone while over the budget (else nobody could finish), until its message is whole. */
  private alone: AdmittedPeer | undefined;

  constructor(readonly limits: Readonly<ConnectionLimits>) {}

  /** Why a new connection from `address` is refused, or undefined when it may come in. */
  refusal(address: string): WireError | undefined {
    const here = this.byAddress.get(address) ?? { all: 0, unauthenticated: 0 };
    const l = this.limits;
    const full = (what: string, limit: number) =>
      wireError('TOO_MANY_CONNECTIONS', `this scheduler takes at most ${limit} ${what}; try again later`);
    if (this.total >= l.maxConnections) return full('connections', l.maxConnections);
    if (here.all >= l.maxConnectionsPerAddress) return full(`connections from one address (${address})`, l.maxConnectionsPerAddress);
    if (this.unauthenticated.size >= l.maxUnauthenticated) return full('connections before their hello', l.maxUnauthenticated);
    if (here.unauthenticated >= l.maxUnauthenticatedPerAddress) {
      return full(`connections before their hello from one address (${address})`, l.maxUnauthenticatedPerAddress);
    }
    return undefined;
  }

  opened(peer: AdmittedPeer): void {
    const here = this.byAddress.get(peer.remoteAddress) ?? { all: 0, unauthenticated: 0 };
    here.all++;
    here.unauthenticated++;
    this.byAddress.set(peer.remoteAddress, here);
    this.total++;
    this.unauthenticated.set(peer, 0);
    this.inFlight.set(peer, 0);
  }

  authenticated(peer: AdmittedPeer): void {
    if (!this.unauthenticated.delete(peer)) return;
    const here = this.byAddress.get(peer.remoteAddress);
    if (here) here.unauthenticated--;
  }

  closed(peer: AdmittedPeer): void {
    if (!this.inFlight.has(peer)) return;
    this.delivered(peer);
    this.inFlight.delete(peer);
    this.waiting.delete(peer);
    if (peer === this.alone) this.alone = undefined;
    this.authenticated(peer);
    this.total--;
    const here = this.byAddress.get(peer.remoteAddress);
    if (here && --here.all === 0) this.byAddress.delete(peer.remoteAddress);
    this.resumeWaiting();
  }

  /** Bytes read off the peer's socket, before ws has looked at them. */
  received(peer: AdmittedPeer, bytes: number): void {
    const held = this.inFlight.get(peer);
    if (held === undefined) return;
    this.inFlight.set(peer, held + bytes);
    this.inFlightTotal += bytes;
    const sentBeforeHello = this.unauthenticated.get(peer);
    if (sentBeforeHello !== undefined) {
      this.unauthenticated.set(peer, sentBeforeHello + bytes);
      if (sentBeforeHello + bytes > this.limits.preAuthMaxBytes) {
        const error = wireError('FRAME_TOO_LARGE', `more than ${this.limits.preAuthMaxBytes} bytes before the hello was accepted`);
        peer.refuse(error, 1009, 'too much before the hello');
        return;
      }
    }
    if (this.inFlightTotal > this.limits.maxInFlightBytes && peer !== this.alone && !this.waiting.has(peer)) {
      this.waiting.add(peer);
      peer.wait();
      this.resumeWaiting();
    }
  }

  /** A whole message (or a pong) came out of the peer's socket: ws holds none of its bytes now. */
  delivered(peer: AdmittedPeer): void {
    if (peer === this.alone) this.alone = undefined;
    const held = this.inFlight.get(peer);
    if (!held) return;
    this.inFlightTotal -= held;
    this.inFlight.set(peer, 0);
    this.resumeWaiting();
  }

  get bytesInFlight(): number {
    return this.inFlightTotal;
  }

  private resumeWaiting(): void {
    for (const peer of this.waiting) {
      const over = this.inFlightTotal > this.limits.maxInFlightBytes;
      if (over && this.someoneReading()) return;
      this.waiting.delete(peer);
      peer.resume();
      if (over) {
        this.alone = peer;
        return;
      }
    }
  }

  /** Is a peer that holds bytes in flight still being read (so it can complete its message)? */
  private someoneReading(): boolean {
    for (const [peer, held] of this.inFlight) if (held > 0 && !this.waiting.has(peer)) return true;
    return false;
  }
}
