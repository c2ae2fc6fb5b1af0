import { randomBytes } from 'node:crypto';
import { encodeValue } from '../protocols/codec.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { type Recipient, resourceContext, SealedProduct, seal, sealToFile } from '../lib/security/seal.ts';
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { WireError } from '../protocols/errors.ts';
import { toWireError } from '../lib/errors.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import { FileBlob } from '../lib/ops/file-blob.ts';
import { bufferSource, type ByteSource, fileSource, sha256OfFile } from '../lib/transport/stream.ts';

/**
 * Distributor: sends a job's product on. It encodes the product once (msgpack; typed
 * arrays as raw bytes), checksums it, and ships it to the scheduler's resource store with
 * the completion report; the scheduler routes it to the receiving jobs as the locks say.
 */

export type DistributorMsg = {
  kind: 'distribute';
  key: string;
  artifactId: string;
  jobId: string;
  attempt: number;
  product: unknown;
  /** Seal for these nodes (the distribution asked for encryption). */
  sealFor?: Recipient[] | undefined;
  /** Rows of the node's data the operation read, for the report (undefined: it read none). */
  rows?: number | undefined;
  /** How long the operation ran (ms), for the report. */
  ranMs?: number | undefined;
};

/** The report to repeat for a duplicate assignment: the completion, or the offer of a streamed product (which resumes it). */
export type DistributorReport =
  | { kind: 'distributed'; key: string; report: MessageOf<'jobCompleted'> | MessageOf<'productOffer'> }
  /** The product could not be sealed into its file (a full disk, say): the attempt fails. */
  | { kind: 'opFailed'; key: string; error: WireError };

/** How a node sends products over the stream threshold. */
export interface LargeProducts {
  thresholdBytes: number;
  /** A folder of this node for the files of sealed products (emptied when the node starts). */
  dir: string;
  /**
   * True: a sealed product is sealed into a file first (the initiator, whose products go to the
   * store as files); false: it is sealed as it is read (a worker streams it from its plaintext).
   */
  sealIntoFile: boolean;
  /** Offers the product and streams it when asked (a worker), or hands it to the store (the initiator). */
  send(offer: MessageOf<'productOffer'>, body: { bytes: Uint8Array } | { file: string } | { source: ByteSource }): void;
}

export function spawnDistributor(
  parent: Ref<DistributorReport>,
  props: {
    log: Logger;
    sendToScheduler(message: Message): boolean;
    /** Test seam: what goes on the wire instead of the report (undefined: nothing). */
    tamper?: (report: MessageOf<'jobCompleted'>) => MessageOf<'jobCompleted'> | undefined;
    large?: LargeProducts | undefined;
  },
): Ref<DistributorMsg> {
  return spawnActor<null, DistributorMsg>(
    parent,
    'distributor',
    async (s, msg) => {
      const sealFor = msg.sealFor && msg.sealFor.length > 0 ? msg.sealFor : undefined;
      const { large } = props;
      /** The offer of a streamed product, by its sha256 or by an upload name (its sha256 to come at the end). */
      const offer = (name: { sha256: string } | { upload: string }, size: number): MessageOf<'productOffer'> => {
        const report: MessageOf<'productOffer'> = { type: 'productOffer', jobId: msg.jobId, attempt: msg.attempt, ...name, size };
        if (msg.rows !== undefined) report.rows = msg.rows;
        if (msg.ranMs !== undefined) report.ranMs = msg.ranMs;
        return report;
      };
      const { product } = msg;
      if (product instanceof FileBlob && !sealFor && large && product.size > large.thresholdBytes) {
        // A binary product in a file: the file is the resource, streamed from disk.
        const report = offer({ sha256: product.sha256 ?? sha256OfFile(product.path) }, product.size);
        large.send(report, { file: product.path });
        send(parent, { kind: 'distributed', key: msg.key, report });
        return s;
      }
      // Encoded once, whatever the number of receivers; sealed once with one key wrap per
      // receiver. A sealed product over the stream threshold is sealed segment by segment from
      // its file (or its encoding), never whole in memory: as its chunks are read (a worker), or
      // into a file (the initiator) (docs/PROTOCOL.md, "Sealed resources"); a small one is one
      // envelope in one frame.
      const plainSource = product instanceof FileBlob ? fileSource(product.path, product.size) : undefined;
      const encoded = plainSource ? undefined : encodeValue(product);
      if (sealFor && large && (plainSource?.size ?? (encoded as Uint8Array).byteLength) > large.thresholdBytes) {
        const source = plainSource ?? bufferSource(encoded as Uint8Array);
        const context = resourceContext(msg.artifactId, msg.jobId);
        props.log.info({ jobId: msg.jobId, attempt: msg.attempt, size: source.size }, 'sealing a streamed product');
        try {
          if (large.sealIntoFile) {
            mkdirSync(large.dir, { recursive: true });
            const part = join(large.dir, `sealing-${msg.jobId}-${msg.attempt}.part`);
            const sealed = await sealToFile(source, sealFor, context, part);
            source.close();
            const file = join(large.dir, `${sealed.sha256}.sealed`);
            renameSync(part, file);
            const report = offer({ sha256: sealed.sha256 }, sealed.size);
            large.send(report, { file });
            send(parent, { kind: 'distributed', key: msg.key, report });
          } else {
            // The sealed product owns its source from here (closed when the offer is forgotten). It
            // is sealed and hashed as its chunks are read, never before: offered by an upload name
            // drawn here, its sha256 is sent when the last byte has been read (`productDigest`).
            const sealed = SealedProduct.streamed(source, sealFor, context);
            const report = offer({ upload: randomBytes(32).toString('hex') }, sealed.size);
            large.send(report, { source: sealed });
            send(parent, { kind: 'distributed', key: msg.key, report });
          }
        } catch (e) {
          source.close();
          props.log.warn({ jobId: msg.jobId, attempt: msg.attempt, err: e }, 'a sealed product could not be made');
          send(parent, { kind: 'opFailed', key: msg.key, error: toWireError(e, 'STORE_WRITE_FAILED') });
        }
        return s;
      }
      plainSource?.close();
      const plain = product instanceof FileBlob ? readFileSync(product.path) : (encoded as Uint8Array);
      const data = sealFor ? seal(plain, sealFor, resourceContext(msg.artifactId, msg.jobId)) : plain;
      const sha256 = sha256Hex(data);
      if (large && data.byteLength > large.thresholdBytes) {
        const report = offer({ sha256 }, data.byteLength);
        large.send(report, { bytes: data });
        send(parent, { kind: 'distributed', key: msg.key, report });
        return s;
      }
      const report: MessageOf<'jobCompleted'> = { type: 'jobCompleted', jobId: msg.jobId, attempt: msg.attempt, sha256, data };
      if (msg.rows !== undefined) report.rows = msg.rows;
      if (msg.ranMs !== undefined) report.ranMs = msg.ranMs;
      // When the socket is down the report stays with the WorkerActor: the scheduler
      // re-sends the assignment on reconnect and gets this report again.
      const outgoing = props.tamper ? props.tamper(report) : report;
      if (outgoing) props.sendToScheduler(outgoing);
      send(parent, { kind: 'distributed', key: msg.key, report });
      return s;
    },
    { log: props.log, initialState: () => null },
  );
}
