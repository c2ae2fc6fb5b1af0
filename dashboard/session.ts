import { decode, encode } from '../protocols/codec.ts';
import type { WireError } from '../protocols/errors.ts';
import type { Message, MessageOf, MessageType } from '../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../protocols/version.ts';
import { Requester } from '../lib/transport/requester.ts';

/**
 * The dashboard's workbench session in the browser: the same protocol as lib/workbench/client.ts
 * (challenge, workbenchHello with the token, requests matched by reqId through the same Requester,
 * pushes), over the browser's WebSocket and the same codec and schemas. It dials again after a
 * lost connection; a refused token ends it.
 */

export type SessionState = 'connecting' | 'live' | 'reconnecting' | 'refused' | 'closed';

export interface SessionHandlers {
  /** Pushes: artifactEvent, networkEvent. */
  onPush(message: Message): void;
  /** Each welcome: the first, and again after a reconnection (re-send the watches then). */
  onWelcome(again: boolean): void;
  onState(state: SessionState, error?: WireError | string): void;
}

const REQUEST_TIMEOUT_MS = 60_000;

export class Session {
  private readonly requester = new Requester();
  private ws: WebSocket | undefined;
  private welcomes = 0;
  private stopped = false;
  private failures = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly handlers: SessionHandlers,
  ) {}

  start(): void {
    this.dial();
  }

  private dial(): void {
    if (this.stopped) return;
    this.handlers.onState(this.welcomes > 0 ? 'reconnecting' : 'connecting');
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (e) => {
      if (!(e.data instanceof ArrayBuffer)) return;
      const decoded = decode(new Uint8Array(e.data));
      if (!decoded.ok) return;
      this.receive(decoded.message);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.requester.failAll('the connection to the scheduler closed');
      if (this.stopped) return;
      if (this.welcomes === 0 && this.failures >= 2) {
        // Never welcomed, three times: the scheduler is not there (or closes before any hello).
        this.stopped = true;
        this.handlers.onState('closed', `cannot reach the scheduler at ${this.url}`);
        return;
      }
      const delay = Math.min(10_000, 250 * 2 ** Math.min(this.failures++, 6));
      this.timer = setTimeout(() => this.dial(), delay);
    };
  }

  private receive(m: Message): void {
    if (m.type === 'challenge') {
      this.send({ type: 'workbenchHello', protocolVersion: PROTOCOL_VERSION, token: this.token, name: 'dashboard' });
      return;
    }
    if (m.type === 'welcome') {
      this.failures = 0;
      const again = this.welcomes++ > 0;
      this.handlers.onState('live');
      this.handlers.onWelcome(again);
      return;
    }
    if (this.requester.settle(m)) return;
    if (m.type === 'error') {
      // An error about the session itself: a refused or revoked token ends it.
      if (m.error.code === 'AUTH_FAILED' || m.error.code === 'PROTOCOL_VERSION_MISMATCH') {
        this.stopped = true;
        this.ws?.close();
        this.handlers.onState('refused', m.error);
      }
      return;
    }
    this.handlers.onPush(m);
  }

  private send(m: Message): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encode(m));
    return true;
  }

  /** One request; rejects with an FdlError carrying the scheduler's code. */
  async request<K extends MessageType>(build: (reqId: number) => Message, expect: K): Promise<MessageOf<K>> {
    const reply = await this.requester.request(build, (m) => this.send(m), REQUEST_TIMEOUT_MS);
    if (reply.type !== expect) throw new Error(`expected ${expect}, got ${reply.type}`);
    return reply as MessageOf<K>;
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close(1000, 'bye');
    this.ws = undefined;
    this.handlers.onState('closed');
  }
}
