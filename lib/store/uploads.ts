import { join } from 'node:path';
import { readdirSync, rmSync, statSync } from 'node:fs';
import type { MessageOf } from '../../protocols/messages.ts';
import { ChunkSink, type SinkResult } from '../transport/stream.ts';

/** A job attempt whose product is the streamed resource. */
export interface UploadOffer {
  jobId: string;
  attempt: number;
  nodeId: string;
  /** The rows of the project's data the attempt read (its report's `rows`), for the result's provenance. */
  rows?: number | undefined;
  /** How long its operation ran (its report's `ranMs`), for the job's `startedAt`. */
  ranMs?: number | undefined;
}

interface Upload {
  sink: ChunkSink;
  /** The nodes that offered these bytes: only they may send chunks of them. */
  nodes: Set<string>;
  offers: Map<string, UploadOffer>;
}

/**
 * The scheduler's streamed uploads (products over the stream threshold), by content: the bytes
 * of resource `sha256` are written to `<incoming>/<sha256>.part` as their chunks arrive, whoever
 * offered them and over whichever connection. A cut socket or a restart of either side leaves the
 * file; the next offer of the same bytes resumes after it (the scheduler says its offset in
 * `resourceWant`). The Scheduler actor opens uploads (`begin`, it judges the offer); the
 * connections feed chunks (`receive`, synchronously, as frames are read: nothing queues).
 */
export class Uploads {
  private readonly bySha = new Map<string, Upload>();

  constructor(private readonly dir: string) {}

  /** Opens or joins the upload of `sha256` for an offer; returns the offset the scheduler holds. */
  begin(offer: UploadOffer, sha256: string, size: number): { offset: number; resumedFrom: number } {
    let u = this.bySha.get(sha256);
    if (u && u.sink.size !== size) {
      // Same hash, another size: the older offer lied about one of them.
      u.sink.discard();
      this.bySha.delete(sha256);
      u = undefined;
    }
    if (!u) {
      u = { sink: new ChunkSink(join(this.dir, `${sha256}.part`), sha256, size, true), nodes: new Set(), offers: new Map() };
      this.bySha.set(sha256, u);
    }
    u.nodes.add(offer.nodeId);
    u.offers.set(`${offer.jobId}#${offer.attempt}`, offer);
    return { offset: u.sink.offset, resumedFrom: u.sink.resumedFrom };
  }

  /** The file was whole already when the offer came (an upload that ended before a restart): check it. */
  finishWhole(sha256: string): (SinkResult & { offers: UploadOffer[] }) | undefined {
    const u = this.bySha.get(sha256);
    if (!u || u.sink.offset !== u.sink.size) return undefined;
    return this.settle(sha256, u, u.sink.finish());
  }

  /**
   * One chunk from `nodeId`. `undefined`: no upload of these bytes was offered by that node.
   * With 'done' or 'corrupt' the upload is over and its offers are handed back.
   */
  receive(nodeId: string, m: MessageOf<'resourceChunk'>): (SinkResult & { offers: UploadOffer[] }) | undefined {
    const u = this.bySha.get(m.resource);
    if (!u?.nodes.has(nodeId)) return undefined;
    const r = u.sink.accept(m);
    if (r.kind === 'refused' && r.gaveUp) {
      u.sink.discard();
      this.bySha.delete(m.resource);
      return { ...r, offers: [...u.offers.values()] };
    }
    return this.settle(m.resource, u, r);
  }

  private settle(sha256: string, u: Upload, r: SinkResult): SinkResult & { offers: UploadOffer[] } {
    if (r.kind !== 'done' && r.kind !== 'corrupt') return { ...r, offers: [] };
    this.bySha.delete(sha256);
    return { ...r, offers: [...u.offers.values()] };
  }

  /**
   * Removes partial files no upload has written to since `before` (epoch ms) and none is open
   * for: the uploads of offers never made again (an artifact that ended, a worker gone for good).
   * Returns how many went.
   */
  sweep(before: number): number {
    let removed = 0;
    let files: string[];
    try {
      files = readdirSync(this.dir).filter((f) => f.endsWith('.part'));
    } catch {
      return 0;
    }
    for (const f of files) {
      if (this.bySha.has(f.slice(0, -'.part'.length))) continue;
      const path = join(this.dir, f);
      try {
        if (statSync(path).mtimeMs >= before) continue;
        rmSync(path, { force: true });
        removed++;
      } catch {
        // Gone meanwhile.
      }
    }
    return removed;
  }
}
