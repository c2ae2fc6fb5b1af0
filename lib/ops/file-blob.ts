import { closeSync, openSync, readSync } from 'node:fs';

/**
 * A byte string that lives in a file: how a large binary product leaves an operation and how a
 * large binary input reaches one, without being whole in memory. Its resource bytes are the
 * msgpack of a byte string (a `bin 32` header, then the bytes), so the file that holds them is
 * the resource itself: `offset` is where the bytes start after that header. Decoded in memory
 * (a small one, or the workbench's `result()`), the same resource is a Buffer.
 */
export class FileBlob {
  constructor(
    /** The file holding the resource bytes: the header at 0, the byte string from `offset`. */
    readonly path: string,
    readonly length: number,
    /** The sha256 of the whole file (the resource), when known. */
    readonly sha256?: string,
  ) {}

  readonly offset = BLOB_HEADER_BYTES;

  /** The resource's size: the header and the bytes. */
  get size(): number {
    return BLOB_HEADER_BYTES + this.length;
  }
}

/** msgpack `bin 32`: 0xc6 and the length as a big-endian uint32. */
export const BLOB_HEADER_BYTES = 5;
const BIN32 = 0xc6;
/** The largest byte string a `bin 32` can carry. */
export const MAX_BLOB_BYTES = 0xffff_ffff;

export function blobHeader(length: number): Buffer {
  const h = Buffer.alloc(BLOB_HEADER_BYTES);
  h[0] = BIN32;
  h.writeUInt32BE(length, 1);
  return h;
}

/** The file as a FileBlob when its bytes are exactly a msgpack `bin 32` of `size - 5` bytes; undefined otherwise. */
export function asFileBlob(path: string, size: number, sha256?: string): FileBlob | undefined {
  if (size < BLOB_HEADER_BYTES) return undefined;
  const head = Buffer.alloc(BLOB_HEADER_BYTES);
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, head, 0, BLOB_HEADER_BYTES, 0) < BLOB_HEADER_BYTES) return undefined;
  } finally {
    closeSync(fd);
  }
  return head[0] === BIN32 && head.readUInt32BE(1) === size - BLOB_HEADER_BYTES ? new FileBlob(path, size - BLOB_HEADER_BYTES, sha256) : undefined;
}
