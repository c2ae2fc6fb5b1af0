import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DAMAGED_ADVICE, StoreCheckError } from './db.ts';
import { LOCALS_DIR } from './locals.ts';
import { DATABASE_FILE, RESOURCES_DIR, Store } from './store.ts';

/**
 * Which network a scheduler's work directory holds. At its first start a scheduler stamps a
 * random network id into its database and into `<workdir>/network.json`. At every later start
 * the two must agree: a database that is missing, empty, damaged, or from another network is
 * refused with one line, instead of silently starting a new network that forgets every
 * artifact and every pinned node key (then anyone with a join token could claim a known node's id).
 *
 * Why a marker file and not `identity.json` or `resources/`: those say a node ran here, not
 * which store it ran with; the marker's id also tells a database copied in from elsewhere (or
 * re-created empty by `fdl tokens`) from the one this directory held. Work directories from before
 * the marker count as having held a network when `resources/` exists (every store opened there
 * made it), and are stamped at their first start with a healthy database.
 */

export const NETWORK_MARKER = 'network.json';

export interface NetworkMarker {
  networkId: string;
  createdAt: string;
}

export interface OpenedStore {
  store: Store;
  network: NetworkMarker;
  /** With `initStore`: what was wrong, and the folder the old files were moved to. */
  replaced?: { problem: string; folder: string };
}

function readMarker(workdir: string): NetworkMarker | undefined {
  const file = join(workdir, NETWORK_MARKER);
  if (!existsSync(file)) return undefined;
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as Partial<NetworkMarker>;
    if (typeof m.networkId === 'string' && m.networkId.length > 0) return { networkId: m.networkId, createdAt: String(m.createdAt ?? '') };
  } catch {
    // unreadable: reported below as a marker without an id
  }
  throw new StoreCheckError(`${file} is unreadable or has no networkId: ${DAMAGED_ADVICE}`, { replaceable: true });
}

function writeMarker(workdir: string, network: NetworkMarker): void {
  const file = join(workdir, NETWORK_MARKER);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ ...network, note: `this work directory holds the store of fdl network ${network.networkId}` }, null, 2)}\n`);
  renameSync(tmp, file);
}

const sizeOf = (file: string) => (existsSync(file) ? statSync(file).size : 0);

/** The problem that keeps this store from being used as it is, if any; the store when it can be. */
function diagnose(workdir: string): { problem: StoreCheckError } | { store: Store; marker: NetworkMarker | undefined } {
  const refuse = (message: string) => ({ problem: new StoreCheckError(message, { replaceable: true }) });
  let marker: NetworkMarker | undefined;
  let store: Store;
  try {
    marker = readMarker(workdir);
  } catch (e) {
    if (e instanceof StoreCheckError) return { problem: e };
    throw e;
  }
  const dbFile = join(workdir, DATABASE_FILE);
  const held = marker !== undefined || existsSync(join(workdir, RESOURCES_DIR));
  const since = marker ? ` network ${marker.networkId}${marker.createdAt ? ` (since ${marker.createdAt})` : ''}` : ' a network';
  if (held && sizeOf(dbFile) === 0) {
    const what = existsSync(dbFile) ? 'is empty (0 bytes)' : 'is missing';
    return refuse(`${dbFile} ${what}, but this work directory has held${since}: ${DAMAGED_ADVICE}`);
  }
  try {
    store = new Store(workdir);
  } catch (e) {
    if (e instanceof StoreCheckError) return { problem: e };
    throw e;
  }
  const stamped = store.network();
  const mismatch =
    (marker && stamped && marker.networkId !== stamped.networkId) || (marker && !stamped) || (held && !stamped && store.isBlank());
  if (mismatch) {
    store.close();
    const found = stamped ? `network ${stamped.networkId}` : 'no network (a new, empty store)';
    return refuse(`${dbFile} holds ${found}, but this work directory has held${since}: ${DAMAGED_ADVICE}`);
  }
  return { store, marker };
}

/** Moves the old network's files into `<workdir>/replaced-<time>/`: nothing is destroyed. */
function setAside(workdir: string): string {
  const folder = join(workdir, `replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  mkdirSync(folder);
  const names = [DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`, NETWORK_MARKER, RESOURCES_DIR, LOCALS_DIR];
  for (const name of names) if (existsSync(join(workdir, name))) renameSync(join(workdir, name), join(folder, name));
  return folder;
}

/**
 * Opens a scheduler's store after checking it is the one this work directory has held (see
 * above). A fresh directory starts a new network. `initStore` (the operator's `--init-store`)
 * lets a directory whose store is missing, empty, damaged or foreign start a new network, the old
 * files kept aside; it never replaces a healthy store.
 */
export function openSchedulerStore(
  workdir: string,
  opts: { initStore?: boolean; url?: string | undefined; idleInTransactionMs?: number } = {},
): OpenedStore {
  mkdirSync(workdir, { recursive: true });
  if (opts.url) {
    // On PostgreSQL the database is the authority: every replica's work directory holds only
    // logs and spool, so there is no marker to agree with (and nothing to set aside).
    const store = new Store(workdir, { url: opts.url, ...(opts.idleInTransactionMs ? { idleInTransactionMs: opts.idleInTransactionMs } : {}) });
    try {
      return { store, network: store.network() ?? store.stampNetwork(`n-${randomUUID()}`, new Date().toISOString()) };
    } catch (e) {
      store.close();
      throw e;
    }
  }
  let replaced: OpenedStore['replaced'];
  let found = diagnose(workdir);
  if ('problem' in found) {
    // Only damage is set aside: a schema newer than this fdl wants a newer fdl, not a new network.
    if (!opts.initStore || !found.problem.replaceable) throw found.problem;
    replaced = { problem: found.problem.message, folder: setAside(workdir) };
    found = diagnose(workdir);
    if ('problem' in found) throw found.problem;
  }
  const { store, marker } = found;
  // The database is the authority: a lost marker is written again from it.
  const network = store.network() ?? store.stampNetwork(`n-${randomUUID()}`, new Date().toISOString());
  if (marker?.networkId !== network.networkId) writeMarker(workdir, network);
  return { store, network, ...(replaced ? { replaced } : {}) };
}
