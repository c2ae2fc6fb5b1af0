import type { FeatureMeta, Filter, FilterCondition, Query, Scalar } from '../../protocols/entities.ts';
import { FilterOps } from '../../protocols/entities.ts';
import { FdlError } from '../errors.ts';

/**
 * Query -> SQL boolean expression + positional parameters.
 *
 * Injection-proof by construction: a feature name reaches SQL only after it was found in the
 * schema, and then only as a double-quoted identifier with `"` doubled; a value never reaches
 * SQL at all (it is always a numbered `$n` parameter).
 *
 * Null semantics: `==`/`!=` are `IS NOT DISTINCT FROM`/`IS DISTINCT FROM`, so `== null` works
 * and `!=` is the exact complement of `==` (rows with a null are kept by `!= 3`). Likewise a
 * `null` inside an `in` list matches nulls, and `not in` is the exact complement of `in`.
 * Ordering comparisons and `between` never match a null and refuse a null value.
 */

export interface CompiledWhere {
  /** A boolean SQL expression (no `WHERE` keyword); `TRUE` when the query has no filter. */
  sql: string;
  /** Values of the `$1, $2, ...` placeholders. */
  params: Scalar[];
}

/** Limits beyond the wire schema's (z.lazy does not bound nesting). */
export const MAX_FILTER_DEPTH = 32;
export const MAX_FILTER_PARAMS = 100_000;

const FILTER_OPS: ReadonlySet<string> = new Set(FilterOps);

/** A SQL identifier: always double-quoted, `"` doubled. Refuses NUL, which DuckDB cannot hold. */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new FdlError('BAD_QUERY', 'a feature name contains a NUL character');
  return `"${name.replaceAll('"', '""')}"`;
}

export type Schema = ReadonlyMap<string, FeatureMeta>;

export function schemaMap(features: readonly FeatureMeta[]): Schema {
  return new Map(features.map((f) => [f.name, f]));
}

/** Looks a feature up by its exact name (no case folding): unknown -> BAD_QUERY. */
export function lookupFeature(schema: Schema, name: unknown, path: string): FeatureMeta {
  if (typeof name !== 'string') throw new FdlError('BAD_QUERY', 'a feature name must be a string', { path });
  const f = schema.get(name);
  if (f === undefined) throw new FdlError('BAD_QUERY', `unknown feature ${JSON.stringify(name)}`, { path });
  return f;
}

/**
 * The `where` part of a query (its stages are compiled by lib/data/stages.ts). Placeholders are
 * numbered (`$n`) after the values already in `params`, which it appends to and returns.
 */
export function compileQuery(query: Query | undefined, schema: Schema, path = 'query', params: Scalar[] = []): CompiledWhere {
  if (query === undefined || query === null) return { sql: 'TRUE', params };
  if (typeof query !== 'object' || Array.isArray(query)) {
    throw new FdlError('BAD_QUERY', 'a query must be an object', { path });
  }
  if (query.where === undefined) return { sql: 'TRUE', params };
  return { sql: compileFilter(query.where, schema, `${path}.where`, params), params };
}

/** A filter as a SQL boolean expression; its values are appended to `params` as `$n` placeholders. */
export function compileFilter(f: Filter, schema: Schema, path: string, params: Scalar[], depth = 0): string {
  return compileFilterAt(f, schema, path, params, depth);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function compileFilterAt(f: Filter, schema: Schema, path: string, params: Scalar[], depth: number): string {
  if (depth > MAX_FILTER_DEPTH) {
    throw new FdlError('BAD_QUERY', `filters nest deeper than ${MAX_FILTER_DEPTH} levels`, { path });
  }
  if (!isObject(f)) throw new FdlError('BAD_QUERY', 'a filter must be an object', { path });
  const keys = Object.keys(f);
  for (const junction of ['and', 'or'] as const) {
    if (!(junction in f)) continue;
    if (keys.length !== 1) {
      throw new FdlError('BAD_QUERY', `an "${junction}" filter must have no other field`, { path });
    }
    const list = (f as Record<string, unknown>)[junction];
    if (!Array.isArray(list) || list.length === 0) {
      throw new FdlError('BAD_QUERY', `"${junction}" needs a non-empty list of filters`, { path: `${path}.${junction}` });
    }
    const parts = list.map((sub, i) =>
      compileFilterAt(sub as Filter, schema, `${path}.${junction}[${i}]`, params, depth + 1),
    );
    return `(${parts.join(junction === 'and' ? ' AND ' : ' OR ')})`;
  }
  return compileCondition(f as FilterCondition, schema, path, params);
}

/** A value checked against a feature's type (numbers finite, strings for text and datetimes). */
export function checkValue(v: unknown, feature: FeatureMeta, path: string): Scalar {
  if (v === null) return null;
  const want =
    feature.dtype === 'numeric'
      ? 'number'
      : feature.dtype === 'boolean'
        ? 'boolean'
        : feature.dtype === 'string' || feature.dtype === 'datetime'
          ? 'string'
          : undefined;
  if (want === undefined) {
    throw new FdlError('BAD_QUERY', `feature ${JSON.stringify(feature.name)} (${feature.sqlType}) can only be tested for null`, {
      path,
    });
  }
  if (typeof v !== want) {
    throw new FdlError(
      'BAD_QUERY',
      `feature ${JSON.stringify(feature.name)} is ${feature.dtype}: a value must be a ${want}${feature.dtype === 'datetime' ? ' (ISO date/time)' : ''}, not ${typeof v}`,
      { path },
    );
  }
  if (typeof v === 'number' && !Number.isFinite(v)) {
    throw new FdlError('BAD_QUERY', 'a number value must be finite', { path });
  }
  return v as Scalar;
}

/** Binds one value; returns its placeholder. */
export function push(params: Scalar[], v: Scalar, path: string): string {
  if (params.length >= MAX_FILTER_PARAMS) {
    throw new FdlError('BAD_QUERY', `a query may bind at most ${MAX_FILTER_PARAMS} values`, { path });
  }
  params.push(v);
  return `$${params.length}`;
}

function compileCondition(c: FilterCondition, schema: Schema, path: string, params: Scalar[]): string {
  for (const k of Object.keys(c)) {
    if (k !== 'feature' && k !== 'op' && k !== 'value') {
      throw new FdlError('BAD_QUERY', `a filter condition has no field ${JSON.stringify(k)}`, { path });
    }
  }
  const feature = lookupFeature(schema, c.feature, `${path}.feature`);
  const col = quoteIdent(feature.name);
  const op: unknown = c.op;
  if (typeof op !== 'string' || !FILTER_OPS.has(op)) {
    throw new FdlError('BAD_QUERY', `unknown filter op ${JSON.stringify(op)}`, { path: `${path}.op` });
  }
  const vpath = `${path}.value`;
  const value: unknown = c.value;
  switch (op as FilterCondition['op']) {
    case 'is null':
    case 'not null': {
      if (value !== undefined) throw new FdlError('BAD_QUERY', `"${op}" takes no value`, { path: vpath });
      return op === 'is null' ? `(${col} IS NULL)` : `(${col} IS NOT NULL)`;
    }
    case '==':
    case '!=': {
      if (value === undefined || Array.isArray(value)) {
        throw new FdlError('BAD_QUERY', `"${op}" needs a single value`, { path: vpath });
      }
      const p = push(params, checkValue(value, feature, vpath), vpath);
      return op === '==' ? `(${col} IS NOT DISTINCT FROM ${p})` : `(${col} IS DISTINCT FROM ${p})`;
    }
    case '<':
    case '<=':
    case '>':
    case '>=': {
      if (value === undefined || value === null || Array.isArray(value)) {
        throw new FdlError('BAD_QUERY', `"${op}" needs a single non-null value`, { path: vpath });
      }
      if (feature.dtype === 'boolean') {
        throw new FdlError('BAD_QUERY', `"${op}" does not apply to the boolean feature ${JSON.stringify(feature.name)}`, {
          path: vpath,
        });
      }
      const p = push(params, checkValue(value, feature, vpath), vpath);
      return `(${col} ${op} ${p})`;
    }
    case 'between': {
      if (!Array.isArray(value) || value.length !== 2) {
        throw new FdlError('BAD_QUERY', '"between" needs a list [low, high] of two values', { path: vpath });
      }
      if (value[0] === null || value[1] === null) {
        throw new FdlError('BAD_QUERY', '"between" bounds cannot be null', { path: vpath });
      }
      const lo = push(params, checkValue(value[0], feature, `${vpath}[0]`), vpath);
      const hi = push(params, checkValue(value[1], feature, `${vpath}[1]`), vpath);
      return `(${col} BETWEEN ${lo} AND ${hi})`;
    }
    case 'in':
    case 'not in': {
      if (!Array.isArray(value)) {
        throw new FdlError('BAD_QUERY', `"${op}" needs a list of values`, { path: vpath });
      }
      let hasNull = false;
      const marks: string[] = [];
      value.forEach((v, i) => {
        const s = checkValue(v, feature, `${vpath}[${i}]`);
        if (s === null) hasNull = true;
        else marks.push(push(params, s, vpath));
      });
      // `x IN (...)` is NULL, not FALSE, for a null x: COALESCE makes it a plain boolean so
      // that NOT gives the exact complement.
      const member = marks.length === 0 ? 'FALSE' : `COALESCE(${col} IN (${marks.join(', ')}), FALSE)`;
      const isIn = hasNull ? `(${member} OR ${col} IS NULL)` : `(${member})`;
      return op === 'in' ? isIn : `(NOT ${isIn})`;
    }
  }
}
