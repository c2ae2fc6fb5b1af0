import type { Query } from '../../../protocols/entities.ts';
import { engineBehind } from '../../data/behind.ts';
import type { DataEngine } from '../../data/engine.ts';
import { type OpContext, requireData } from '../context.ts';
import type { Matrix } from './model.ts';

/** A worker's labelled rows for a model: complete rows only. */
export interface Dataset {
  x: Matrix;
  y: Float64Array;
  /** For each kept row, its position among the rows the query returned (what splits hash). */
  rowIndex: Uint32Array;
  /** Rows the query returned, complete or not. */
  queried: number;
}

/** Memory a worker may spend keeping model datasets between rounds (least recently used dropped first). */
export const DEFAULT_DATASET_CACHE_BYTES = 256 * 1024 * 1024;

/**
 * Datasets read, per data engine: an Iterate's rounds train on the same rows every round (the
 * engine's rows never change after open), so the rows are read, filtered and laid out row-major
 * once, not once per round. A cached dataset is shared by every job that asks the same: it is
 * read-only (operations that need other rows make their own, `subset`). Its arrays sit on
 * SharedArrayBuffers, so handing it to a compute thread (lib/ops/pool.ts) shares it instead of
 * copying it.
 */
class DatasetCache {
  readonly entries = new Map<string, { dataset: Promise<Dataset>; bytes?: number }>();
  budget = DEFAULT_DATASET_CACHE_BYTES;
  hits = 0;

  /** Drops least recently used datasets until the cache fits its budget (one larger than it is not kept). */
  fit(): void {
    let total = 0;
    for (const e of this.entries.values()) total += e.bytes ?? 0;
    for (const [key, e] of this.entries) {
      if (total <= this.budget) break;
      if (e.bytes === undefined) continue; // still being read
      this.entries.delete(key);
      total -= e.bytes;
    }
  }
}

const caches = new WeakMap<DataEngine, DatasetCache>();

function cacheOf(engine: DataEngine): DatasetCache {
  const behind = engineBehind(engine);
  let cache = caches.get(behind);
  if (!cache) {
    cache = new DatasetCache();
    caches.set(behind, cache);
  }
  return cache;
}

/** The dataset cache of an engine: its budget (settable) and hit count (diagnostics and tests). */
export function datasetCache(engine: DataEngine): { budget: number; readonly hits: number; readonly size: number } {
  const cache = cacheOf(engine);
  return {
    get budget() {
      return cache.budget;
    },
    set budget(bytes: number) {
      cache.budget = bytes;
      cache.fit();
    },
    get hits() {
      return cache.hits;
    },
    get size() {
      return cache.entries.size;
    },
  };
}

/**
 * The features and the label of the rows the query selects, complete rows only (a model cannot
 * train on a NaN), row-major, read through the data engine (typed arrays, no row objects) on the
 * first ask and from memory after. Read-only: see DatasetCache.
 */
export async function readDataset(ctx: OpContext, features: string[], label: string | undefined, query?: Query): Promise<Dataset> {
  const engine = requireData(ctx);
  const cache = cacheOf(engine);
  const key = JSON.stringify([ctx.projectToken, features, label ?? null, query ?? null]);
  const hit = cache.entries.get(key);
  if (hit) {
    // A cached read still reads the project's data: asking the engine tells the attempt (its
    // report's provenance), and fails as a read would for a token no source is bound to.
    engine.rowsOf(ctx.projectToken);
    cache.entries.delete(key); // most recently used goes last
    cache.entries.set(key, hit);
    cache.hits++;
    return hit.dataset;
  }
  const entry: { dataset: Promise<Dataset>; bytes?: number } = { dataset: readRows(engine, ctx.projectToken, features, label, query) };
  cache.entries.set(key, entry);
  entry.dataset.then(
    (ds) => {
      entry.bytes = ds.x.data.byteLength + ds.y.byteLength + ds.rowIndex.byteLength;
      cache.fit();
    },
    () => {
      if (cache.entries.get(key) === entry) cache.entries.delete(key);
    },
  );
  return entry.dataset;
}

async function readRows(engine: DataEngine, token: string, features: string[], label: string | undefined, query?: Query): Promise<Dataset> {
  const names = label === undefined ? features : [...features, label];
  // Not kept by the engine as well: the dataset cache keeps what is made of them.
  const { rows, columns } = await engine.numericColumns(token, names, query, { keep: false });
  const cols = features.map((f) => columns[f] as Float64Array);
  const lab = label === undefined ? undefined : (columns[label] as Float64Array);
  const keep: number[] = [];
  for (let r = 0; r < rows; r++) {
    let ok = lab === undefined || !Number.isNaN(lab[r]);
    for (let j = 0; ok && j < cols.length; j++) ok = !Number.isNaN((cols[j] as Float64Array)[r]);
    if (ok) keep.push(r);
  }
  const d = cols.length;
  const n = keep.length;
  const data = new Float64Array(new SharedArrayBuffer(n * d * 8));
  const y = new Float64Array(new SharedArrayBuffer(n * 8));
  const rowIndex = new Uint32Array(new SharedArrayBuffer(n * 4));
  for (let i = 0; i < n; i++) {
    const r = keep[i] as number;
    for (let j = 0; j < d; j++) data[i * d + j] = (cols[j] as Float64Array)[r] as number;
    y[i] = lab === undefined ? 0 : (lab[r] as number);
    rowIndex[i] = r;
  }
  return { x: { rows: n, cols: d, data }, y, rowIndex, queried: rows };
}

/** The rows at the given positions (ascending). */
export function subset(ds: Dataset, keep: ArrayLike<number>): Dataset {
  const d = ds.x.cols;
  const n = keep.length;
  const data = new Float64Array(n * d);
  const y = new Float64Array(n);
  const rowIndex = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const r = keep[i] as number;
    data.set(ds.x.data.subarray(r * d, r * d + d), i * d);
    y[i] = ds.y[r] as number;
    rowIndex[i] = ds.rowIndex[r] as number;
  }
  return { x: { rows: n, cols: d, data }, y, rowIndex, queried: ds.queried };
}
