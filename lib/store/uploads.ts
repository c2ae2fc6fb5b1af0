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

/** What a chunk or a digest did to an upload; 'done' and 'corrupt' end it and hand back its offers. */
export type UploadResult = SinkResult & { offers: UploadOffer[]; size: number };

/**
 * The scheduler's streamed uploads (products over the stream threshold), by name: the bytes of
 * resource `sha256` are written to `<incoming>/<sha256>.part` as their chunks arrive, whoever
 * offered them and over whichever connection. An offer may name an upload instead of a sha256
 * (`productOffer.upload`): its bytes go to `<incoming>/<upload>.part` the same way and are checked
 * whole against the sha256 its producer names at the end (`digest`, from `productDigest`). A cut socket or a restart of either side leaves the
 * file; the next offer of the same bytes resumes after it (the scheduler says its offset in
 * `resourceWant`). The Scheduler actor opens uploads (`begin`, it judges the offer); the
 * connections feed chunks (`receive`, synchronously, as frames are read: nothing queues).
 */
export class Uploads {
  private readonly byName = new Map<string, Upload>();

  constructor(private readonly dir: string) {}

  /**
   * Opens or joins the upload `name` for an offer (its sha256, or with `digestAtEnd` the upload
   * name it drew, whose sha256 comes later: `digest`); returns the offset the scheduler holds.
   */
  begin(offer: UploadOffer, name: string, size: number, digestAtEnd = false): { offset: number; resumedFrom: number } {
    let u = this.byName.get(name);
    if (u && u.sink.size !== size) {
      // Same name, another size: the older offer lied about one of them.
      u.sink.discard();
      this.byName.delete(name);
      u = undefined;
    }
    if (!u) {
      u = { sink: new ChunkSink(join(this.dir, `${name}.part`), name, size, true, digestAtEnd), nodes: new Set(), offers: new Map() };
      this.byName.set(name, u);
    }
    u.nodes.add(offer.nodeId);
    u.offers.set(`${offer.jobId}#${offer.attempt}`, offer);
    return { offset: u.sink.offset, resumedFrom: u.sink.resumedFrom };
  }

  /**
   * The file was whole already when the offer came (an upload that ended before a restart): check
   * it ('ok': its sha256 is still to come, `digest`).
   */
  finishWhole(name: string): UploadResult | undefined {
    const u = this.byName.get(name);
    if (!u || u.sink.offset !== u.sink.size) return undefined;
    return this.settle(name, u, u.sink.finish());
  }

  /**
   * The sha256 the producer names for upload `name` (`productDigest`). `undefined`: no such upload
   * was offered by that node; 'ok': bytes are still to come (they are checked when the last one is in).
   */
  digest(nodeId: string, name: string, sha256: string): UploadResult | undefined {
    const u = this.byName.get(name);
    if (!u?.nodes.has(nodeId)) return undefined;
    u.sink.expect(sha256);
    if (u.sink.offset !== u.sink.size) return { kind: 'ok', offers: [], size: u.sink.size };
    return this.settle(name, u, u.sink.finish());
  }

  /**
   * One chunk from `nodeId`. `undefined`: no upload of these bytes was offered by that node.
   * With 'done' or 'corrupt' the upload is over and its offers are handed back.
   */
  receive(nodeId: string, m: MessageOf<'resourceChunk'>): UploadResult | undefined {
    const u = this.byName.get(m.resource);
    if (!u?.nodes.has(nodeId)) return undefined;
    const r = u.sink.accept(m);
    if (r.kind === 'refused' && r.gaveUp) {
      u.sink.discard();
      this.byName.delete(m.resource);
      return { ...r, offers: [...u.offers.values()], size: u.sink.size };
    }
    return this.settle(m.resource, u, r);
  }

  private settle(name: string, u: Upload, r: SinkResult): UploadResult {
    if (r.kind !== 'done' && r.kind !== 'corrupt') return { ...r, offers: [], size: u.sink.size };
    this.byName.delete(name);
    return { ...r, offers: [...u.offers.values()], size: u.sink.size };
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
      if (this.byName.has(f.slice(0, -'.part'.length))) continue;
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
