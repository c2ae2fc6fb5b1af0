import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Message, MessageOf } from '../../protocols/messages.ts';
import { FdlError } from '../errors.ts';
import { sha256Hex } from '../store/blobs.ts';
import { OpeningSink, type OpenAs } from './opening-sink.ts';
import { ChunkSink, type DownloadSink } from './stream.ts';

/**
 * The receiving end of resource downloads from the scheduler, for a worker (its Collector's large
 * inputs) and a workbench (`getResult`). A download asks with its own request id; the reply
 * (`resourceData` / `result`) carries the bytes when small, or says chunks follow: they are written
 * to `<dir>/<sha256>.part` as they arrive (ChunkSink), and the file is renamed whole when its sha256
 * checks. A refused chunk, a lost connection or a restart is resumed from what the file holds:
 * the request is sent again with that offset. A download asked to be opened (`open`, a worker's
 * sealed input) keeps only the opened plaintext (OpeningSink), renamed `<sha256>.open`. Must be
 * fed every message of the link before anything else sees it (`onMessage`, synchronously: chunks
 * follow their header in the same read).
 */

/** Request ids of downloads start here, apart from the other requests on the same link (which count from 1). */
const FIRST_REQ_ID = 2 ** 40;

export interface Downloaded {
  /** The finished file (the resource's bytes), checked against its sha256. */
  path: string;
  sha256: string;
  size: number;
  /** The offset the chunks started from at the first reply (> 0: resumed from an earlier partial file). */
  resumedFrom: number;
  /** True: `path` holds the resource opened (a segmented envelope's plaintext, every segment authenticated), not its bytes. */
  opened?: boolean;
  /** With `inMemory`, a resource small enough to come in one frame: its bytes (and no file). */
  bytes?: Uint8Array;
  /** The last reply that announced the bytes (its other fields: a result's provenance, say). */
  header?: MessageOf<'resourceData'> | MessageOf<'result'>;
}

interface Download {
  build(reqId: number, offset: number): Message;
  target: string | undefined;
  inMemory: boolean;
  reqId: number;
  sink?: DownloadSink;
  resumedFrom?: number | undefined;
  header?: MessageOf<'resourceData'> | MessageOf<'result'>;
  /** Open a segmented envelope as it arrives, for this node (only the plaintext is written). */
  open?: OpenAs | undefined;
  resolve(d: Downloaded): void;
  reject(e: Error): void;
  timer?: NodeJS.Timeout;
}

export class Downloads {
  private nextReqId = FIRST_REQ_ID;
  private readonly byReq = new Map<number, Download>();
  private readonly bySha = new Map<string, Download>();
  /** Downloads by the sha256 their caller expects: a second fetch of the same bytes joins the first. */
  private readonly expected = new Map<string, Promise<Downloaded>>();
  /** Chunks refused and asked again (tests read it). */
  refused = 0;

  constructor(
    private readonly dir: string,
    private readonly send: (m: Message) => boolean,
    private readonly opts: { stallMs?: number; onRefused?: (message: string) => void; onResume?: (offset: number) => void } = {},
  ) {
    mkdirSync(dir, { recursive: true });
  }

  /**
   * Downloads one resource: `build` makes the request for a request id and an offset. Resolves
   * with the finished file (at `target` when given, else in the folder under its sha256).
   */
  fetch(
    build: (reqId: number, offset: number) => Message,
    opts: { target?: string; sha256?: string; inMemory?: boolean; open?: OpenAs | undefined } = {},
  ): Promise<Downloaded> {
    const { sha256, target } = opts;
    // Opened as it arrives: only into the folder (a target is a workbench's file, kept as sent).
    const open = target ? undefined : opts.open;
    if (sha256 && !target) {
      const joined = this.expected.get(sha256);
      if (joined) return joined;
      // Fetched whole before (its sha256 checked then): the file is the resource, or its opening.
      const opened = join(this.dir, `${sha256}.open`);
      if (open && existsSync(opened)) return Promise.resolve({ path: opened, sha256, size: statSync(opened).size, resumedFrom: 0, opened: true });
      const done = join(this.dir, `${sha256}.bin`);
      if (existsSync(done)) return Promise.resolve({ path: done, sha256, size: statSync(done).size, resumedFrom: 0 });
    }
    const p = new Promise<Downloaded>((resolve, reject) => {
      const d: Download = { build, target, inMemory: opts.inMemory ?? false, reqId: 0, open, resolve, reject };
      this.ask(d, 0);
    });
    if (sha256 && !target) {
      this.expected.set(sha256, p);
      const forget = () => this.expected.delete(sha256);
      p.then(forget, forget);
    }
    return p;
  }

  private ask(d: Download, offset: number): void {
    this.byReq.delete(d.reqId);
    d.reqId = this.nextReqId++;
    this.byReq.set(d.reqId, d);
    this.arm(d);
    // Not connected: asked again by `reconnected`.
    this.send(d.build(d.reqId, offset));
  }

  /** A download with no news for stallMs fails (the link is there but the bytes do not come). */
  private arm(d: Download): void {
    if (!this.opts.stallMs) return;
    clearTimeout(d.timer);
    d.timer = setTimeout(() => this.fail(d, new FdlError('INTERNAL', `no bytes of the download for ${this.opts.stallMs} ms`)), this.opts.stallMs);
    d.timer.unref();
  }

  private forget(d: Download): void {
    clearTimeout(d.timer);
    this.byReq.delete(d.reqId);
    if (d.sink && this.bySha.get(d.sink.resource) === d) this.bySha.delete(d.sink.resource);
  }

  private fail(d: Download, e: Error): void {
    this.forget(d);
    d.sink?.close();
    d.reject(e);
  }

  /** `size`: the resource's (as offered); an opened file is the plaintext, of its own size. */
  private finish(d: Download, path: string, sha256: string, size: number, opened = false): void {
    this.forget(d);
    const final = d.target ?? join(this.dir, `${sha256}.${opened ? 'open' : 'bin'}`);
    if (path !== final) renameSync(path, final);
    d.resolve({
      path: final,
      sha256,
      size: opened ? statSync(final).size : size,
      resumedFrom: d.resumedFrom ?? 0,
      ...(opened ? { opened } : {}),
      ...(d.header ? { header: d.header } : {}),
    });
  }

  /** The link is back: every unfinished download asks again from what it holds. */
  reconnected(): void {
    for (const d of [...this.byReq.values()]) {
      const offset = d.sink?.offset ?? 0;
      if (offset > 0) this.opts.onResume?.(offset);
      this.ask(d, offset);
    }
  }

  /** True when the message was a download's (the caller passes it on otherwise). */
  onMessage(m: Message): boolean {
    if (m.type === 'resourceChunk') return this.onChunk(m);
    const reqId = (m as { reqId?: number }).reqId;
    if (reqId === undefined || reqId < FIRST_REQ_ID) return false;
    const d = this.byReq.get(reqId);
    if (!d) return true; // an old request's late reply
    if (m.type === 'error') {
      this.fail(d, new FdlError(m.error.code, m.error.message, { retryable: m.error.retryable }));
      return true;
    }
    if (m.type !== 'resourceData' && m.type !== 'result') return true;
    this.onHeader(d, m);
    return true;
  }

  private onHeader(d: Download, m: MessageOf<'resourceData'> | MessageOf<'result'>): void {
    this.arm(d);
    d.header = m;
    if (m.data) {
      if (sha256Hex(m.data) !== m.sha256) {
        this.fail(d, new FdlError('CHECKSUM_MISMATCH', `resource ${m.resourceId} arrived corrupted`));
        return;
      }
      if (d.inMemory) {
        this.forget(d);
        d.sink?.close();
        d.resolve({ path: '', sha256: m.sha256, size: m.size, resumedFrom: 0, bytes: m.data, header: m });
        return;
      }
      const tmp = d.target ? `${d.target}.${m.sha256}.part` : join(this.dir, `${m.sha256}.part`);
      writeFileSync(tmp, m.data);
      d.sink?.close();
      d.resumedFrom = 0;
      this.finish(d, tmp, m.sha256, m.size);
      return;
    }
    if (d.sink && d.sink.resource !== m.sha256) {
      d.sink.close();
      d.sink = undefined;
    }
    if (!d.sink) {
      const other = this.bySha.get(m.sha256);
      if (other && other !== d) {
        this.fail(d, new FdlError('INTERNAL', `resource ${m.sha256} is already being downloaded`));
        return;
      }
      try {
        // Beside its target (same file system: the rename is atomic), or in the folder.
        d.sink = d.open
          ? new OpeningSink(this.dir, m.sha256, m.size, d.open)
          : new ChunkSink(d.target ? `${d.target}.${m.sha256}.part` : join(this.dir, `${m.sha256}.part`), m.sha256, m.size);
      } catch (e) {
        this.fail(d, new FdlError('STORE_WRITE_FAILED', `cannot write the download of ${m.resourceId}: ${(e as Error).message}`));
        return;
      }
      this.bySha.set(m.sha256, d);
    }
    d.resumedFrom ??= d.sink.resumedFrom;
    // An empty resource, or one whose file was already whole: nothing will come.
    if (d.sink.offset === m.size) {
      const done = d.sink.finish();
      if (done.kind === 'done') {
        this.finish(d, done.path, m.sha256, m.size, done.opened);
        return;
      }
      if (done.kind === 'corrupt') {
        // The partial file was not these bytes: it is gone; start again from 0.
        this.bySha.delete(m.sha256);
        d.sink = undefined;
        d.resumedFrom = undefined;
        this.ask(d, 0);
        return;
      }
    }
    if ((m.offset ?? 0) !== d.sink.offset) this.ask(d, d.sink.offset);
  }

  private onChunk(m: MessageOf<'resourceChunk'>): boolean {
    const d = this.bySha.get(m.resource);
    if (!d?.sink) return true;
    this.arm(d);
    const r = d.sink.accept(m);
    switch (r.kind) {
      case 'ok':
      case 'stale':
        return true;
      case 'refused':
        this.refused++;
        this.opts.onRefused?.(r.error.message);
        if (r.gaveUp) this.fail(d, new FdlError(r.error.code, `${r.error.message}; too many corrupt chunks in a row, giving up`));
        else this.ask(d, r.offset);
        return true;
      case 'corrupt':
        this.fail(d, new FdlError(r.error.code, r.error.message, { retryable: r.error.retryable }));
        return true;
      case 'done':
        this.finish(d, r.path, d.sink.resource, d.sink.size, r.opened);
        return true;
    }
  }
}
