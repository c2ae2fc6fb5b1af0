import { encodeValue } from '../protocols/codec.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { type Recipient, resourceContext, seal } from '../lib/security/seal.ts';
import { sha256Hex } from '../lib/store/blobs.ts';

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
};

export type DistributorReport = { kind: 'distributed'; key: string; report: MessageOf<'jobCompleted'> };

export function spawnDistributor(
  parent: Ref<DistributorReport>,
  props: {
    log: Logger;
    sendToScheduler(message: Message): boolean;
    /** Test seam: what goes on the wire instead of the report (undefined: nothing). */
    tamper?: (report: MessageOf<'jobCompleted'>) => MessageOf<'jobCompleted'> | undefined;
  },
): Ref<DistributorMsg> {
  return spawnActor<null, DistributorMsg>(
    parent,
    'distributor',
    (s, msg) => {
      // Encoded once, whatever the number of receivers; sealed once with one key wrap per receiver.
      const plain = encodeValue(msg.product);
      const data = msg.sealFor && msg.sealFor.length > 0 ? seal(plain, msg.sealFor, resourceContext(msg.artifactId, msg.jobId)) : plain;
      const report: MessageOf<'jobCompleted'> = {
        type: 'jobCompleted',
        jobId: msg.jobId,
        attempt: msg.attempt,
        sha256: sha256Hex(data),
        data,
      };
      if (msg.rows !== undefined) report.rows = msg.rows;
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
