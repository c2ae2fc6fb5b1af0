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
import { compileQuery, lookupFeature, quoteIdent, type Schema, schemaMap } from './sql.ts';

/**
 * The worker's local data engine: one in-memory DuckDB holding a copy of each data source.
 *
 * At `open` every file is read into a TABLE, then the database is locked
 * (`enable_external_access = false`, `lock_configuration = true`): from then on no statement
 * can read or write any file, load an extension or change a setting. A VIEW over a file would
 * stop working under that lock (DuckDB checks the file access at every scan), hence the copy.
 * The data is a snapshot taken at `open`; reopen the engine to see new data.
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

export class DataEngine {
  private closed = false;
  /** Tail of the queue that serializes use of the one connection. */
  private tail: Promise<unknown> = Promise.resolve();

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
        const union = p.sources.map((s) => `SELECT * FROM ${s.table}`).join(' UNION ALL BY NAME ');
        try {
          await conn.run(`CREATE VIEW ${p.view} AS ${union}`);
          p.features = await describe(conn, p.view);
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
  async metadata(): Promise<ProjectData[]> {
    this.checkOpen();
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

  async count(token: string, query?: Query): Promise<number> {
    const p = this.project(token);
    const where = compileQuery(query, p.schema);
    const rows = await this.query(`SELECT count(*) FROM ${p.view} WHERE ${where.sql}`, where.params, query !== undefined);
    return toNumber(rows[0]?.[0]) ?? 0;
  }

  /** Per feature: the SUM and the COUNT of its non-null values over the filtered rows. */
  async sums(
    token: string,
    features: string[],
    query?: Query,
  ): Promise<{ sums: Record<string, number>; counts: Record<string, number> }> {
    const p = this.project(token);
    const names = [...new Set(features)];
    if (names.length === 0) throw new FdlError('BAD_QUERY', 'no feature to sum', { path: 'features' });
    const cols = names.map((name, i) => {
      const f = lookupFeature(p.schema, name, `features[${i}]`);
      if (f.dtype !== 'numeric') {
        throw new FdlError('BAD_QUERY', `feature ${JSON.stringify(name)} is ${f.dtype}, not numeric`, {
          path: `features[${i}]`,
        });
      }
      return quoteIdent(f.name);
    });
    const where = compileQuery(query, p.schema);
    const select = cols.map((c) => `sum(${c}), count(${c})`).join(', ');
    const rows = await this.query(`SELECT ${select} FROM ${p.view} WHERE ${where.sql}`, where.params, query !== undefined);
    const row = rows[0] ?? [];
    const sums = Object.fromEntries(names.map((n, i) => [n, toNumber(row[2 * i]) ?? 0]));
    const counts = Object.fromEntries(names.map((n, i) => [n, toNumber(row[2 * i + 1]) ?? 0]));
    return { sums, counts };
  }

  /** Row counts per distinct combination of the `by` features (nulls form their own group). */
  async groupCounts(token: string, by: string[], query?: Query): Promise<Array<{ key: Scalar[]; count: number }>> {
    const p = this.project(token);
    if (by.length === 0) throw new FdlError('BAD_QUERY', 'group by needs at least one feature', { path: 'by' });
    const exprs = by.map((name, i) => {
      const f = lookupFeature(p.schema, name, `by[${i}]`);
      if (f.dtype === 'other') {
        throw new FdlError('BAD_QUERY', `cannot group by ${JSON.stringify(name)} of type ${f.sqlType}`, {
          path: `by[${i}]`,
        });
      }
      return valueExpr(f);
    });
    const where = compileQuery(query, p.schema);
    const keys = exprs.map((e, i) => `${e} AS k${i}`).join(', ');
    const groupBy = exprs.map((_, i) => `k${i}`).join(', ');
    const rows = await this.query(
      `SELECT ${keys}, count(*) FROM ${p.view} WHERE ${where.sql} GROUP BY ${groupBy} ORDER BY ${groupBy} NULLS LAST`,
      where.params,
      query !== undefined,
    );
    return rows.map((r) => ({ key: r.slice(0, by.length).map(toScalar), count: toNumber(r[by.length]) ?? 0 }));
  }

  /**
   * The filtered rows' numeric features as typed arrays, one per feature (null -> NaN), for
   * models that train in TypeScript. Rows are in the engine's scan order (stable for a source).
   */
  async numericColumns(
    token: string,
    features: string[],
    query?: Query,
  ): Promise<{ rows: number; columns: Record<string, Float64Array> }> {
    const p = this.project(token);
    const names = [...new Set(features)];
    if (names.length === 0) throw new FdlError('BAD_QUERY', 'no feature to read', { path: 'features' });
    const cols = names.map((name, i) => {
      const f = lookupFeature(p.schema, name, `features[${i}]`);
      if (f.dtype !== 'numeric') {
        throw new FdlError('BAD_QUERY', `feature ${JSON.stringify(name)} is ${f.dtype}, not numeric`, {
          path: `features[${i}]`,
        });
      }
      return `CAST(${quoteIdent(f.name)} AS DOUBLE)`;
    });
    const where = compileQuery(query, p.schema);
    const rows = await this.query(`SELECT ${cols.join(', ')} FROM ${p.view} WHERE ${where.sql}`, where.params, query !== undefined);
    const columns = Object.fromEntries(names.map((n) => [n, new Float64Array(rows.length)]));
    for (const [r, row] of rows.entries()) {
      for (const [c, n] of names.entries()) {
        const v = row[c];
        (columns[n] as Float64Array)[r] = typeof v === 'number' ? v : Number.NaN;
      }
    }
    return { rows: rows.length, columns };
  }

  /**
   * Test and diagnostic aid: runs SQL as it is on the locked connection. Never pass it text
   * that came from another node.
   */
  async unsafeRawQuery(sql: string): Promise<Scalar[][]> {
    const rows = await this.query(sql, [], false);
    return rows.map((r) => r.map(toScalar));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => undefined);
    this.conn.closeSync();
    this.instance.closeSync();
  }

  // ---------------------------------------------------------------- internals

  private checkOpen(): void {
    if (this.closed) throw new FdlError('DATA_UNAVAILABLE', 'the data engine is closed');
  }

  private project(token: string): Project {
    this.checkOpen();
    const p = this.projects.get(token);
    // The token is a credential: it is not echoed in the message.
    if (p === undefined) throw new FdlError('DATA_UNAVAILABLE', 'no data source of this node is bound to the project');
    return p;
  }

  /** Runs one statement at a time on the connection; DuckDB errors become FdlErrors. */
  private query(sql: string, params: Scalar[], fromQuery: boolean): Promise<unknown[][]> {
    this.checkOpen();
    // No second check when it runs: close() waits for the queries already queued.
    const run = async (): Promise<unknown[][]> => {
      try {
        const reader = await this.conn.runAndReadAll(sql, params as DuckDBValue[], paramTypes(params));
        return reader.getRowsJS() as unknown[][];
      } catch (e) {
        if (isFdlError(e)) throw e;
        const msg = firstLine(e);
        if (fromQuery && USER_ERROR.test(msg)) throw new FdlError('BAD_QUERY', msg, { path: 'query', cause: e });
        throw new FdlError('INTERNAL', `data engine: ${msg}`, { cause: e });
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
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error('not a regular file');
  } catch (e) {
    throw new FdlError('DATA_UNAVAILABLE', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    // A table function's argument can be a bound parameter in CREATE TABLE AS (not in CREATE VIEW).
    await conn.run(`CREATE TABLE ${table} AS SELECT * FROM ${readerSql(format)}`, [path]);
    return { config, table, schema: await describe(conn, table) };
  } catch (e) {
    throw new FdlError('DATA_UNAVAILABLE', `${what} cannot be read as ${format}: ${firstLine(e)}`, { cause: e });
  }
}
