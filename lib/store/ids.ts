import { randomUUID } from 'node:crypto';

/**
 * A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. The store's
 * ids of artifacts and resources are primary keys: a random (v4) id lands on a random leaf of
 * each index it is in, so a commit that inserts 10 products dirtied ~10 leaves per index (each
 * a WAL frame, i.e. a page written and fsynced); ids that grow with time are appended to the
 * right-most leaf, a page or two per commit. Still unguessable (74 random bits); no access is
 * granted by knowing an id anyway (a fetch is checked against the job it feeds). The random
 * bits are a v4 UUID's (Node draws those from a cached pool: a `randomBytes` per id cost ~2%
 * of the scheduler's CPU under bench/scale-costs.ts).
 */
export function timeOrderedUuid(now: number = Date.now()): string {
  const v4 = randomUUID(); // xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx, V the variant
  const ms = Math.max(0, Math.floor(now)).toString(16).padStart(12, '0').slice(-12);
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${v4.slice(15)}`;
}
