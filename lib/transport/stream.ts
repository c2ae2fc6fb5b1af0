import { createHash, type Hash } from 'node:crypto';
import { closeSync, fdatasync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { type WireError, wireError } from '../../protocols/errors.ts';
import { CHUNK_HEADER_BYTES, encodeChunkInto } from '../../protocols/chunk-frame.ts';
import type { MessageOf } from '../../protocols/messages.ts';
import { FdlError } from '../errors.ts';

/**
 * Streamed resources (docs/PROTOCOL.md, "Streamed resources"): a resource over the stream
 * threshold moves as `resourceChunk` frames. The sender keeps at most a window of chunks that the
 * socket has not taken yet (the send callback), so a resource is never queued whole on a socket;
 * the receiver checks each chunk's crc32, writes it at its offset in a file and hashes it into the
 * whole resource's sha256, which it checks when the last byte is in. Both sides are one place
 * here; the nodes differ only in where the bytes come from and where the finished file goes.
 */

/** Chunks the sender may have handed to a socket that the socket has not written yet. */
export const STREAM_WINDOW_CHUNKS = 8;
/** A receiver refusing this many chunks in a row gives the transfer up (a peer that keeps corrupting). */
export const MAX_REFUSED_CHUNKS = 8;
const REHASH_BYTES = 1024 * 1024;
/** A durable sink starts a background flush every this many bytes written. */
const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;

export function crc32Of(bytes: Uint8Array): number {
  return crc32(bytes) >>> 0;
}

/** Where a stream's bytes come from: read by position into a buffer, synchronously (files are in the page cache or close to it). */
export interface ByteSource {
  readonly size: number;
  readInto(offset: number, length: number, target: Buffer, at: number): void;
  close(): void;
  /** The whole's sha256, for a source that makes it as it is read (a product offered by an upload name). */
  digest?(): string;
}

export function bufferSource(bytes: Uint8Array): ByteSource {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { size: bytes.byteLength, readInto: (offset, length, target, at) => void b.copy(target, at, offset, offset + length), close: () => {} };
}

/** A file's bytes [start, start + size); its descriptor is opened at the first read and closed by `close`. */
export function fileSource(path: string, size?: number, start = 0): ByteSource {
  let fd: number | undefined;
  const total = size ?? fstatSize(path) - start;
  return {
    size: total,
    readInto(offset, length, target, at) {
      fd ??= openSync(path, 'r');
      let got = 0;
      while (got < length) {
        const n = readSync(fd, target, at + got, length - got, start + offset + got);
        if (n === 0) throw new FdlError('UNKNOWN_RESOURCE', `${path} ended at ${start + offset + got} bytes, short of ${start + total}`);
        got += n;
      }
    },
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

function fstatSize(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** The sha256 of a file's bytes, read in pieces (never whole in memory). */
export function sha256OfFile(path: string): string {
  const hash = createHash('sha256');
  feedFile(hash, path, Number.POSITIVE_INFINITY);
  return hash.digest('hex');
}

function feedFile(hash: Hash, path: string, upTo: number): number {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(REHASH_BYTES);
    let pos = 0;
    while (pos < upTo) {
      const n = readSync(fd, buf, 0, Math.min(REHASH_BYTES, upTo - pos), pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
    return pos;
  } finally {
    closeSync(fd);
  }
}

/** What a sender needs of a link: an encoded frame's send, whose callback says the socket took it. */
export interface ChunkLink {
  /**
   * False: the link is down (the callback may then never come). The callback without an error
   * says the link is done with `frame` (written to the socket): the sender fills it again.
   */
  sendFrame(frame: Uint8Array, cb: (err?: Error) => void): unknown;
}

/**
 * Sends `source` (whose whole sha256 is `resource`) as resourceChunk frames from an offset, at
 * most STREAM_WINDOW_CHUNKS not yet written by the socket. `stop` ends it (a re-ask restarts it
 * from the new offset; a closed link ends it: the receiver asks again after reconnecting).
 */
export class ChunkSender {
  private next = 0;
  private inFlight = 0;
  private stopped = false;
  /**
   * Whole-chunk frames the socket has written (their callbacks came), to be filled again: a
   * transfer allocates at most its window of frames instead of a fresh 1 MiB buffer per chunk
   * (each one garbage for the collector, and fresh pages for the kernel to fault in).
   */
  private readonly spare: Buffer[] = [];
  /** Bytes sent by this sender (a resumed one starts at its offset): tests and logs. */
  sent = 0;

  constructor(
    private readonly link: ChunkLink,
    readonly resource: string,
    private readonly source: ByteSource,
    private readonly chunkBytes: number,
    private readonly onEnd: (result: { ok: boolean; error?: Error }) => void = () => {},
  ) {}

  start(offset: number): this {
    this.next = Math.min(offset, this.source.size);
    this.pump();
    return this;
  }

  stop(): void {
    this.stopped = true;
  }

  get done(): boolean {
    return this.stopped;
  }

  private pump(): void {
    while (!this.stopped && this.inFlight < STREAM_WINDOW_CHUNKS && this.next < this.source.size) {
      const offset = this.next;
      const length = Math.min(this.chunkBytes, this.source.size - offset);
      // The bytes are read straight into the frame (no copy to encode); a whole chunk's frame is
      // one the socket is done with when there is one.
      const whole = length === this.chunkBytes;
      const frame = (whole && this.spare.pop()) || Buffer.allocUnsafe(CHUNK_HEADER_BYTES + length);
      try {
        this.source.readInto(offset, length, frame, CHUNK_HEADER_BYTES);
      } catch (e) {
        this.end({ ok: false, error: e as Error });
        return;
      }
      encodeChunkInto(frame, this.resource, offset, crc32Of(frame.subarray(CHUNK_HEADER_BYTES)));
      this.next += length;
      this.inFlight++;
      const accepted = this.link.sendFrame(frame, (err) => {
        this.inFlight--;
        if (err) {
          this.end({ ok: false, error: err });
          return;
        }
        // The callback says the socket has written the frame: its buffer is free again.
        if (whole && this.spare.length < STREAM_WINDOW_CHUNKS) this.spare.push(frame);
        this.pump();
      });
      if (accepted === false) {
        // The link is down (its callback may never come): the receiver will ask again.
        this.end({ ok: false, error: new Error('the link closed') });
        return;
      }
      this.sent += length;
    }
    if (!this.stopped && this.inFlight === 0 && this.next >= this.source.size) this.end({ ok: true });
  }

  private end(result: { ok: boolean; error?: Error }): void {
    if (this.stopped) return;
    this.stopped = true;
    this.onEnd(result);
  }
}

export type SinkResult =
  | { kind: 'ok' }
  /** Not the offset expected (a chunk sent before a re-ask): dropped without a word. */
  | { kind: 'stale' }
  /** A chunk that failed its crc32: refuse it and ask again from `offset`. `gaveUp`: too many in a row. */
  | { kind: 'refused'; error: WireError; offset: number; gaveUp: boolean }
  /**
   * Every byte is in and the whole matches its sha256: the file is complete (and fsynced when
   * durable). `wallMs`/`cpuMs`: since the sink was opened, the process's whole CPU (for logs and the bench).
   */
  | {
      kind: 'done';
      path: string;
      /** The sha256 the bytes received were checked against (a sink that opens them: of the bytes as offered). */
      sha256: string;
      wallMs: number;
      cpuMs: number;
      /** The file holds the resource opened (its plaintext, lib/transport/opening-sink.ts), not its bytes as offered. */
      opened?: boolean;
    }
  /** Every byte is in but the whole does not match: the partial file is removed (start again from 0). */
  | { kind: 'corrupt'; error: WireError };

/** What receives one streamed resource's chunks at a download's end (lib/transport/downloads.ts). */
export interface DownloadSink {
  /** The resource's sha256 (of its bytes as offered). */
  readonly resource: string;
  readonly size: number;
  /** The next byte expected: what a re-ask asks from. */
  readonly offset: number;
  /** The offset the sink started from when it was opened (> 0: resumed from what an earlier transfer left). */
  readonly resumedFrom: number;
  accept(m: MessageOf<'resourceChunk'>): SinkResult;
  /** Every byte is in: checks the whole ('done' or 'corrupt'); 'stale' when bytes are missing. */
  finish(): SinkResult;
  /** Closes its files, keeping what they hold (a later transfer resumes from them). */
  close(): void;
  /** Closes and removes its files. */
  discard(): void;
}

/**
 * A chunk's own checks (its crc32, that it has bytes and stays inside the resource), and how many
 * chunks were refused in a row: one place for every sink.
 */
export class Refusals {
  private inARow = 0;

  /** The refusal of a chunk that fails its checks (asking again from its offset), or undefined when it passes. */
  check(m: MessageOf<'resourceChunk'>, size: number): Extract<SinkResult, { kind: 'refused' }> | undefined {
    if (crc32Of(m.data) === m.crc32 && m.offset + m.data.byteLength <= size && m.data.byteLength > 0) {
      this.inARow = 0;
      return undefined;
    }
    this.inARow++;
    const what = m.offset + m.data.byteLength > size ? `runs past the resource's ${size} bytes` : 'does not match its crc32';
    return {
      kind: 'refused',
      error: wireError('CHUNK_CORRUPT', `chunk at offset ${m.offset} (${m.data.byteLength} bytes) of resource ${m.resource} ${what}`),
      offset: m.offset,
      gaveUp: this.inARow > MAX_REFUSED_CHUNKS,
    };
  }
}

/**
 * The receiving end of one streamed resource: a file written at each chunk's offset as it
 * arrives, with the sha256 of what it holds kept up to date. Opened over a partial file left by
 * an earlier transfer (a cut socket, a restart), it rehashes that prefix and resumes after it: the
 * receiver says which offset it has, the sender goes on from there.
 */
export class ChunkSink implements DownloadSink {
  private fd: number | undefined;
  private hash: Hash;
  /** The whole's sha256, once every byte is in. */
  private digest: string | undefined;
  /** The sha256 the whole must have, once known. */
  private expected: string | undefined;
  private readonly refusals = new Refusals();
  /** Durable sinks: bytes written since the last flush was started, and whether one is running. */
  private unflushed = 0;
  private flushing = false;
  private closeAfterFlush: number | undefined;
  offset: number;
  /** The offset the sink started from when it was opened (resume tests assert on it). */
  readonly resumedFrom: number;
  private readonly openedAt = performance.now();
  private readonly cpuAtOpen = process.cpuUsage();

  constructor(
    readonly path: string,
    readonly resource: string,
    readonly size: number,
    /**
     * The scheduler's store: the file is fsynced before 'done' (its row may then be written). To
     * overlap that with the transfer, every FLUSH_EVERY_BYTES a flush runs off the event loop, so
     * the final fsync has only the tail left. A download (a worker's input, a workbench's result)
     * is not: after a crash its whole sha256 is checked again anyway.
     */
    private readonly durable = false,
    /**
     * True: the whole's sha256 is not the resource's name but told at the end (`expect`: an upload
     * whose producer names it in `productDigest`); false: it is `resource`.
     */
    digestAtEnd = false,
  ) {
    this.expected = digestAtEnd ? undefined : resource;
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'a+');
    let have = fstatSync(this.fd).size;
    this.hash = createHash('sha256');
    if (have > size) {
      ftruncateSync(this.fd, 0);
      have = 0;
    }
    // What an earlier transfer left: every byte of it was a checked chunk (a power cut may have
    // left garbage at its end; the whole sha256 then fails and the transfer starts again from 0).
    this.offset = have > 0 ? feedFile(this.hash, path, have) : 0;
    this.resumedFrom = this.offset;
    closeSync(this.fd);
    this.fd = openSync(path, 'r+');
  }

  accept(m: MessageOf<'resourceChunk'>): SinkResult {
    if (this.fd === undefined || m.offset !== this.offset) return { kind: 'stale' };
    const refused = this.refusals.check(m, this.size);
    if (refused) return refused;
    for (let written = 0; written < m.data.byteLength; ) {
      written += writeSync(this.fd, m.data, written, m.data.byteLength - written, m.offset + written);
    }
    this.hash.update(m.data);
    this.offset += m.data.byteLength;
    this.unflushed += m.data.byteLength;
    if (this.durable && this.unflushed >= FLUSH_EVERY_BYTES && !this.flushing) this.flushInBackground(this.fd);
    return this.offset < this.size ? { kind: 'ok' } : this.finish();
  }

  private flushInBackground(fd: number): void {
    this.flushing = true;
    this.unflushed = 0;
    fdatasync(fd, () => {
      // An error here is found again by the final fsync, which is synchronous and throws.
      this.flushing = false;
      if (this.closeAfterFlush !== undefined) closeSync(this.closeAfterFlush);
      this.closeAfterFlush = undefined;
    });
  }

  /** The sha256 the whole must have, told after the sink was opened (`productDigest`); a second, other one is ignored. */
  expect(sha256: string): void {
    this.expected ??= sha256;
  }

  /**
   * Every byte is in (the last chunk, or a file that was already whole when opened): checks the
   * whole. 'ok' while the sha256 it must have is not known yet (`expect` then `finish` again).
   */
  finish(): SinkResult {
    if (this.fd === undefined || this.offset !== this.size) return { kind: 'stale' };
    this.digest ??= this.hash.digest('hex');
    if (this.expected === undefined) return { kind: 'ok' };
    if (this.digest !== this.expected) {
      const named = this.expected === this.resource ? '' : ` (named ${this.expected} by its producer)`;
      this.discard();
      return {
        kind: 'corrupt',
        error: wireError('CHECKSUM_MISMATCH', `resource ${this.resource} arrived whole as ${this.digest}${named}: it does not match its sha256`),
      };
    }
    if (this.durable) fsyncSync(this.fd);
    this.close();
    const cpu = process.cpuUsage(this.cpuAtOpen);
    return { kind: 'done', path: this.path, sha256: this.digest, wallMs: performance.now() - this.openedAt, cpuMs: (cpu.user + cpu.system) / 1000 };
  }

  /** Closes the file, keeping what it holds (a later transfer resumes from it). */
  close(): void {
    if (this.fd === undefined) return;
    // A background flush still uses the descriptor: it is closed when that flush ends.
    if (this.flushing) this.closeAfterFlush = this.fd;
    else closeSync(this.fd);
    this.fd = undefined;
  }

  /** Closes and removes the file. */
  discard(): void {
    this.close();
    rmSync(this.path, { force: true });
  }
}

/** The error a resource over the configured maximum is refused with: it names both sizes. */
export function tooLarge(what: string, size: number, max: number): FdlError {
  return new FdlError(
    'RESOURCE_TOO_LARGE',
    `${what} is ${size} bytes (${formatBytes(size)}), over this scheduler's limit of ${max} bytes (${formatBytes(max)}, store.max_resource_bytes)`,
    { retryable: false },
  );
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/**
 * A worker's products offered to the scheduler and not yet forgotten, by name (their sha256, or
 * the upload name of an offer that names its sha256 at the end): the scheduler answers an offer
 * (and a refused chunk) with `resourceWant`, and the bytes are sent from the offset it names. The
 * newest `keep` stay (a repeated assignment re-offers its product; the scheduler then resumes after
 * what it holds).
 */
export class OfferedResources {
  private readonly bySha = new Map<string, { source: ByteSource; sender?: ChunkSender; whole?: (() => void) | undefined }>();

  constructor(
    private readonly link: ChunkLink,
    private readonly chunkBytes: number,
    private readonly keep = 16,
  ) {}

  /** `whole`: called each time a sender has had every byte written (an upload that names its sha256 at the end then names it). */
  add(sha256: string, source: ByteSource, whole?: () => void): void {
    this.bySha.get(sha256)?.sender?.stop();
    this.bySha.delete(sha256);
    this.bySha.set(sha256, { source, whole });
    for (const [sha, o] of this.bySha) {
      if (this.bySha.size <= this.keep) break;
      o.sender?.stop();
      o.source.close();
      this.bySha.delete(sha);
    }
  }

  /** Starts (or restarts) sending `sha256` from `offset`; false when it is not offered here (any more). */
  want(sha256: string, offset: number): ChunkSender | undefined {
    const o = this.bySha.get(sha256);
    if (!o) return undefined;
    o.sender?.stop();
    o.sender = new ChunkSender(this.link, sha256, o.source, this.chunkBytes, (r) => {
      if (r.ok) o.whole?.();
    });
    return o.sender.start(offset);
  }
}
