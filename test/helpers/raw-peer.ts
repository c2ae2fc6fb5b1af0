import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { decode } from '../../protocols/codec.ts';
import type { Message, MessageOf } from '../../protocols/messages.ts';

const packr = new Packr({ useRecords: false });

/** A peer under the test's full control: sends whatever bytes it likes and reads replies one at a time. */
export class RawPeer {
  readonly ws: WebSocket;
  private readonly inbox: Message[] = [];
  private waiting: ((m: Message) => void) | undefined;
  readonly closed: Promise<number>;
  challenge: MessageOf<'challenge'> | undefined;

  constructor(url: string, opts: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, { perMessageDeflate: false, ...opts });
    this.ws.on('message', (data) => {
      const d = decode(data as Buffer);
      if (!d.ok) throw new Error(`the scheduler sent a bad frame: ${d.error.message}`);
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(d.message);
      } else this.inbox.push(d.message);
    });
    this.ws.on('error', () => {});
    this.closed = new Promise((resolve) => this.ws.on('close', (code) => resolve(code)));
  }

  /** Resolves once open and the scheduler's challenge (always the first frame) has arrived. */
  async open(): Promise<MessageOf<'challenge'>> {
    await new Promise<void>((resolve) => this.ws.once('open', () => resolve()));
    const challenge = await this.next();
    if (challenge.type !== 'challenge') throw new Error(`expected a challenge first, got ${challenge.type}`);
    this.challenge = challenge;
    return challenge;
  }

  next(): Promise<Message> {
    const m = this.inbox.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  raw(bytes: Uint8Array | string): void {
    this.ws.send(bytes, { binary: typeof bytes !== 'string' });
  }

  msg(value: unknown): void {
    this.raw(packr.pack(value));
  }
}
