import { createCipheriv, createHash } from 'node:crypto';
import { blobHeader } from '../../lib/ops/file-blob.ts';

const MiB = 1024 * 1024;

/** The bytes TestBlob makes for a seed, as the resource (header + bytes): their sha256, computed in pieces. */
export function blobSha256(bytes: number, seed: number): string {
  const key = createHash('sha256').update(`fdl-test-blob\0${seed}`).digest();
  const stream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256').update(blobHeader(bytes));
  const zeros = Buffer.alloc(MiB);
  for (let done = 0; done < bytes; done += MiB) hash.update(stream.update(zeros.subarray(0, Math.min(MiB, bytes - done))));
  return hash.digest('hex');
}
