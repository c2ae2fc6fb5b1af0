import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqlite } from '../../lib/store/sqlite.ts';

/**
 * A scheduler's stored resource bytes as a test sees them at rest: a file under `resources/`
 * (large ones) or, for small ones (see Store.putResource), the `bytes` of their `resources` row
 * (a row of `resource_bytes` for those written before schema 8).
 */
export function storedBytes(schedulerDir: string, resourceId: string): Buffer | undefined {
  const file = join(schedulerDir, 'resources', `${resourceId}.bin`);
  if (existsSync(file)) return readFileSync(file);
  const db = openSqlite(join(schedulerDir, 'scheduler.sqlite'), { readonly: true, fileMustExist: true });
  try {
    const own = (db.prepare('SELECT bytes FROM resources WHERE id = ?').get(resourceId) as { bytes: Buffer | null } | undefined)?.bytes;
    return own ?? (db.prepare('SELECT bytes FROM resource_bytes WHERE id = ?').get(resourceId) as { bytes: Buffer } | undefined)?.bytes;
  } finally {
    db.close();
  }
}

/** Replaces a stored resource's bytes where they lie, as bit rot on the scheduler's disk would. */
export function rotStoredBytes(schedulerDir: string, resourceId: string, rotten: string): void {
  const file = join(schedulerDir, 'resources', `${resourceId}.bin`);
  if (existsSync(file)) {
    writeFileSync(file, rotten);
    return;
  }
  const db = openSqlite(join(schedulerDir, 'scheduler.sqlite'), { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 10000');
    const changed =
      db.prepare('UPDATE resources SET bytes = ? WHERE id = ? AND bytes IS NOT NULL').run(Buffer.from(rotten), resourceId).changes ||
      db.prepare('UPDATE resource_bytes SET bytes = ? WHERE id = ?').run(Buffer.from(rotten), resourceId).changes;
    if (changed !== 1) throw new Error(`resource ${resourceId} is neither a file nor a row`);
  } finally {
    db.close();
  }
}
