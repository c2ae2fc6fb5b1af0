import { AsyncLocalStorage } from 'node:async_hooks';
import { stat } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import {
  BIGINT,
  BOOLEAN,
  DOUBLE,
  type DuckDBConnection,
  DuckDBInstance,
  type DuckDBType,
  type DuckDBValue,
  SQLNULL,
  VARCHAR,
} from '@duckdb/node-api';
import type { DataSourceMeta, FeatureMeta, ProjectData, Query, Scalar } from '../../protocols/entities.ts';
import { FdlError, isFdlError } from '../errors.ts';
import { BEHIND } from './behind.ts';
import { lookupFeature, push, quoteIdent, type Schema, schemaMap } from './sql.ts';
import { compileRelation, type Relation, ROW_ID, withRelation } from './stages.ts';

/**
 * The worker's local data engine: one in-memory DuckDB holding a copy of each data source.
 *
 * At `open` every file is read into a TABLE, then the database is locked
 * (`enable_external_access = false`, `lock_configuration = true`): from then on no statement
 * can read or write any file, load an extension or change a setting. A VIEW over a file would
 * stop working under that lock (DuckDB checks the file access at every scan), hence the copy.
 * The data is a snapshot taken at `open`; reopen the engine to see new data.
 *
 * A project's view is the union of its sources plus a hidden column `__fdl_row`: the row's
 * position in that union (the source's rows in file order, sources in config order). It is
 * what the seeded train/test split hashes, so a split never depends on scan order or filters;
 * it is never listed as a feature.
 *
 * Every method takes a query (filters, then stages: see lib/data/stages.ts) and returns only
 * aggregates, except `numericColumns`, which models use inside the worker.
 */

export interface DataSourceConfig {
  name: string;
  path: string;
  format?: 'csv' | 'tsv' | 'parquet';
  /** Project tokens this source is bound to. */
  projects: string[];
}

/** Above this many distinct non-null values a feature gets no `categories`. */
export const MAX_CATEGORIES = 32;

type DType = FeatureMeta['dtype'];

interface Source {
  config: DataSourceConfig;
  table: string;
  schema: FeatureMeta[];
  rows: number;
  meta?: Promise<DataSourceMeta>;
}

interface Project {
  token: string;
  view: string;
  sources: Source[];
  features: FeatureMeta[];
  schema: Schema;
}

const NUMERIC_TYPES = new Set([
  'TINYINT',
  'SMALLINT',
  'INTEGER',
  'BIGINT',
  'HUGEINT',
  'UTINYINT',
  'USMALLINT',
  'UINTEGER',
  'UBIGINT',
  'UHUGEINT',
  'FLOAT',
  'DOUBLE',
  'BIGNUM',
  'VARINT',
]);

/** DuckDB type name -> our coarse dtype. */
export function dtypeOf(sqlType: string): DType {
  const t = sqlType.toUpperCase();
  if (NUMERIC_TYPES.has(t) || /^DECIMAL\(\d+,\s*\d+\)$/.test(t)) return 'numeric';
  if (t === 'VARCHAR') return 'string';
  if (t === 'BOOLEAN') return 'boolean';
  if (t === 'DATE' || t.startsWith('TIMESTAMP') || t.startsWith('TIME')) return 'datetime';
  return 'other';
}

/** A DuckDB JS value -> a wire Scalar (bigint -> number, -0 -> 0, non-finite -> null). */
export function toScalar(v: unknown): Scalar {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'number') return Number.isFinite(v) ? (Object.is(v, -0) ? 0 : v) : null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

function toNumber(v: unknown): number | null {
  const s = toScalar(v);
  return typeof s === 'number' ? s : null;
}

function formatOf(c: DataSourceConfig): 'csv' | 'tsv' | 'parquet' | undefined {
  if (c.format !== undefined) return c.format;
  const p = c.path.toLowerCase().replace(/\.(gz|zst)$/, '');
  const ext = extname(p);
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv' || ext === '.tab') return 'tsv';
  if (ext === '.parquet' || ext === '.pq') return 'parquet';
  return undefined;
}

/** The SQL to read a source; the path is always the bound parameter `?`. */
function readerSql(format: 'csv' | 'tsv' | 'parquet'): string {
  if (format === 'parquet') return 'read_parquet(?)';
  if (format === 'tsv') return `read_csv_auto(?, delim = '\t')`;
  return 'read_csv_auto(?)';
}

/** The DuckDB type each parameter is bound with (safe integers as BIGINT, other numbers as DOUBLE). */
function paramTypes(params: readonly Scalar[]): DuckDBType[] {
  return params.map((v) => {
    if (v === null) return SQLNULL;
    if (typeof v === 'number') return Number.isSafeInteger(v) ? BIGINT : DOUBLE;
    if (typeof v === 'boolean') return BOOLEAN;
    return VARCHAR;
  });
}

/** Errors DuckDB raises for a query that is wrong rather than for an engine that is broken. */
const USER_ERROR = /^(Conversion|Binder|Invalid Input|Out of Range|Parser) Error/;

/** A numeric read for models: one typed array per feature, in row id order. */
export interface NumericColumns {
  rows: number;
  columns: Record<string, Float64Array>;
  rowIds: Uint32Array;
}

/** A per-feature SUM and COUNT of non-null values (`DataEngine.sums`). */
export interface Sums {
  sums: Record<string, number>;
  counts: Record<string, number>;
}

/** The largest shard (rows × features asked) whose `sums` are taken from columns kept in memory. */
export const IN_MEMORY_SUMS_MAX_VALUES = 1 << 20;

/** How many distinct `sums` requests a worker remembers having seen (their keys only). */
const SUMS_SEEN = 256;

/** Memory a worker may spend keeping model inputs between rounds. */
export const DEFAULT_COLUMN_CACHE_BYTES = 256 * 1024 * 1024;

export class DataEngine {
  /** Set by close(): no new work is accepted. */
  private closed = false;
  /** Set once the connection is closed, after the work in flight finished. */
  private shut = false;
  private readonly inflight = new Set<Promise<unknown>>();
  /** Tail of the queue that serializes use of the one connection. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Answers of `numericColumns` by request, least recently used first, within `columnCacheBytes`. */
  private readonly columnCache = new Map<string, Promise<NumericColumns>>();
  private readonly columnCacheSizes = new Map<string, number>();
  private columnCacheHits = 0;
  /** Budget of the column cache; past it the least recently used answers are dropped. */
  columnCacheBytes = DEFAULT_COLUMN_CACHE_BYTES;
  /** Keys of the `sums` requests seen, oldest first: a second sighting reads the columns. */
  private readonly sumsSeen = new Set<string>();

  private constructor(
    private readonly instance: DuckDBInstance,
    private readonly conn: DuckDBConnection,
    private readonly projects: Map<string, Project>,
  ) {}

  static async open(sources: DataSourceConfig[]): Promise<DataEngine> {
    const instance = await DuckDBInstance.create(':memory:', {
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
    });
    let conn: DuckDBConnection | undefined;
    try {
      conn = await instance.connect();
      const loaded: Source[] = [];
      for (const [i, config] of sources.entries()) {
        loaded.push(await loadSource(conn, config, `src_${i}`));
      }

      const projects = new Map<string, Project>();
      for (const s of loaded) {
        for (const token of s.config.projects) {
          let p = projects.get(token);
          if (p === undefined) {
            p = { token, view: `project_${projects.size}`, sources: [], features: [], schema: new Map() };
            projects.set(token, p);
          }
          if (!p.sources.includes(s)) p.sources.push(s);
        }
      }
      for (const p of projects.values()) {
        let offset = 0;
        const parts: string[] = [];
        for (const s of p.sources) {
          parts.push(`SELECT *, CAST(rowid + ${offset} AS BIGINT) AS ${quoteIdent(ROW_ID)} FROM ${s.table}`);
          offset += s.rows;
        }
        try {
          await conn.run(`CREATE VIEW ${p.view} AS ${parts.join(' UNION ALL BY NAME ')}`);
          p.features = (await describe(conn, p.view)).filter((f) => f.name !== ROW_ID);
        } catch (e) {
          const names = p.sources.map((s) => JSON.stringify(s.config.name)).join(', ');
          throw new FdlError('DATA_UNAVAILABLE', `data sources ${names} cannot be combined: ${firstLine(e)}`, {
            cause: e,
          });
        }
        p.schema = schemaMap(p.features);
      }

      await conn.run('SET enable_external_access = false');
      await conn.run('SET lock_configuration = true');
      return new DataEngine(instance, conn, projects);
    } catch (e) {
      conn?.closeSync();
      instance.closeSync();
      throw e;
    }
  }

  /** Per project token, the aggregates of each of its data sources (computed once, then cached). */
  metadata(): Promise<ProjectData[]> {
    return this.op(() => this.collectMetadata());
  }

  private async collectMetadata(): Promise<ProjectData[]> {
    const out: ProjectData[] = [];
    for (const p of this.projects.values()) {
      const datasources: DataSourceMeta[] = [];
      for (const s of p.sources) {
        s.meta ??= this.sourceMeta(s);
        datasources.push(structuredClone(await s.meta));
      }
      out.push({ token: p.token, datasources });
    }
    return out;
  }

  /** The schema (name, dtype, sqlType, missing) of the union of the token's sources. */
  features(token: string): FeatureMeta[] {
    return this.project(token).features.map((f) => ({ ...f }));
  }

  count(token: string, query?: Query): Promise<number> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const rows = await this.onRelation(rel, `SELECT count(*) FROM ${rel.from}`);
      return toNumber(rows[0]?.[0]) ?? 0;
    });
  }

  /**
   * The features after the query's stages (name, dtype, sqlType); `missing` is 0 for a column
   * a stage made. Fits the unfitted transformers on this node's rows, as a job would.
   */
  queryFeatures(token: string, query?: Query): Promise<FeatureMeta[]> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      return [...rel.schema.values()].map((f) => ({ ...f }));
    });
  }

  /**
   * Per feature: the SUM and the COUNT of its non-null values over the filtered rows.
   *
   * A request asked again on a small shard (up to IN_MEMORY_SUMS_MAX_VALUES rows × features) sums
   * its columns kept in memory as typed arrays (`columnsOf`, shared with the models): a DuckDB
   * statement costs ~0.5–3 ms whatever its size, most of a warm mean's operations on a 10k-row
   * shard, where summing the kept columns takes ~0.1–0.3 ms. The sums are computed on every
   * request, never remembered. The first time a request is seen it goes to DuckDB: reading the
   * columns out costs 5–10× one query (~15 ms for 9 columns of 10k rows), worth it only for a
   * request that comes back (a researcher's loop, an Iterate). A column with a null (or a NaN,
   * which the typed arrays cannot tell from a null) is summed by DuckDB, which counts them apart;
   * so are large shards, whose columns would cost more to read out than DuckDB takes to sum them.
   */
  async sums(token: string, features: string[], query?: Query): Promise<Sums> {
    const names = [...new Set(features)];
    if (this.rowsOf(token) * names.length <= IN_MEMORY_SUMS_MAX_VALUES) {
      const key = columnsKey(token, features, query);
      if (this.columnCache.has(key) || this.sumsAskedBefore(key)) {
        const inMemory = sumsOfColumns(await this.columnsOf(token, features, query), names);
        if (inMemory !== undefined) return inMemory;
      }
    }
    return this.readSums(token, features, query);
  }

  /** Whether `sums` saw this request before (the last SUMS_SEEN requests); notes it if not. */
  private sumsAskedBefore(key: string): boolean {
    if (this.sumsSeen.has(key)) return true;
    this.sumsSeen.add(key);
    if (this.sumsSeen.size > SUMS_SEEN) this.sumsSeen.delete(this.sumsSeen.values().next().value as string);
    return false;
  }

  private readSums(token: string, features: string[], query?: Query): Promise<Sums> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const { names, cols } = numericFeatures(rel, features, true);
      // fsum: a compensated sum, so a worker's part of an exact masked sum (Sum, Mean) carries
      // every digit a double can; nothing else is computed (a mean needs no spread).
      const select = cols.map((c) => `fsum(${c}), count(${c})`).join(', ');
      const rows = await this.onRelation(rel, `SELECT ${select} FROM ${rel.from}`);
      const row = rows[0] ?? [];
      const sums = Object.fromEntries(names.map((n, i) => [n, toNumber(row[2 * i]) ?? 0]));
      const counts = Object.fromEntries(names.map((n, i) => [n, toNumber(row[2 * i + 1]) ?? 0]));
      return { sums, counts };
    });
  }

  /** Per feature: its non-null count `n`, `min` and `max` (null with no value): what a MinMax job needs, nothing more. */
  extremes(token: string, features: string[], query?: Query): Promise<Record<string, { n: number; min: number | null; max: number | null }>> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const { names, cols } = numericFeatures(rel, features, true);
      const select = cols.map((c) => `count(${c}), min(${c}), max(${c})`).join(', ');
      const row = (await this.onRelation(rel, `SELECT ${select} FROM ${rel.from}`))[0] ?? [];
      return Object.fromEntries(names.map((name, i) => [name, { n: toNumber(row[3 * i]) ?? 0, min: toNumber(row[3 * i + 1]), max: toNumber(row[3 * i + 2]) }]));
    });
  }

  /**
   * Per feature, what a Variance job contributes (lib/ops/estimators/variance.ts): the non-null
   * count `n`, the compensated `sum` of x and `shifted` sum of d = x - shift, and `m2`, the sum of
   * squared deviations from the local mean, in one scan where it can (see below).
   *
   * One scan takes Q = fsum(d * d) next to the sums and sets m2 = Q - D^2/n (D = the shifted sum):
   * compensated sums only, no per-row division as in var_pop's streaming update. With
   * rho = D^2 / (n m2) = ((local mean - shift) / local std)^2, the relative error of m2 is at most
   * u (6 + 13 rho + 6 sqrt(rho)), u = 2^-53 (each d rounded once, each d^2 once, D^2/n twice; a
   * compensated sum is within about 2u of the sum of its terms' magnitudes, which for Q is Q and for
   * D at most n|D/n| + sqrt(n m2); see docs/OPERATIONS.md, "Variance on a worker"). It is
   * kept when rho <= SPREAD_MAX_RHO (2^16: a shift within 256 local standard deviations of the
   * local mean; error < 1e-10); otherwise (a poor shift, constant data, an overflow) a second scan
   * takes m2 from DuckDB's var_pop of x minus the local mean (from the compensated sum), as exact
   * as DuckDB's streaming variance is, whatever the shift. rho is computed from the rounded figures, but a value far
   * above the bound cannot pass for one below it: that would need m2 off by a factor of rho / 2^16.
   */
  spread(token: string, features: string[], query?: Query, shifts?: number[]): Promise<Record<string, Spread>> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const { names, cols } = numericFeatures(rel, features, true);
      const params = [...rel.params];
      const select = cols
        .map((c, i) => {
          const shift = shifts?.[i] ?? 0;
          // x - 0 is x, bit for bit: with no shift the two sums are one aggregate, which DuckDB
          // computes once (~0.7 of the query's CPU).
          const d = shift === 0 ? c : `(${c} - CAST(${push(params, shift, 'shift')} AS DOUBLE))`;
          return `count(${c}), fsum(${c}), fsum(${d}), fsum(${d} * ${d})`;
        })
        .join(', ');
      const row = (await this.onRelation(rel, `SELECT ${select} FROM ${rel.from}`, params))[0] ?? [];
      const out: Record<string, Spread> = {};
      const poor: number[] = [];
      for (const [i, name] of names.entries()) {
        const at = (j: number) => toNumber(row[4 * i + j]) ?? 0;
        const n = at(0);
        if (n === 0) {
          out[name] = { n, sum: 0, shifted: 0, m2: 0, from: 'squares' };
          continue;
        }
        const D = at(2);
        const m2 = n === 1 ? 0 : at(3) - (D * D) / n;
        // The test is written so that NaN, an infinity and m2 < 0 all fail it.
        const kept = n === 1 || (Number.isFinite(m2) && m2 >= 0 && (D * D) / n <= SPREAD_MAX_RHO * m2);
        out[name] = { n, sum: at(1), shifted: D, m2: kept ? m2 : 0, from: kept ? 'squares' : 'var_pop' };
        if (!kept) poor.push(i);
      }
      if (poor.length > 0) {
        const again = [...rel.params];
        const parts = poor.map((i) => {
          const f = out[names[i] as string] as Spread;
          const c = cols[i] as string;
          return `var_pop(${c} - CAST(${push(again, f.sum / f.n, 'mean')} AS DOUBLE)) * count(${c})`;
        });
        const m2s = (await this.onRelation(rel, `SELECT ${parts.join(', ')} FROM ${rel.from}`, again))[0] ?? [];
        for (const [k, i] of poor.entries()) (out[names[i] as string] as Spread).m2 = Math.max(0, toNumber(m2s[k]) ?? 0);
      }
      return out;
    });
  }

  /**
   * Over the rows where every feature has a value: their count `n`, each feature's `sums` and
   * `shifted` sums of (x - shift) (compensated; shifts default to 0), and `comoments[j][k]`,
   * the sum of (x_j - mean_j)(x_k - mean_k) about the local means.
   */
  comoments(
    token: string,
    features: string[],
    query?: Query,
    shifts?: number[],
  ): Promise<{ n: number; sums: number[]; shifted: number[]; comoments: number[][] }> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const { cols } = numericFeatures(rel, features, true);
      const params = [...rel.params];
      const d = cols.map((c, i) => `(${c} - CAST(${push(params, shifts?.[i] ?? 0, 'shift')} AS DOUBLE))`);
      const parts = ['count(*)', ...cols.map((c) => `fsum(${c})`), ...d.map((x) => `fsum(${x})`)];
      for (let j = 0; j < cols.length; j++) {
        for (let k = j; k < cols.length; k++) parts.push(`covar_pop(${d[j]}, ${d[k]}) * count(*)`);
      }
      const complete = cols.map((c) => `${c} IS NOT NULL`).join(' AND ');
      const row = (await this.onRelation(rel, `SELECT ${parts.join(', ')} FROM ${rel.from} WHERE ${complete}`, params))[0] ?? [];
      const n = toNumber(row[0]) ?? 0;
      const sums = cols.map((_, j) => (n === 0 ? 0 : (toNumber(row[1 + j]) ?? 0)));
      const shifted = cols.map((_, j) => (n === 0 ? 0 : (toNumber(row[1 + cols.length + j]) ?? 0)));
      const comoments = cols.map(() => cols.map(() => 0));
      let i = 1 + 2 * cols.length;
      for (let j = 0; j < cols.length; j++) {
        for (let k = j; k < cols.length; k++) {
          const v = n === 0 ? 0 : (toNumber(row[i]) ?? 0);
          (comoments[j] as number[])[k] = v;
          (comoments[k] as number[])[j] = v;
          i++;
        }
      }
      return { n, sums, shifted, comoments };
    });
  }

  /**
   * Row counts per bin of `bins` equal-width bins over [lo, hi] (the last bin includes hi),
   * plus the non-null values `below` lo and `above` hi. Bin of x: floor((x - lo) / w) with
   * w = (hi - lo) / bins, the same double arithmetic on every node.
   */
  histogram(
    token: string,
    feature: string,
    bins: { lo: number; hi: number; count: number },
    query?: Query,
  ): Promise<{ counts: number[]; below: number; above: number }> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const [c] = numericCols(rel, [feature], true) as [string];
      const { lo, hi, count } = bins;
      if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi && Number.isInteger(count) && count >= 1)) {
        throw new FdlError('BAD_QUERY', 'histogram bins need finite lo < hi and a positive count', { path: 'bins' });
      }
      const w = binWidth(bins);
      const params = [...rel.params, lo, hi, w, count];
      const [pLo, pHi, pW, pN] = [1, 2, 3, 4].map((i) => `$${rel.params.length + i}`);
      const bin =
        `CASE WHEN ${c} < CAST(${pLo} AS DOUBLE) THEN -1 WHEN ${c} > CAST(${pHi} AS DOUBLE) THEN ${pN} ` +
        `ELSE least(CAST(floor((${c} - CAST(${pLo} AS DOUBLE)) / CAST(${pW} AS DOUBLE)) AS BIGINT), ${pN} - 1) END`;
      const rows = await this.onRelation(
        rel,
        `SELECT ${bin} AS b, count(*) FROM ${rel.from} WHERE ${c} IS NOT NULL GROUP BY b`,
        params,
      );
      const counts = new Array<number>(count).fill(0);
      let below = 0;
      let above = 0;
      for (const r of rows) {
        const b = toNumber(r[0]) ?? 0;
        const n = toNumber(r[1]) ?? 0;
        if (b < 0) below += n;
        else if (b >= count) above += n;
        else counts[b] = (counts[b] ?? 0) + n;
      }
      return { counts, below, above };
    });
  }

  /** Row counts per distinct combination of the `by` features (nulls form their own group). */
  async groupCounts(token: string, by: string[], query?: Query): Promise<Array<{ key: Scalar[]; count: number }>> {
    const groups = await this.groupStats(token, by, [], query);
    return groups.map((g) => ({ key: g.key, count: g.count }));
  }

  /**
   * Per distinct combination of the `by` features: its row count, and for each feature the
   * count and (compensated) sum of its non-null values.
   */
  groupStats(
    token: string,
    by: string[],
    features: string[],
    query?: Query,
  ): Promise<Array<{ key: Scalar[]; count: number; n: number[]; sums: number[] }>> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      if (by.length === 0) throw new FdlError('BAD_QUERY', 'group by needs at least one feature', { path: 'by' });
      const exprs = by.map((name, i) => {
        const f = lookupFeature(rel.schema, name, `by[${i}]`);
        if (f.dtype === 'other') {
          throw new FdlError('BAD_QUERY', `cannot group by ${JSON.stringify(name)} of type ${f.sqlType}`, {
            path: `by[${i}]`,
          });
        }
        return valueExpr(f);
      });
      const cols = numericCols(rel, features, true);
      const keys = exprs.map((e, i) => `${e} AS k${i}`).join(', ');
      const groupBy = exprs.map((_, i) => `k${i}`).join(', ');
      const aggs = ['count(*)', ...cols.flatMap((c) => [`count(${c})`, `fsum(${c})`])].join(', ');
      const rows = await this.onRelation(
        rel,
        `SELECT ${keys}, ${aggs} FROM ${rel.from} GROUP BY ${groupBy} ORDER BY ${groupBy} NULLS LAST`,
      );
      const k = by.length;
      return rows.map((r) => {
        const n = cols.map((_, j) => toNumber(r[k + 1 + 2 * j]) ?? 0);
        return {
          key: r.slice(0, k).map(toScalar),
          count: toNumber(r[k]) ?? 0,
          n,
          sums: cols.map((_, j) => ((n[j] ?? 0) === 0 ? 0 : (toNumber(r[k + 2 + 2 * j]) ?? 0))),
        };
      });
    });
  }

  /**
   * The filtered rows' numeric features as typed arrays, one per feature (null -> NaN), for
   * models that train in TypeScript, in row id order (see above); `rowIds` holds each row's id,
   * the number the seeded split hashes (lib/ops/split.ts, `isTestRow(seed, rowIds[i], f)`).
   * `keep: false` reads them without keeping them here (unless they already are): for a caller
   * that keeps what it makes of them itself (the model datasets, lib/ops/models/data.ts), so a
   * worker does not hold the same rows twice.
   */
  async numericColumns(token: string, features: string[], query?: Query, opts: { keep?: boolean } = {}): Promise<NumericColumns> {
    if (opts.keep === false && !this.columnCache.has(columnsKey(token, features, query))) {
      return this.readNumericColumns(token, features, query); // the caller's own arrays: nothing to copy
    }
    // Callers get copies: a caller that writes into its arrays cannot spoil the cache.
    const value = await this.columnsOf(token, features, query);
    return {
      rows: value.rows,
      columns: Object.fromEntries(Object.entries(value.columns).map(([n, c]) => [n, c.slice()])),
      rowIds: value.rowIds.slice(),
    };
  }

  /**
   * The kept columns themselves (never to be written into). The rows never change after open
   * (sources are copied in, then file access is locked off), so the same request always has the
   * same columns: an Iterate's rounds read them once, not per round.
   */
  private columnsOf(token: string, features: string[], query?: Query): Promise<NumericColumns> {
    const key = columnsKey(token, features, query);
    let entry = this.columnCache.get(key);
    if (entry) {
      this.columnCache.delete(key); // most recently used goes last
      this.columnCache.set(key, entry);
      this.columnCacheHits++;
    } else {
      // Shared by every attempt that asks the same: read outside any one attempt's cancellation.
      entry = attemptSignal.exit(() => this.readNumericColumns(token, features, query));
      this.columnCache.set(key, entry);
      entry.then(
        (value) => this.fitColumnCache(key, value),
        () => this.columnCache.delete(key),
      );
    }
    return entry;
  }

  /** How often `numericColumns` was answered from memory (diagnostics and tests). */
  get numericColumnsCacheHits(): number {
    return this.columnCacheHits;
  }

  /** Drops least recently used answers until the cache fits its byte budget. */
  private fitColumnCache(key: string, value: NumericColumns): void {
    const size = (v: NumericColumns) => v.rowIds.byteLength + Object.values(v.columns).reduce((a, c) => a + c.byteLength, 0);
    this.columnCacheSizes.set(key, size(value));
    let total = 0;
    for (const s of this.columnCacheSizes.values()) total += s;
    for (const oldest of this.columnCache.keys()) {
      if (total <= this.columnCacheBytes) break;
      const s = this.columnCacheSizes.get(oldest);
      if (s === undefined) continue; // still being read
      this.columnCache.delete(oldest);
      this.columnCacheSizes.delete(oldest);
      total -= s;
    }
  }

  private readNumericColumns(token: string, features: string[], query?: Query): Promise<NumericColumns> {
    return this.op(async () => {
      const rel = await this.relation(token, query);
      const { names, cols } = numericFeatures(rel, features, true);
      const rows = await this.onRelation(
        rel,
        `SELECT ${cols.join(', ')}, ${quoteIdent(ROW_ID)} FROM ${rel.from} ORDER BY ${quoteIdent(ROW_ID)}`,
      );
      const columns = Object.fromEntries(names.map((n) => [n, new Float64Array(rows.length)]));
      const rowIds = new Uint32Array(rows.length);
      for (const [r, row] of rows.entries()) {
        for (const [c, n] of names.entries()) {
          const v = row[c];
          (columns[n] as Float64Array)[r] = typeof v === 'number' ? v : Number.NaN;
        }
        rowIds[r] = toNumber(row[names.length]) ?? 0;
      }
      return { rows: rows.length, columns, rowIds };
    });
  }

  /**
   * Test and diagnostic aid: runs SQL as it is on the locked connection. Never pass it text
   * that came from another node.
   */
  unsafeRawQuery(sql: string): Promise<Scalar[][]> {
    return this.op(async () => (await this.query(sql, [], false)).map((r) => r.map(toScalar)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    await this.tail.catch(() => undefined);
    this.shut = true;
    this.conn.closeSync();
    this.instance.closeSync();
  }

  // ---------------------------------------------------------------- internals

  private checkOpen(): void {
    if (this.closed) throw new FdlError('DATA_UNAVAILABLE', 'the data engine is closed');
  }

  /** One unit of work (several statements): refused once close() began; close() waits for it. */
  private op<T>(fn: () => Promise<T>): Promise<T> {
    try {
      this.checkOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const p = fn();
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Rows of the token's data on this node: the union of its data sources bound to it (before any query). */
  rowsOf(token: string): number {
    return this.project(token).sources.reduce((n, s) => n + s.rows, 0);
  }

  private project(token: string): Project {
    this.checkOpen();
    const p = this.projects.get(token);
    // The token is a credential: it is not echoed in the message.
    if (p === undefined) throw new FdlError('DATA_UNAVAILABLE', 'no data source of this node is bound to the project');
    return p;
  }

  /** The query compiled over the project's view (fitting the unfitted transformers on this node's rows). */
  private relation(token: string, query: Query | undefined): Promise<Relation> {
    const p = this.project(token);
    return compileRelation(p.view, p.schema, query, (sql, params) => this.query(sql, params, true));
  }

  /** A statement over a relation: its CTEs, then `select`, whose own placeholders follow the relation's. */
  private onRelation(rel: Relation, select: string, params: Scalar[] = rel.params): Promise<unknown[][]> {
    return this.query(withRelation(rel, select), params, true);
  }

  /** Runs one statement at a time on the connection; DuckDB errors become FdlErrors. */
  private query(sql: string, params: Scalar[], fromQuery: boolean): Promise<unknown[][]> {
    if (this.shut) return Promise.reject(new FdlError('DATA_UNAVAILABLE', 'the data engine is closed'));
    // No second check when it runs: close() waits for the queries already queued.
    // The attempt this statement is for (see `forAttempt`): cancelled, a queued statement never
    // starts and a running one is interrupted (the connection runs one statement at a time, so
    // the interrupt reaches this one only).
    const signal = attemptSignal.getStore();
    const run = async (): Promise<unknown[][]> => {
      if (signal?.aborted) throw cancelledBy(signal);
      const interrupt = () => this.conn.interrupt();
      signal?.addEventListener('abort', interrupt, { once: true });
      try {
        const reader = await this.conn.runAndReadAll(sql, params as DuckDBValue[], paramTypes(params));
        return reader.getRowsJS() as unknown[][];
      } catch (e) {
        if (signal?.aborted) throw cancelledBy(signal);
        if (isFdlError(e)) throw e;
        const msg = firstLine(e);
        if (fromQuery && USER_ERROR.test(msg)) throw new FdlError('BAD_QUERY', msg, { path: 'query', cause: e });
        throw new FdlError('INTERNAL', `data engine: ${msg}`, { cause: e });
      } finally {
        signal?.removeEventListener('abort', interrupt);
      }
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async sourceMeta(s: Source): Promise<DataSourceMeta> {
    const parts: string[] = ['count(*)'];
    for (const f of s.schema) {
      const c = quoteIdent(f.name);
      parts.push(`count(${c})`, f.dtype === 'other' ? 'NULL' : `count(DISTINCT ${c})`);
      if (f.dtype === 'numeric') {
        parts.push(`min(${c})::DOUBLE`, `max(${c})::DOUBLE`, `avg(${c})::DOUBLE`, `stddev_samp(${c})::DOUBLE`);
      }
    }
    const row = (await this.query(`SELECT ${parts.join(', ')} FROM ${s.table}`, [], false))[0] ?? [];
    let i = 0;
    const next = (): unknown => row[i++];
    const rows = toNumber(next()) ?? 0;
    const features: FeatureMeta[] = [];
    for (const f of s.schema) {
      const nonNull = toNumber(next()) ?? 0;
      const distinct = toNumber(next());
      const meta: FeatureMeta = { name: f.name, dtype: f.dtype, sqlType: f.sqlType, missing: rows - nonNull };
      if (f.dtype === 'numeric') {
        meta.min = toNumber(next());
        meta.max = toNumber(next());
        meta.mean = toNumber(next());
        meta.std = toNumber(next());
      } else {
        meta.min = meta.max = meta.mean = meta.std = null;
      }
      if (distinct !== null && distinct <= MAX_CATEGORIES) {
        const values = await this.query(
          `SELECT DISTINCT ${valueExpr(f)} AS v FROM ${s.table} WHERE ${quoteIdent(f.name)} IS NOT NULL ORDER BY v`,
          [],
          false,
        );
        meta.categories = values.map((r) => toScalar(r[0]));
        if (meta.missing > 0) meta.categories.push(null);
      }
      features.push(meta);
    }
    return { name: s.config.name, rows, features };
  }
}

/** What a Variance job takes from its rows, per feature (see `DataEngine.spread`). */
export interface Spread {
  n: number;
  /** Compensated sum of x. */
  sum: number;
  /** Compensated sum of x - shift. */
  shifted: number;
  /** Sum of squared deviations from the local mean. */
  m2: number;
  /** How m2 was taken: Q - D^2/n from the one scan, or the second scan's var_pop (the shift was too far). */
  from: 'squares' | 'var_pop';
}

/** `DataEngine.spread` keeps m2 = Q - D^2/n while (local mean - shift)^2 / local variance is at most this. */
export const SPREAD_MAX_RHO = 2 ** 16;

/** The width of one of `count` equal bins over [lo, hi]: every node computes it the same way. */
export function binWidth(bins: { lo: number; hi: number; count: number }): number {
  return (bins.hi - bins.lo) / bins.count;
}

/** The numeric features of a relation as SQL columns (DOUBLE when `asDouble`); anything else is BAD_QUERY. */
/** The distinct numeric features asked for, and their SQL columns; none, or a non-numeric one, is a BAD_QUERY. */
/** The key of a request for columns (`columnsOf`): the same request has the same columns. */
function columnsKey(token: string, features: readonly string[], query: Query | undefined): string {
  return JSON.stringify([token, features, query ?? null]);
}

/**
 * Per feature, the compensated (Neumaier) sum of its kept column and its count; undefined when a
 * column holds a NaN, which stands there for a null or a NaN alike (DuckDB counts them apart), an
 * infinity, or sums past the largest double: DuckDB answers those.
 */
function sumsOfColumns(kept: NumericColumns, names: readonly string[]): Sums | undefined {
  const sums: Record<string, number> = {};
  const counts: Record<string, number> = {};
  for (const name of names) {
    const column = kept.columns[name];
    if (column === undefined) return undefined;
    let sum = 0;
    let compensation = 0; // the low-order bits each addition lost, added back at the end
    for (let i = 0; i < column.length; i++) {
      const x = column[i] as number;
      if (!Number.isFinite(x)) return undefined; // NaN (a null, or a NaN) or an infinity: DuckDB's to judge
      const t = sum + x;
      compensation += Math.abs(sum) >= Math.abs(x) ? sum - t + x : x - t + sum;
      sum = t;
    }
    const total = sum + compensation;
    if (!Number.isFinite(total)) return undefined; // overflowed: DuckDB says what that gives
    sums[name] = total;
    counts[name] = column.length;
  }
  return { sums, counts };
}

function numericFeatures(rel: Relation, features: readonly string[], asDouble = false): { names: string[]; cols: string[] } {
  const names = [...new Set(features)];
  if (names.length === 0) throw new FdlError('BAD_QUERY', 'no feature given', { path: 'features' });
  return { names, cols: numericCols(rel, names, asDouble) };
}

function numericCols(rel: Relation, names: readonly string[], asDouble = false): string[] {
  return names.map((name, i) => {
    const f = lookupFeature(rel.schema, name, `features[${i}]`);
    if (f.dtype !== 'numeric') {
      throw new FdlError('BAD_QUERY', `feature ${JSON.stringify(name)} is ${f.dtype}, not numeric`, {
        path: `features[${i}]`,
      });
    }
    return asDouble ? `CAST(${quoteIdent(f.name)} AS DOUBLE)` : quoteIdent(f.name);
  });
}

/** What a feature's values look like on the wire: datetimes as their ISO text, the rest as they are. */
function valueExpr(f: FeatureMeta): string {
  const c = quoteIdent(f.name);
  return f.dtype === 'datetime' ? `CAST(${c} AS VARCHAR)` : c;
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0] ?? msg;
}

async function describe(conn: DuckDBConnection, relation: string): Promise<FeatureMeta[]> {
  const cols = (await conn.runAndReadAll(`DESCRIBE ${relation}`)).getRowObjectsJS();
  const nulls = cols.map((c) => `count(*) - count(${quoteIdent(String(c.column_name))})`);
  const missing =
    nulls.length === 0 ? [] : ((await conn.runAndReadAll(`SELECT ${nulls.join(', ')} FROM ${relation}`)).getRowsJS()[0] ?? []);
  return cols.map((c, i) => {
    const sqlType = String(c.column_type);
    return { name: String(c.column_name), dtype: dtypeOf(sqlType), sqlType, missing: toNumber(missing[i]) ?? 0 };
  });
}

async function loadSource(conn: DuckDBConnection, config: DataSourceConfig, table: string): Promise<Source> {
  const what = `data source ${JSON.stringify(config.name)} (${config.path})`;
  if (typeof config.name !== 'string' || config.name.length === 0) {
    throw new FdlError('DATA_UNAVAILABLE', `a data source has no name (${config.path})`);
  }
  const format = formatOf(config);
  if (format === undefined) {
    throw new FdlError('DATA_UNAVAILABLE', `${what}: cannot tell its format from the extension; set "format"`);
  }
  const path = resolve(config.path);
  let loaded: Source;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error('not a regular file');
  } catch (e) {
    throw new FdlError('DATA_UNAVAILABLE', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    // A table function's argument can be a bound parameter in CREATE TABLE AS (not in CREATE VIEW).
    await conn.run(`CREATE TABLE ${table} AS SELECT * FROM ${readerSql(format)}`, [path]);
    const schema = await describe(conn, table);
    const counted = (await conn.runAndReadAll(`SELECT count(*) FROM ${table}`)).getRowsJS()[0]?.[0];
    loaded = { config, table, schema, rows: toNumber(counted) ?? 0 };
  } catch (e) {
    throw new FdlError('DATA_UNAVAILABLE', `${what} cannot be read as ${format}: ${firstLine(e)}`, { cause: e });
  }
  if (loaded.schema.some((f) => f.name === ROW_ID)) {
    throw new FdlError('DATA_UNAVAILABLE', `${what} has a column named ${JSON.stringify(ROW_ID)}, a name the engine reserves`);
  }
  return loaded;
}

/**
 * The engine as one job attempt sees it: every call naming a project token (every read of a
 * project's data does) tells `onRead`, so the job's report can say which data it covered; and
 * every statement it runs is bound to the attempt's `signal`: cancelled, a queued statement never
 * starts and a running one is interrupted (DuckDB's `interrupt`), failing with CANCELLED.
 */
export function forAttempt(engine: DataEngine, attempt: { onRead: (token: string) => void; signal: AbortSignal }): DataEngine {
  return new Proxy(engine, {
    get(target, prop) {
      if (prop === BEHIND) return target;
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (typeof args[0] === 'string') attempt.onRead(args[0]);
        return attemptSignal.run(attempt.signal, () => (v as (...a: unknown[]) => unknown).apply(target, args));
      };
    },
  });
}

/** The cancellation signal of the attempt a statement runs for (set by `forAttempt`'s view of the engine). */
const attemptSignal = new AsyncLocalStorage<AbortSignal>();

const cancelledBy = (signal: AbortSignal): FdlError =>
  isFdlError(signal.reason) ? signal.reason : new FdlError('CANCELLED', 'the job was cancelled', { retryable: false });
