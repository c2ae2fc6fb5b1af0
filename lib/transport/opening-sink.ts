import { createHash, type Hash, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type WireError, wireError } from '../../protocols/errors.ts';
import type { MessageOf } from '../../protocols/messages.ts';
import { FdlError, toWireError } from '../errors.ts';
import {
  ctLength,
  parseLead,
  type SegmentedHead,
  segmentCount,
  segmentOpener,
  segmentSealer,
  TAG_BYTES,
  unwrapKey,
} from '../security/seal.ts';
import { ChunkSink, crc32Of, type DownloadSink, Refusals, type SinkResult } from './stream.ts';

/** Whom a sealed download is opened for, and what it is bound to (lib/security/seal.ts). */
export interface OpenAs {
  me: { nodeId: string; boxPrivate: KeyObject };
  /** The producing job's context (`resourceContext`), authenticated by every segment. */
  context: string;
}

/**
 * The receiving end of a download that is opened as it arrives: a segmented envelope
 * (docs/PROTOCOL.md, "Sealed resources") is decrypted a segment at a time as its chunks come, and
 * only the plaintext is written; the sealed bytes are hashed as they pass (the whole sha256 of the
 * resource as offered is checked before 'done', as for any download) and never written.
 *
 * Files in the folder, by the resource's sha256: `<sha256>.lead` (the envelope's bytes before
 * `ct`: prefix and head, a few hundred bytes) and `<sha256>.open.part` (the plaintext of the whole
 * segments opened so far). Resuming (a cut socket keeps the object; a restart opens these files):
 * the prefix of whole segments is sealed again with the content key and each segment's nonce (AES-GCM
 * is deterministic under both), which gives back the very sealed bytes that were received, so the
 * running sha256 and the offset are those of the sealed stream at that segment boundary. A plaintext
 * changed at rest reseals to other bytes: the whole sha256 fails and the download starts again from 0.
 *
 * Bytes that are not a segmented envelope (a whole envelope, or plain bytes) are received as any
 * download (a `ChunkSink` writing `<sha256>.part`), and opened by the caller from that file.
 */
export class OpeningSink implements DownloadSink {
  private offsetNow = 0;
  readonly resumedFrom: number;
  private raw: ChunkSink | undefined;
  private readonly refusals = new Refusals();
  private hash: Hash = createHash('sha256');
  /** Before the head is known: the bytes received so far. */
  private lead: Buffer = Buffer.alloc(0);
  private opening:
    | {
        head: SegmentedHead;
        ctStart: number;
        /** Sealed bytes of `ct` in all. */
        ct: number;
        count: number;
        open: (index: number, sealed: Uint8Array) => Buffer;
        /** The segment being received (sealed), and how many of its bytes are in. */
        segment: Buffer;
        filled: number;
        /** The next segment to open. */
        index: number;
        fd: number | undefined;
      }
    | undefined;
  private closed = false;
  private readonly leadPath: string;
  private readonly plainPath: string;
  private readonly rawPath: string;
  private readonly openedAt = performance.now();
  private readonly cpuAtOpen = process.cpuUsage();

  constructor(
    dir: string,
    readonly resource: string,
    readonly size: number,
    private readonly as: OpenAs,
  ) {
    mkdirSync(dir, { recursive: true });
    this.leadPath = join(dir, `${resource}.lead`);
    this.plainPath = join(dir, `${resource}.open.part`);
    this.rawPath = join(dir, `${resource}.part`);
    if (existsSync(this.leadPath)) {
      try {
        this.resume();
      } catch {
        // What an earlier transfer left cannot be followed (a lead cut short, another size): start again.
        this.closeFd();
        this.opening = undefined;
        this.hash = createHash('sha256');
        this.offsetNow = 0;
        rmSync(this.leadPath, { force: true });
        rmSync(this.plainPath, { force: true });
      }
    } else if (existsSync(this.rawPath)) {
      this.raw = new ChunkSink(this.rawPath, resource, size);
    }
    this.resumedFrom = this.offset;
  }

  get offset(): number {
    return this.raw ? this.raw.offset : this.offsetNow;
  }

  /** Resumes after the whole segments an earlier transfer opened, sealing them again to rehash them. */
  private resume(): void {
    const lead = readFileSync(this.leadPath);
    const parsed = parseLead(lead);
    if (parsed === 'not' || 'need' in parsed || parsed.ctStart !== lead.byteLength) throw new Error('not a whole lead');
    const o = this.begin(lead, parsed, 'r+');
    const { head } = o;
    const fd = o.fd as number;
    const have = fstatSync(fd).size;
    const whole = have === head.size ? o.count : Math.min(Math.floor(have / head.chunk), o.count - 1);
    ftruncateSync(fd, Math.min(whole * head.chunk, head.size));
    const seal = segmentSealer(head, this.key(head), this.as.context);
    const plain = Buffer.allocUnsafe(Math.min(head.chunk, Math.max(head.size, 1)));
    const sealed = Buffer.allocUnsafe(plain.byteLength + TAG_BYTES);
    for (let i = 0; i < whole; i++) {
      const length = Math.min(head.chunk, head.size - i * head.chunk);
      for (let got = 0; got < length; ) {
        const n = readSync(fd, plain, got, length - got, i * head.chunk + got);
        if (n === 0) throw new Error('the plaintext ended early');
        got += n;
      }
      this.hash.update(seal(i, plain.subarray(0, length), sealed));
    }
    o.index = whole;
    this.offsetNow = parsed.ctStart + Math.min(whole * (head.chunk + TAG_BYTES), parsed.ct);
  }

  private key(head: SegmentedHead): Buffer {
    return unwrapKey(head.epk, head.keys, this.as.me.nodeId, this.as.me.boxPrivate, this.as.context);
  }

  /** The head is known: the plaintext file is opened (flags 'w' fresh, 'r+' resumed) and the lead hashed. */
  private begin(lead: Buffer, parsed: { head: SegmentedHead; ctStart: number; ct: number }, flags: 'w' | 'r+'): NonNullable<OpeningSink['opening']> {
    const { head, ctStart, ct } = parsed;
    if (ctStart + ct !== this.size) {
      throw new FdlError('CHECKSUM_MISMATCH', `a sealed input says ${ctStart + ct} bytes, not the ${this.size} offered`);
    }
    const open = segmentOpener(head, this.key(head), this.as.context);
    if (flags === 'w') writeFileSync(this.leadPath, lead);
    const fd = openSync(this.plainPath, flags === 'r+' && !existsSync(this.plainPath) ? 'w+' : flags);
    this.hash.update(lead);
    this.opening = {
      head,
      ctStart,
      ct,
      count: segmentCount(head),
      open,
      segment: Buffer.allocUnsafe(Math.min(head.chunk + TAG_BYTES, ctLength(head))),
      filled: 0,
      index: 0,
      fd,
    };
    return this.opening;
  }

  accept(m: MessageOf<'resourceChunk'>): SinkResult {
    if (this.raw) return this.raw.accept(m);
    if (this.closed || m.offset !== this.offsetNow) return { kind: 'stale' };
    const refused = this.refusals.check(m, this.size);
    if (refused) return refused;
    try {
      if (this.opening) return this.take(m.data);
      const lead = Buffer.concat([this.lead, m.data]);
      const parsed = parseLead(lead);
      if (parsed === 'not') {
        // Not a segmented envelope: received as it is, into a file the caller opens.
        this.lead = Buffer.alloc(0);
        rmSync(this.rawPath, { force: true });
        this.raw = new ChunkSink(this.rawPath, this.resource, this.size);
        return this.raw.accept({ ...m, offset: 0, data: lead, crc32: crc32Of(lead) });
      }
      if ('need' in parsed) {
        if (lead.byteLength >= this.size) return this.corrupt(wireError('CHECKSUM_MISMATCH', `a sealed input of ${this.size} bytes ends inside its head`));
        this.lead = lead;
        this.offsetNow += m.data.byteLength;
        return { kind: 'ok' };
      }
      this.lead = Buffer.alloc(0);
      this.begin(lead.subarray(0, parsed.ctStart), parsed, 'w');
      this.offsetNow = parsed.ctStart;
      return this.take(lead.subarray(parsed.ctStart));
    } catch (e) {
      // A segment or head that fails says CHECKSUM_MISMATCH (or OPERATION_FAILED: not sealed for
      // this node); anything else is the plaintext's file (a full disk, say).
      return this.corrupt(toWireError(e, 'STORE_WRITE_FAILED'));
    }
  }

  /** Sealed bytes of `ct`, in order: hashed, and each segment opened and its plaintext written when whole. */
  private take(data: Uint8Array): SinkResult {
    const o = this.opening as NonNullable<OpeningSink['opening']>;
    this.hash.update(data);
    this.offsetNow += data.byteLength;
    for (let at = 0; at < data.byteLength; ) {
      // Every segment is chunk + tag sealed bytes but the last, which is what is left of `ct`.
      const length = o.index < o.count - 1 ? o.head.chunk + TAG_BYTES : o.ct - o.index * (o.head.chunk + TAG_BYTES);
      const want = Math.min(length - o.filled, data.byteLength - at);
      o.segment.set(data.subarray(at, at + want), o.filled);
      o.filled += want;
      at += want;
      if (o.filled < length) continue;
      const plain = o.open(o.index, o.segment.subarray(0, length));
      const position = o.index * o.head.chunk;
      for (let w = 0; w < plain.byteLength; ) w += writeSync(o.fd as number, plain, w, plain.byteLength - w, position + w);
      o.index++;
      o.filled = 0;
    }
    return this.offsetNow < this.size ? { kind: 'ok' } : this.finish();
  }

  finish(): SinkResult {
    if (this.raw) return this.raw.finish();
    const o = this.opening;
    if (this.closed || !o || this.offsetNow !== this.size || o.index !== o.count) return { kind: 'stale' };
    const digest = this.hash.digest('hex');
    if (digest !== this.resource) {
      return this.corrupt(wireError('CHECKSUM_MISMATCH', `resource ${this.resource} arrived whole as ${digest}: it does not match its sha256`));
    }
    this.close();
    rmSync(this.leadPath, { force: true });
    const cpu = process.cpuUsage(this.cpuAtOpen);
    return { kind: 'done', path: this.plainPath, sha256: this.resource, wallMs: performance.now() - this.openedAt, cpuMs: (cpu.user + cpu.system) / 1000, opened: true };
  }

  private corrupt(error: WireError): SinkResult {
    this.discard();
    return { kind: 'corrupt', error };
  }

  private closeFd(): void {
    if (this.opening?.fd !== undefined) closeSync(this.opening.fd);
    if (this.opening) this.opening.fd = undefined;
  }

  close(): void {
    this.raw?.close();
    this.closeFd();
    this.closed = true;
  }

  discard(): void {
    this.close();
    this.raw?.discard();
    rmSync(this.leadPath, { force: true });
    rmSync(this.plainPath, { force: true });
  }
}
