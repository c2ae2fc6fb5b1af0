import type { Expr, ExprFn, FeatureMeta, Query, QueryStage, Scalar } from '../../protocols/entities.ts';
import { FdlError } from '../errors.ts';
import { checkValue, compileFilter, lookupFeature, push, quoteIdent, type Schema } from './sql.ts';

/**
 * A query's pipeline -> a chain of SQL common table expressions, one per stage:
 *
 *   WITH s0 AS (SELECT * FROM project_view),
 *        s1 AS (SELECT * FROM s0 WHERE <where>),
 *        s2 AS (SELECT <columns of stage 0>, __fdl_row FROM s1 [WHERE ...]), ...
 *
 * Every stage lists its columns explicitly, each an expression over the previous stage's
 * columns: a feature name reaches SQL only after it was found in the current schema, always
 * quoted; every value (constants, fitted parameters, categories) is a bound `$n` parameter.
 * The hidden `__fdl_row` column (the row's position in the worker's data, see engine.ts)
 * travels through every stage for the seeded split; it is never a feature.
 *
 * A transformer with no `fitted` parameters is fitted here, on the rows reaching it, by an
 * aggregate query over the stages before it (Ferdelance's per-worker fitting). Its parameters
 * are only bound into this node's SQL: they never leave the node.
 */

/** The hidden row-position column of every project view. */
export const ROW_ID = '__fdl_row';

/** Bounds on a derived expression (the wire schema cannot bound a recursive tree). */
export const MAX_EXPR_NODES = 256;
export const MAX_EXPR_DEPTH = 32;

export interface Relation {
  /** The common table expressions, `sN AS (...)`, in order. */
  ctes: string[];
  /** Values of the `$n` placeholders of the CTEs (a statement over the relation appends its own). */
  params: Scalar[];
  /** The name of the last CTE: the rows of the query. */
  from: string;
  /** The features after the last stage, in column order. */
  schema: Schema;
}

/** Runs one SQL statement of this node (for fitting and checks): never a peer's text. */
export type Runner = (sql: string, params: Scalar[]) => Promise<unknown[][]>;

/** `WITH <ctes> <select>`: a statement over the relation. */
export function withRelation(rel: Relation, select: string): string {
  return `WITH ${rel.ctes.join(', ')} ${select}`;
}

function bad(message: string, path: string): FdlError {
  return new FdlError('BAD_QUERY', message, { path });
}

function addCte(rel: Relation, select: string): void {
  const name = `s${rel.ctes.length}`;
  rel.ctes.push(`${name} AS (${select})`);
  rel.from = name;
}

/** Keeps the rows where `condition` (a SQL boolean over the current columns) holds. */
function addFilter(rel: Relation, condition: string): void {
  addCte(rel, `SELECT * FROM ${rel.from} WHERE ${condition}`);
}

interface Column {
  meta: FeatureMeta;
  /** The SQL expression of the column over the previous stage's columns. */
  sql: string;
}

/** The current columns, each as itself: the start of a projection stage. */
function identity(rel: Relation): Map<string, Column> {
  return new Map([...rel.schema.values()].map((meta) => [meta.name, { meta, sql: quoteIdent(meta.name) }]));
}

/** Adds a stage that selects `cols` (and the hidden row id); the schema becomes `cols`. */
function addProjection(rel: Relation, cols: Map<string, Column>, path: string): void {
  for (const name of cols.keys()) {
    if (name === ROW_ID) throw bad(`${JSON.stringify(ROW_ID)} is a reserved name`, path);
  }
  const list = [...cols.values()].map((c) => `${c.sql} AS ${quoteIdent(c.meta.name)}`);
  list.push(quoteIdent(ROW_ID));
  addCte(rel, `SELECT ${list.join(', ')} FROM ${rel.from}`);
  rel.schema = new Map([...cols.values()].map((c) => [c.meta.name, c.meta]));
}

const derivedMeta = (name: string, dtype: FeatureMeta['dtype'] = 'numeric', sqlType = 'DOUBLE'): FeatureMeta => ({
  name,
  dtype,
  sqlType,
  missing: 0,
});

/** A numeric feature of the current schema, as DOUBLE SQL. */
function numeric(rel: Relation, name: string, path: string): { meta: FeatureMeta; sql: string } {
  const meta = lookupFeature(rel.schema, name, path);
  if (meta.dtype !== 'numeric') throw bad(`feature ${JSON.stringify(name)} is ${meta.dtype}, not numeric`, path);
  return { meta, sql: `CAST(${quoteIdent(meta.name)} AS DOUBLE)` };
}

const double = (params: Scalar[], v: number, path: string): string => `CAST(${push(params, v, path)} AS DOUBLE)`;

/** Input features and their output names (in place by default); both lists without repeats. */
function ioPairs(features: readonly string[], outputs: readonly string[] | undefined, path: string): Array<[string, string]> {
  if (new Set(features).size !== features.length) throw bad('a feature is listed twice', `${path}.features`);
  const outs = outputs ?? features;
  if (outs.length !== features.length) {
    throw bad(`${outs.length} outputs for ${features.length} features`, `${path}.outputs`);
  }
  if (new Set(outs).size !== outs.length) throw bad('an output name is listed twice', `${path}.outputs`);
  return features.map((f, i) => [f, outs[i] as string]);
}

/** Per-feature fitted parameters: given, or fitted now by one aggregate query over the relation. */
async function fittedOr<T>(
  given: readonly T[] | undefined,
  count: number,
  path: string,
  fit: () => Promise<T[]>,
): Promise<T[]> {
  if (given === undefined) return fit();
  if (given.length !== count) throw bad(`${given.length} fitted entries for ${count} features`, `${path}.fitted`);
  return [...given];
}

/** One row of aggregates over the relation's rows. */
async function aggregateRow(rel: Relation, run: Runner, exprs: string[], params: Scalar[]): Promise<unknown[]> {
  const rows = await run(withRelation(rel, `SELECT ${exprs.join(', ')} FROM ${rel.from}`), params);
  return rows[0] ?? [];
}

const num = (v: unknown): number | null => {
  if (typeof v === 'bigint') return Number(v);
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
};

// ---------------------------------------------------------------- derived expressions

function countNodes(e: unknown, depth: number, path: string, state: { nodes: number }): void {
  if (depth > MAX_EXPR_DEPTH) throw bad(`an expression nests deeper than ${MAX_EXPR_DEPTH} levels`, path);
  if (++state.nodes > MAX_EXPR_NODES) throw bad(`an expression has more than ${MAX_EXPR_NODES} nodes`, path);
  if (typeof e === 'object' && e !== null && Array.isArray((e as { args?: unknown }).args)) {
    for (const [i, a] of ((e as { args: unknown[] }).args ?? []).entries()) countNodes(a, depth + 1, `${path}.args[${i}]`, state);
  }
}

const ARITY: Record<ExprFn, [number, number]> = {
  '+': [1, 16],
  '-': [1, 2],
  '*': [1, 16],
  '/': [2, 2],
  neg: [1, 1],
  abs: [1, 1],
  sqrt: [1, 1],
  log: [1, 1],
  exp: [1, 1],
  pow: [2, 2],
  min: [1, 16],
  max: [1, 16],
  round: [1, 1],
  floor: [1, 1],
  ceil: [1, 1],
};

/** `f(v)` for one value computed once (a one-element list mapped by a lambda): no SQL repeats `a`. */
const guarded = (a: string, body: string): string => `list_transform([${a}], lambda v: ${body})[1]`;

/** An expression tree -> DOUBLE SQL. Nulls propagate, except through min/max, which skip them (as SQL's least/greatest). */
export function compileExpr(e: Expr, rel: Relation, params: Scalar[], path: string): string {
  if (typeof e === 'number') {
    if (!Number.isFinite(e)) throw bad('a number must be finite', path);
    return double(params, e, path);
  }
  if (typeof e !== 'object' || e === null || Array.isArray(e)) throw bad('an expression must be a number or an object', path);
  if ('feature' in e) {
    if (Object.keys(e).length !== 1) throw bad('a feature reference has no other field', path);
    return numeric(rel, e.feature, `${path}.feature`).sql;
  }
  const { fn, args } = e as { fn: unknown; args: unknown };
  if (typeof fn !== 'string' || !(fn in ARITY)) throw bad(`unknown function ${JSON.stringify(fn)}`, `${path}.fn`);
  if (!Array.isArray(args)) throw bad('"args" must be a list', `${path}.args`);
  const [lo, hi] = ARITY[fn as keyof typeof ARITY];
  if (args.length < lo || args.length > hi) {
    throw bad(`"${fn}" takes ${lo === hi ? lo : `${lo} to ${hi}`} argument${hi === 1 ? '' : 's'}, not ${args.length}`, `${path}.args`);
  }
  const a = args.map((x, i) => compileExpr(x as Expr, rel, params, `${path}.args[${i}]`));
  const [x, y] = a as [string, string];
  switch (fn as keyof typeof ARITY) {
    case '+':
      return `(${a.join(' + ')})`;
    case '*':
      return `(${a.join(' * ')})`;
    case '-':
      return a.length === 1 ? `(-${x})` : `(${x} - ${y})`;
    case 'neg':
      return `(-${x})`;
    case '/':
      return `(${x} / NULLIF(${y}, 0))`;
    case 'abs':
      return `abs(${x})`;
    case 'sqrt':
      return guarded(x, 'CASE WHEN v >= 0 THEN sqrt(v) END');
    case 'log':
      return guarded(x, 'CASE WHEN v > 0 THEN ln(v) END');
    case 'exp':
      return `exp(${x})`;
    case 'pow':
      return `pow(${x}, ${y})`;
    case 'min':
      return a.length === 1 ? x : `least(${a.join(', ')})`;
    case 'max':
      return a.length === 1 ? x : `greatest(${a.join(', ')})`;
    case 'round':
      return `round(${x})`;
    case 'floor':
      return `floor(${x})`;
    case 'ceil':
      return `ceil(${x})`;
  }
}

// ---------------------------------------------------------------- the seeded split in SQL

/** Math.imul(a, b) >>> 0 for a in [0, 2^32): exact in 128-bit integers. */
const imul32 = (a: string, b: number): string => `CAST((CAST(${a} AS HUGEINT) * ${b}) % 4294967296 AS BIGINT)`;
const xorShift = (a: string, bits: number): string => guarded(a, `xor(v, v >> ${bits})`);

/**
 * hash32(seed, row) of lib/ops/split.ts, over the row id column: the same function, bit for
 * bit (test/transformers.test.ts checks it against isTestRow on many rows).
 */
export function splitHashSql(seed: number, params: Scalar[], path: string): string {
  const s = Math.imul(seed | 0, 0x9e3779b1) >>> 0;
  let h = `xor(CAST(${push(params, s, path)} AS BIGINT), CAST(${quoteIdent(ROW_ID)} AS BIGINT))`;
  h = xorShift(h, 16);
  h = imul32(h, 0x85ebca6b);
  h = xorShift(h, 13);
  h = imul32(h, 0xc2b2ae35);
  return xorShift(h, 16);
}

// ---------------------------------------------------------------- stages

type StageOf<K extends QueryStage['kind']> = Extract<QueryStage, { kind: K }>;

/** The output column name of one category/class value. */
export function categoryName(feature: string, value: Scalar): string {
  return `${feature}_${value === null ? 'null' : String(value)}`;
}

/** Places new columns where `anchor` was (dropping it), refusing names that exist elsewhere. */
function replaceWith(cols: Map<string, Column>, anchor: string, added: Column[], path: string): Map<string, Column> {
  const out = new Map<string, Column>();
  for (const [name, c] of cols) {
    if (name !== anchor) {
      out.set(name, c);
      continue;
    }
    for (const a of added) out.set(a.meta.name, a);
  }
  for (const a of added) {
    const other = cols.get(a.meta.name);
    if (a.meta.name !== anchor && other !== undefined) {
      throw bad(`output ${JSON.stringify(a.meta.name)} would overwrite an existing feature`, path);
    }
  }
  if (out.size !== cols.size - 1 + added.length) throw bad('two output columns have the same name', path);
  return out;
}

/** Sets per-feature output columns: in place, or replacing/adding the named output. */
function setOutputs(rel: Relation, pairs: Array<[string, string]>, make: (input: string, i: number) => Column, path: string): void {
  const cols = identity(rel);
  const made = pairs.map(([input], i) => make(input, i));
  for (const [i, [, out]] of pairs.entries()) {
    const c = made[i] as Column;
    cols.set(out, { meta: { ...c.meta, name: out }, sql: c.sql });
  }
  addProjection(rel, cols, path);
}

async function minMaxScaler(rel: Relation, s: StageOf<'MinMaxScaler'>, run: Runner, path: string): Promise<void> {
  const pairs = ioPairs(s.features, s.outputs, path);
  const inputs = s.features.map((f, i) => numeric(rel, f, `${path}.features[${i}]`));
  const [lo, hi] = s.range ?? [0, 1];
  if (!(lo < hi)) throw bad('range must be [low, high] with low < high', `${path}.range`);
  const fitted = await fittedOr(s.fitted, s.features.length, path, async () => {
    const row = await aggregateRow(rel, run, inputs.flatMap((x) => [`min(${x.sql})`, `max(${x.sql})`]), [...rel.params]);
    return inputs.map((_, i) => ({ min: num(row[2 * i]) ?? 0, max: num(row[2 * i + 1]) ?? 0 }));
  });
  setOutputs(
    rel,
    pairs,
    (_input, i) => {
      const { min, max } = fitted[i] as { min: number; max: number };
      if (!(min <= max)) throw bad('a fitted min is above its max', `${path}.fitted[${i}]`);
      const range = max - min;
      const scale = (hi - lo) / (range === 0 ? 1 : range);
      const offset = lo - min * scale;
      const x = (inputs[i] as { sql: string }).sql;
      return { meta: derivedMeta(''), sql: `(${x} * ${double(rel.params, scale, path)} + ${double(rel.params, offset, path)})` };
    },
    path,
  );
}

async function standardScaler(rel: Relation, s: StageOf<'StandardScaler'>, run: Runner, path: string): Promise<void> {
  const pairs = ioPairs(s.features, s.outputs, path);
  const inputs = s.features.map((f, i) => numeric(rel, f, `${path}.features[${i}]`));
  const fitted = await fittedOr(s.fitted, s.features.length, path, async () => {
    const row = await aggregateRow(rel, run, inputs.flatMap((x) => [`avg(${x.sql})`, `stddev_pop(${x.sql})`]), [...rel.params]);
    return inputs.map((_, i) => ({ mean: num(row[2 * i]) ?? 0, std: num(row[2 * i + 1]) ?? 0 }));
  });
  setOutputs(
    rel,
    pairs,
    (_input, i) => {
      const { mean, std } = fitted[i] as { mean: number; std: number };
      const center = s.with_mean === false ? 0 : mean;
      const scale = s.with_std === false || std === 0 ? 1 : std;
      const x = (inputs[i] as { sql: string }).sql;
      return { meta: derivedMeta(''), sql: `((${x} - ${double(rel.params, center, path)}) / ${double(rel.params, scale, path)})` };
    },
    path,
  );
}

/** Edges strictly increasing: equal neighbours (empty quantile bins) are merged, as scikit-learn does. */
export function cleanEdges(edges: readonly number[], path: string): number[] {
  const out: number[] = [];
  for (const e of edges) {
    if (!Number.isFinite(e)) throw bad('bin edges must be finite', path);
    const last = out.at(-1);
    if (last !== undefined && e < last) throw bad('bin edges must not decrease', path);
    if (last === undefined || e > last) out.push(e);
  }
  if (out.length < 2) out.push((out[0] ?? 0) + 1);
  return out;
}

/** The n + 1 edges of n equal-width bins over [min, max] (numpy.linspace). */
export function uniformEdges(min: number, max: number, n: number): number[] {
  if (min === max) return [min - 0.5, max + 0.5];
  return Array.from({ length: n + 1 }, (_, i) => (i === n ? max : min + (i * (max - min)) / n));
}

async function kBins(rel: Relation, s: StageOf<'KBinsDiscretizer'>, run: Runner, path: string): Promise<void> {
  const pairs = ioPairs(s.features, s.outputs, path);
  const inputs = s.features.map((f, i) => numeric(rel, f, `${path}.features[${i}]`));
  const fitted = await fittedOr(s.fitted, s.features.length, path, async () => {
    if (s.strategy === 'uniform') {
      const row = await aggregateRow(rel, run, inputs.flatMap((x) => [`min(${x.sql})`, `max(${x.sql})`]), [...rel.params]);
      return inputs.map((_, i) => ({ edges: uniformEdges(num(row[2 * i]) ?? 0, num(row[2 * i + 1]) ?? 0, s.n_bins) }));
    }
    const qs = Array.from({ length: s.n_bins + 1 }, (_, i) => i / s.n_bins);
    const row = await aggregateRow(
      rel,
      run,
      inputs.map((x) => `quantile_cont(${x.sql}, [${qs.join(', ')}])`),
      [...rel.params],
    );
    return inputs.map((_, i) => {
      const list = row[i];
      const edges = Array.isArray(list) ? list.map((v) => num(v) ?? 0) : [0, 1];
      return { edges };
    });
  });
  setOutputs(
    rel,
    pairs,
    (_input, i) => {
      const edges = cleanEdges((fitted[i] as { edges: number[] }).edges, `${path}.fitted[${i}].edges`);
      const x = (inputs[i] as { sql: string }).sql;
      // numpy.searchsorted(edges[1:-1], x, side='right'): how many inner edges are <= x.
      const inner = edges.slice(1, -1).map((e) => `CAST(${x} >= ${double(rel.params, e, path)} AS DOUBLE)`);
      return { meta: derivedMeta(''), sql: inner.length === 0 ? `(${x} * 0)` : `(${inner.join(' + ')})` };
    },
    path,
  );
}

function binarizer(rel: Relation, s: StageOf<'Binarizer'>, path: string): void {
  const pairs = ioPairs(s.features, s.outputs, path);
  const inputs = s.features.map((f, i) => numeric(rel, f, `${path}.features[${i}]`));
  const t = s.threshold ?? 0;
  setOutputs(
    rel,
    pairs,
    (_input, i) => ({
      meta: derivedMeta(''),
      sql: `CAST(${(inputs[i] as { sql: string }).sql} > ${double(rel.params, t, path)} AS DOUBLE)`,
    }),
    path,
  );
}

/** `x IS NOT DISTINCT FROM v`, with the value checked against the feature's type. */
function equalsValue(rel: Relation, meta: FeatureMeta, v: Scalar, path: string): string {
  const col = quoteIdent(meta.name);
  if (v === null) return `(${col} IS NULL)`;
  return `(${col} IS NOT DISTINCT FROM ${push(rel.params, checkValue(v, meta, path), path)})`;
}

function labelBinarizer(rel: Relation, s: StageOf<'LabelBinarizer'>, path: string): void {
  const meta = lookupFeature(rel.schema, s.feature, `${path}.feature`);
  const classes = s.classes;
  const keys = classes.map((c) => JSON.stringify(c));
  if (new Set(keys).size !== keys.length) throw bad('a class is listed twice', `${path}.classes`);
  const used = classes.length === 2 ? [classes[1] as Scalar] : classes;
  const names = s.outputs ?? (classes.length === 2 ? [s.feature] : classes.map((c) => categoryName(s.feature, c)));
  if (names.length !== used.length) throw bad(`${names.length} outputs for ${used.length} output columns`, `${path}.outputs`);
  const neg = s.neg_label ?? 0;
  const pos = s.pos_label ?? 1;
  const nullIsClass = classes.includes(null);
  const col = quoteIdent(meta.name);
  const added = used.map((c, i): Column => {
    const eq = equalsValue(rel, meta, c, `${path}.classes[${classes.indexOf(c)}]`);
    const p = double(rel.params, pos, path);
    const n = double(rel.params, neg, path);
    const sql = nullIsClass
      ? `(CASE WHEN ${eq} THEN ${p} ELSE ${n} END)`
      : `(CASE WHEN ${col} IS NULL THEN NULL WHEN ${eq} THEN ${p} ELSE ${n} END)`;
    return { meta: derivedMeta(names[i] as string), sql };
  });
  addProjection(rel, replaceWith(identity(rel), meta.name, added, path), path);
}

/** `x IN (values)` with null membership, as the filters compile it (lib/data/sql.ts). */
function memberOf(rel: Relation, meta: FeatureMeta, values: readonly Scalar[], path: string): string {
  const col = quoteIdent(meta.name);
  const marks = values.filter((v) => v !== null).map((v, i) => push(rel.params, checkValue(v, meta, `${path}[${i}]`), path));
  const member = marks.length === 0 ? 'FALSE' : `COALESCE(${col} IN (${marks.join(', ')}), FALSE)`;
  return values.includes(null) ? `(${member} OR ${col} IS NULL)` : `(${member})`;
}

async function oneHot(rel: Relation, s: StageOf<'OneHotEncoder'>, run: Runner, path: string): Promise<void> {
  if (s.categories.length !== s.features.length) {
    throw bad(`${s.categories.length} category lists for ${s.features.length} features`, `${path}.categories`);
  }
  if (new Set(s.features).size !== s.features.length) throw bad('a feature is listed twice', `${path}.features`);
  const metas = s.features.map((f, i) => lookupFeature(rel.schema, f, `${path}.features[${i}]`));
  if ((s.handle_unknown ?? 'error') === 'error') {
    // One check over the relation: does any row hold a value outside its feature's categories?
    const params = [...rel.params];
    const sub: Relation = { ...rel, params };
    const unknown = metas.map((m, i) => `count(*) FILTER (WHERE NOT ${memberOf(sub, m, s.categories[i] as Scalar[], `${path}.categories[${i}]`)})`);
    const row = await aggregateRow(rel, run, unknown, params);
    for (const [i, m] of metas.entries()) {
      // The value itself is not echoed: it is this node's data.
      if ((num(row[i]) ?? 0) > 0) {
        throw bad(`feature ${JSON.stringify(m.name)} has a value outside its declared categories`, `${path}.categories[${i}]`);
      }
    }
  }
  let cols = identity(rel);
  for (const [i, m] of metas.entries()) {
    const cats = s.categories[i] as Scalar[];
    const keys = cats.map((c) => JSON.stringify(c));
    if (new Set(keys).size !== keys.length) throw bad('a category is listed twice', `${path}.categories[${i}]`);
    const skipFirst = s.drop === 'first' || (s.drop === 'if_binary' && cats.length === 2);
    const kept = skipFirst ? cats.slice(1) : cats;
    const added = kept.map((c): Column => {
      const eq = equalsValue(rel, m, c, `${path}.categories[${i}]`);
      return { meta: derivedMeta(categoryName(m.name, c)), sql: `CAST(${eq} AS DOUBLE)` };
    });
    cols = replaceWith(cols, m.name, added, path);
  }
  addProjection(rel, cols, path);
}

async function imputer(rel: Relation, s: StageOf<'SimpleImputer'>, run: Runner, path: string): Promise<void> {
  const pairs = ioPairs(s.features, s.outputs, path);
  const metas = s.features.map((f, i) => lookupFeature(rel.schema, f, `${path}.features[${i}]`));
  if (s.strategy === 'mean' || s.strategy === 'median') {
    for (const [i, m] of metas.entries()) {
      if (m.dtype !== 'numeric') throw bad(`the ${s.strategy} of ${JSON.stringify(m.name)} (${m.dtype}) is not defined`, `${path}.features[${i}]`);
    }
  }
  const fitted = await fittedOr<Scalar>(s.fitted, s.features.length, path, async () => {
    if (s.strategy === 'constant') {
      return metas.map((m) => s.fill_value ?? (m.dtype === 'numeric' ? 0 : 'missing_value'));
    }
    if (s.strategy === 'most_frequent') {
      const out: Scalar[] = [];
      for (const m of metas) {
        const c = quoteIdent(m.name);
        // Ties go to the smallest value, as scikit-learn does.
        const rows = await run(
          withRelation(rel, `SELECT ${c} FROM ${rel.from} WHERE ${c} IS NOT NULL GROUP BY ${c} ORDER BY count(*) DESC, ${c} ASC LIMIT 1`),
          [...rel.params],
        );
        const v = rows[0]?.[0];
        out.push(v === undefined || v === null ? null : typeof v === 'bigint' ? Number(v) : (v as Scalar));
      }
      return out;
    }
    const agg = s.strategy === 'mean' ? 'avg' : 'median';
    const row = await aggregateRow(rel, run, metas.map((m) => `${agg}(CAST(${quoteIdent(m.name)} AS DOUBLE))`), [...rel.params]);
    return metas.map((_, i) => num(row[i]));
  });
  setOutputs(
    rel,
    pairs,
    (_input, i) => {
      const m = metas[i] as FeatureMeta;
      const fill = fitted[i] ?? null;
      // No value to fill with (e.g. a feature with no value at all): the nulls stay.
      if (fill === null) return { meta: { ...m }, sql: quoteIdent(m.name) };
      const v = push(rel.params, checkValue(fill, m, `${path}.fitted[${i}]`), path);
      if (m.dtype === 'numeric') return { meta: derivedMeta(''), sql: `COALESCE(CAST(${quoteIdent(m.name)} AS DOUBLE), CAST(${v} AS DOUBLE))` };
      return { meta: { ...m }, sql: `COALESCE(${quoteIdent(m.name)}, ${v})` };
    },
    path,
  );
}

function clamp(rel: Relation, s: StageOf<'Clamp'>, path: string): void {
  const pairs = ioPairs(s.features, s.outputs, path);
  const inputs = s.features.map((f, i) => numeric(rel, f, `${path}.features[${i}]`));
  if (s.min !== undefined && s.max !== undefined && s.min > s.max) throw bad('min is above max', path);
  setOutputs(
    rel,
    pairs,
    (_input, i) => {
      let x = (inputs[i] as { sql: string }).sql;
      const col = x;
      if (s.min !== undefined) x = `greatest(${x}, ${double(rel.params, s.min, path)})`;
      if (s.max !== undefined) x = `least(${x}, ${double(rel.params, s.max, path)})`;
      // least/greatest skip nulls: a null stays null.
      return { meta: derivedMeta(''), sql: `(CASE WHEN ${col} IS NULL THEN NULL ELSE ${x} END)` };
    },
    path,
  );
}

function split(rel: Relation, s: StageOf<'TrainTestSplit'>, path: string): void {
  const h = splitHashSql(s.seed, rel.params, path);
  const threshold = double(rel.params, s.test_fraction * 4294967296, path);
  addFilter(rel, s.side === 'test' ? `(${h} < ${threshold})` : `(${h} >= ${threshold})`);
}

function rename(rel: Relation, s: StageOf<'Rename'>, path: string): void {
  const to = new Map<string, string>();
  for (const [i, r] of s.renames.entries()) {
    lookupFeature(rel.schema, r.from, `${path}.renames[${i}].from`);
    if (to.has(r.from)) throw bad(`${JSON.stringify(r.from)} is renamed twice`, `${path}.renames[${i}]`);
    to.set(r.from, r.to);
  }
  const cols = new Map<string, Column>();
  for (const c of identity(rel).values()) {
    const name = to.get(c.meta.name) ?? c.meta.name;
    if (cols.has(name)) throw bad(`two features would be named ${JSON.stringify(name)}`, path);
    cols.set(name, { meta: { ...c.meta, name }, sql: c.sql });
  }
  addProjection(rel, cols, path);
}

async function applyStage(rel: Relation, stage: QueryStage, path: string, run: Runner): Promise<void> {
  if (typeof stage !== 'object' || stage === null) throw bad('a stage must be an object', path);
  switch (stage.kind) {
    case 'Filter':
      return addFilter(rel, compileFilter(stage.where, rel.schema, `${path}.where`, rel.params));
    case 'Select': {
      const cols = new Map<string, Column>();
      const all = identity(rel);
      for (const [i, f] of stage.features.entries()) {
        lookupFeature(rel.schema, f, `${path}.features[${i}]`);
        cols.set(f, all.get(f) as Column);
      }
      return addProjection(rel, cols, path);
    }
    case 'Drop': {
      const cols = identity(rel);
      for (const [i, f] of stage.features.entries()) {
        lookupFeature(rel.schema, f, `${path}.features[${i}]`);
        cols.delete(f);
      }
      return addProjection(rel, cols, path);
    }
    case 'Rename':
      return rename(rel, stage, path);
    case 'Derive': {
      const state = { nodes: 0 };
      countNodes(stage.expr, 0, `${path}.expr`, state);
      const e = compileExpr(stage.expr, rel, rel.params, `${path}.expr`);
      const cols = identity(rel);
      cols.set(stage.name, { meta: derivedMeta(stage.name), sql: guarded(e, 'CASE WHEN isfinite(v) THEN v END') });
      return addProjection(rel, cols, `${path}.name`);
    }
    case 'MinMaxScaler':
      return minMaxScaler(rel, stage, run, path);
    case 'StandardScaler':
      return standardScaler(rel, stage, run, path);
    case 'KBinsDiscretizer':
      return kBins(rel, stage, run, path);
    case 'Binarizer':
      return binarizer(rel, stage, path);
    case 'LabelBinarizer':
      return labelBinarizer(rel, stage, path);
    case 'OneHotEncoder':
      return oneHot(rel, stage, run, path);
    case 'SimpleImputer':
      return imputer(rel, stage, run, path);
    case 'Clamp':
      return clamp(rel, stage, path);
    case 'TrainTestSplit':
      return split(rel, stage, path);
    default:
      throw bad(`unknown stage kind ${JSON.stringify((stage as { kind?: unknown }).kind)}`, `${path}.kind`);
  }
}

/**
 * Compiles a query over a project's view (which has the hidden row id column) into a relation;
 * fits, with `run`, the transformers that carry no fitted parameters.
 */
export async function compileRelation(
  view: string,
  schema: Schema,
  query: Query | undefined,
  run: Runner,
  path = 'query',
): Promise<Relation> {
  const rel: Relation = { ctes: [`s0 AS (SELECT * FROM ${view})`], params: [], from: 's0', schema };
  if (query === undefined || query === null) return rel;
  if (typeof query !== 'object' || Array.isArray(query)) throw bad('a query must be an object', path);
  if (query.where !== undefined) addFilter(rel, compileFilter(query.where, rel.schema, `${path}.where`, rel.params));
  const stages = query.stages ?? [];
  if (!Array.isArray(stages)) throw bad('"stages" must be a list', `${path}.stages`);
  for (const [i, stage] of stages.entries()) await applyStage(rel, stage, `${path}.stages[${i}]`, run);
  return rel;
}
