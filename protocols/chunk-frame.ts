// The one frame written by hand: a resourceChunk around bytes already in place. Node only (Buffer):
// kept out of codec.ts, which the dashboard's browser bundle imports.

const CHUNK_KEYS = {
  type: Buffer.from([0xa4, ...Buffer.from('type'), 0xad, ...Buffer.from('resourceChunk')]),
  resource: Buffer.from([0xa8, ...Buffer.from('resource'), 0xd9, 64]),
  offset: Buffer.from([0xa6, ...Buffer.from('offset'), 0xcf]),
  crc32: Buffer.from([0xa5, ...Buffer.from('crc32'), 0xce]),
  data: Buffer.from([0xa4, ...Buffer.from('data'), 0xc6]),
};
/** The bytes of a resourceChunk frame before its data. */
export const CHUNK_HEADER_BYTES =
  1 + CHUNK_KEYS.type.length + CHUNK_KEYS.resource.length + 64 + CHUNK_KEYS.offset.length + 8 + CHUNK_KEYS.crc32.length + 4 + CHUNK_KEYS.data.length + 4;

/**
 * A `resourceChunk` frame, written by hand around bytes already in place: `frame` holds
 * CHUNK_HEADER_BYTES of room, then the chunk's data (put there by the caller, e.g. read from a file
 * straight into it), so a chunk is never copied to be encoded. The same msgpack any encoder
 * would accept (a map of 5; offset as uint 64, crc32 as uint 32, data as bin 32).
 */
export function encodeChunkInto(frame: Buffer, resource: string, offset: number, crc32: number): Buffer {
  let at = 0;
  frame[at++] = 0x85;
  at += CHUNK_KEYS.type.copy(frame, at);
  at += CHUNK_KEYS.resource.copy(frame, at);
  at += frame.write(resource, at, 64, 'latin1');
  at += CHUNK_KEYS.offset.copy(frame, at);
  frame.writeBigUInt64BE(BigInt(offset), at);
  at += 8;
  at += CHUNK_KEYS.crc32.copy(frame, at);
  frame.writeUInt32BE(crc32, at);
  at += 4;
  at += CHUNK_KEYS.data.copy(frame, at);
  frame.writeUInt32BE(frame.length - CHUNK_HEADER_BYTES, at);
  return frame;
}
