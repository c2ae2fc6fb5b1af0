import { z } from 'zod';
import {
  type Binarizer,
  type Clamp,
  type Distribution,
  type DpRequest,
  DpSchema,
  type Expr,
  Features,
  type Filter,
  type FilterCondition,
  type KBinsDiscretizer,
  type LabelBinarizer,
  type MinMaxScaler,
  type OneHotEncoder,
  type Operation,
  type ProjectInfo,
  type Query,
  QuerySchema,
  type QueryStage,
  QueryStageSchema,
  type Scalar,
  type SimpleImputer,
  type SimpleStep,
  type StandardScaler,
  type Step,
  type TrainTestSplit,
} from '../../protocols/entities.ts';
import { uniformEdges } from '../data/stages.ts';
import { FdlError } from '../errors.ts';
import { checkArg, checkBuilt, FILTER_HINTS } from './args.ts';
import type { GroupCountProduct, MeanProduct, MinMaxProduct, QuantilesProduct, VarianceProduct } from '../ops/index.ts';

/** Builders for the wire forms, so a script reads like the computation it asks for. */

export const where = (feature: string, op: FilterCondition['op'], value?: Scalar | Scalar[]): FilterCondition =>
  value === undefined ? { feature, op } : { feature, op, value };
export const and = (...filters: Filter[]): Filter => ({ and: filters });
export const or = (...filters: Filter[]): Filter => ({ or: filters });
export const query = (filter?: Filter): Query => (filter ? { where: filter } : {});

const dist = (kind: Distribution['kind'], encryption = false): Distribution => ({ kind, encryption });
export const distributions = {
  arrange: (encryption?: boolean) => dist('Arrange', encryption),
  collect: (encryption?: boolean) => dist('Collect', encryption),
  distribute: (encryption?: boolean) => dist('Distribute', encryption),
  directToNext: (encryption?: boolean) => dist('DirectToNext', encryption),
};

const withDist = <T extends object>(step: T, distribution?: Distribution) =>
  distribution ? { ...step, distribution } : step;

export const steps = {
  initialize: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Initialize' as const, operation }, distribution),
  parallel: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Parallel' as const, operation }, distribution),
  sequential: (init: Operation, operation: Operation, final: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Sequential' as const, init, operation, final }, distribution),
  roundRobin: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'RoundRobin' as const, operation }, distribution),
  finalize: (operation: Operation, distribution?: Distribution): Step =>
    withDist({ kind: 'Finalize' as const, operation }, distribution),
  iterate: (iterations: number, inner: SimpleStep[]): Step => ({ kind: 'Iterate', iterations, steps: inner }),
};

/**
 * The estimators' chain: every link sealed for the next node (X25519 + AES-GCM), so the
 * scheduler relays running sums it cannot read. Secure by default; `steps.sequential` is
 * the plain building block.
 */
const sealedSequential = (init: Operation, operation: Operation, final: Operation): Step => ({
  kind: 'Sequential',
  init,
  operation,
  final,
  encryption: true,
});

/** A query, or a builder of one (`extract()...`). */
export type QueryLike = Query | { build(): Query };

/**
 * The wire query of a QueryLike, checked (a filter given as the query is refused, not read as
 * "every row"); undefined when it selects every row as it is. `fn` names the builder in errors.
 */
export function toQuery(q?: QueryLike, fn = 'toQuery'): Query | undefined {
  if (q === undefined) return undefined;
  const isBuilder = q !== null && typeof q === 'object' && 'build' in q && typeof q.build === 'function';
  const built = isBuilder ? q.build() : (q as Query);
  checkArg(fn, 'query', QuerySchema, built, FILTER_HINTS.query);
  return built.where !== undefined || (built.stages?.length ?? 0) > 0 ? built : undefined;
}

const withQuery = <T extends object>(fn: string, op: T, q?: QueryLike) => {
  const built = toQuery(q, fn);
  return built ? { ...op, query: built } : op;
};
const withOpts = <T extends object>(op: T, opts: Record<string, unknown> = {}) => {
  const out: Record<string, unknown> = { ...(op as Record<string, unknown>) };
  for (const [k, v] of Object.entries(opts)) if (v !== undefined) out[k] = v;
  return out as T;
};

/** The options of the estimators that may ask for noise. */
const DpOptionsSchema = z.object({ dp: DpSchema.optional() }).strict();
/** The options of variance and covariance. */
const MomentOptionsSchema = z
  .object({ ddof: z.union([z.literal(0), z.literal(1)]).optional(), shift: z.array(z.number()).optional() })
  .strict();
type MomentOptions = z.infer<typeof MomentOptionsSchema>;

const dpOpts = (fn: string, opts: { dp?: DpRequest } = {}) => {
  checkArg(fn, 'options', DpOptionsSchema, opts, FILTER_HINTS.options);
  return opts;
};
const momentOpts = (fn: string, opts: MomentOptions = {}) => {
  checkArg(fn, 'options', MomentOptionsSchema, opts, FILTER_HINTS.options);
  return opts;
};
/** A list of feature names (`arg` names it in errors: features, by). */
const names = (fn: string, arg: string, list: string[]) => {
  checkArg(fn, arg, Features, list);
  return list;
};

/** Per-feature equal-width bins for histograms and quantiles. */
export interface BinSpec {
  lo: number;
  hi: number;
  count: number;
}

/**
 * Federated estimators, each one Sequential step (initiator -> every worker in turn ->
 * initiator) whose running value is masked by the initiator: workers see only masked sums
 * (MinMax excepted: see docs/OPERATIONS.md). `dp` asks each worker for Laplace noise,
 * charged to the project's privacy budget on that worker.
 */
export const estimators = {
  count: (q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'CountInit' },
      withOpts(withQuery('count', { kind: 'Count' as const }, q), dpOpts('count', opts)),
      { kind: 'CountFinal' },
    ),
  mean: (features: string[], q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'MeanInit', features: names('mean', 'features', features) },
      withOpts(withQuery('mean', { kind: 'Mean' as const, features }, q), dpOpts('mean', opts)),
      { kind: 'MeanFinal', features },
    ),
  /** `domain`: the possible values of each `by` feature (from the project's metadata). */
  groupCount: (by: string[], domain: Scalar[][], q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'GroupCountInit', by: names('groupCount', 'by', by), domain },
      withOpts(withQuery('groupCount', { kind: 'GroupCount' as const, by }, q), dpOpts('groupCount', opts)),
      { kind: 'GroupCountFinal', by },
    ),
  sum: (features: string[], q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'SumInit', features: names('sum', 'features', features) },
      withOpts(withQuery('sum', { kind: 'Sum' as const, features }, q), dpOpts('sum', opts)),
      { kind: 'SumFinal', features },
    ),
  /** Mean, variance and standard deviation; `shift` (per feature, near its mean) keeps data far from 0 exact. */
  variance: (features: string[], q?: QueryLike, opts: MomentOptions = {}): Step =>
    sealedSequential(
      { kind: 'VarianceInit', features: names('variance', 'features', features) },
      withOpts(withQuery('variance', { kind: 'Variance' as const, features }, q), { shift: momentOpts('variance', opts).shift }),
      withOpts({ kind: 'VarianceFinal' as const, features }, { ddof: opts.ddof }),
    ),
  groupMean: (by: string[], domain: Scalar[][], features: string[], q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'GroupMeanInit', by: names('groupMean', 'by', by), domain, features: names('groupMean', 'features', features) },
      withOpts(withQuery('groupMean', { kind: 'GroupMean' as const, by, features }, q), dpOpts('groupMean', opts)),
      { kind: 'GroupMeanFinal', by, features },
    ),
  /** Extremes reveal one row's value each, and travel in clear between workers (docs/OPERATIONS.md). */
  minMax: (features: string[], q?: QueryLike): Step =>
    sealedSequential(
      { kind: 'MinMaxInit', features: names('minMax', 'features', features) },
      withQuery('minMax', { kind: 'MinMax' as const, features }, q),
      { kind: 'MinMaxFinal', features },
    ),
  histogram: (features: string[], bins: BinSpec[], q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'HistogramInit', features: names('histogram', 'features', features), bins },
      withOpts(withQuery('histogram', { kind: 'Histogram' as const, features, bins }, q), dpOpts('histogram', opts)),
      { kind: 'HistogramFinal', features, bins },
    ),
  /** Approximate quantiles (levels in [0, 1]) from a federated histogram: within one bin width of the exact value. */
  quantiles: (features: string[], bins: BinSpec[], levels: number[], q?: QueryLike, opts: { dp?: DpRequest } = {}): Step =>
    sealedSequential(
      { kind: 'QuantilesInit', features: names('quantiles', 'features', features), bins },
      withOpts(withQuery('quantiles', { kind: 'Quantiles' as const, features, bins }, q), dpOpts('quantiles', opts)),
      { kind: 'QuantilesFinal', features, bins, q: levels },
    ),
  /** Covariance and Pearson correlation matrices over the rows where every feature has a value. */
  covariance: (features: string[], q?: QueryLike, opts: MomentOptions = {}): Step =>
    sealedSequential(
      { kind: 'CovarianceInit', features: names('covariance', 'features', features) },
      withOpts(withQuery('covariance', { kind: 'Covariance' as const, features }, q), { shift: momentOpts('covariance', opts).shift }),
      withOpts({ kind: 'CovarianceFinal' as const, features }, { ddof: opts.ddof }),
    ),
};

/** Equal-width bins over each feature's [min, max] from the project's metadata (a query only narrows them). */
export function binsFromMetadata(info: ProjectInfo, features: string[], count = 1000): BinSpec[] {
  return features.map((name) => {
    const f = info.features.find((x) => x.name === name);
    if (!f || f.min === null || f.max === null) {
      throw new FdlError('BAD_QUERY', `the metadata has no range for ${JSON.stringify(name)}; give the bins, or estimate minMax first`);
    }
    return f.min < f.max ? { lo: f.min, hi: f.max, count } : { lo: f.min - 0.5, hi: f.max + 0.5, count: 1 };
  });
}

/** The categories of features from the project's metadata (features with few distinct values). */
export function categoriesOf(info: ProjectInfo, features: string[]): Scalar[][] {
  return features.map((name) => {
    const f = info.features.find((x) => x.name === name);
    if (!f) throw new FdlError('BAD_QUERY', `the project has no feature ${JSON.stringify(name)}`);
    if (!f.categories) throw new FdlError('BAD_QUERY', `feature ${JSON.stringify(name)} has too many distinct values to list`);
    return f.categories;
  });
}

// ---------------------------------------------------------------- query stages

/** Expressions of derived columns: a tree of data, compiled on the worker with bound values. */
export const expr = {
  col: (feature: string): Expr => ({ feature }),
  add: (...args: Expr[]): Expr => ({ fn: '+', args }),
  sub: (a: Expr, b: Expr): Expr => ({ fn: '-', args: [a, b] }),
  mul: (...args: Expr[]): Expr => ({ fn: '*', args }),
  div: (a: Expr, b: Expr): Expr => ({ fn: '/', args: [a, b] }),
  neg: (a: Expr): Expr => ({ fn: 'neg', args: [a] }),
  abs: (a: Expr): Expr => ({ fn: 'abs', args: [a] }),
  sqrt: (a: Expr): Expr => ({ fn: 'sqrt', args: [a] }),
  log: (a: Expr): Expr => ({ fn: 'log', args: [a] }),
  exp: (a: Expr): Expr => ({ fn: 'exp', args: [a] }),
  pow: (a: Expr, b: Expr): Expr => ({ fn: 'pow', args: [a, b] }),
  min: (...args: Expr[]): Expr => ({ fn: 'min', args }),
  max: (...args: Expr[]): Expr => ({ fn: 'max', args }),
  round: (a: Expr): Expr => ({ fn: 'round', args: [a] }),
  floor: (a: Expr): Expr => ({ fn: 'floor', args: [a] }),
  ceil: (a: Expr): Expr => ({ fn: 'ceil', args: [a] }),
};

type Opt<T> = { [K in keyof T]?: T[K] };
/** A transformer stage with its options, checked against its wire schema (an unknown option is refused, named). */
const stage = <T extends QueryStage>(fn: string, s: T, opts: Record<string, unknown> = {}): T => {
  checkArg(fn, 'options', z.record(z.string(), z.unknown()), opts, FILTER_HINTS.options);
  const built = withOpts(s, opts);
  checkBuilt(fn, Object.keys(s), QueryStageSchema, built);
  return built;
};

/** Column utilities. */
export const columns = {
  filter: (filter: Filter): QueryStage => ({ kind: 'Filter', where: filter }),
  select: (...features: string[]): QueryStage => ({ kind: 'Select', features }),
  drop: (...features: string[]): QueryStage => ({ kind: 'Drop', features }),
  /** `{ old: 'new', ... }`: simultaneous, so a swap works. */
  rename: (renames: Record<string, string>): QueryStage => ({
    kind: 'Rename',
    renames: Object.entries(renames).map(([from, to]) => ({ from, to })),
  }),
  derive: (name: string, e: Expr): QueryStage => ({ kind: 'Derive', name, expr: e }),
};

/**
 * Transformers (scikit-learn's names and defaults). Without `fitted` a worker fits one on its
 * own rows; `fitQuery` fits them federatedly (global statistics first) and fills `fitted`.
 */
export const transformers = {
  minMaxScaler: (features: string[], opts: Opt<Omit<MinMaxScaler, 'kind' | 'features'>> = {}): MinMaxScaler =>
    stage('minMaxScaler', { kind: 'MinMaxScaler', features }, opts),
  standardScaler: (features: string[], opts: Opt<Omit<StandardScaler, 'kind' | 'features'>> = {}): StandardScaler =>
    stage('standardScaler', { kind: 'StandardScaler', features }, opts),
  kBinsDiscretizer: (
    features: string[],
    n_bins: number,
    strategy: KBinsDiscretizer['strategy'] = 'quantile',
    opts: Opt<Omit<KBinsDiscretizer, 'kind' | 'features' | 'n_bins' | 'strategy'>> = {},
  ): KBinsDiscretizer => stage('kBinsDiscretizer', { kind: 'KBinsDiscretizer', features, n_bins, strategy }, opts),
  binarizer: (features: string[], threshold = 0, opts: Opt<Omit<Binarizer, 'kind' | 'features' | 'threshold'>> = {}): Binarizer =>
    stage('binarizer', { kind: 'Binarizer', features, threshold }, opts),
  labelBinarizer: (feature: string, classes: Scalar[], opts: Opt<Omit<LabelBinarizer, 'kind' | 'feature' | 'classes'>> = {}): LabelBinarizer =>
    stage('labelBinarizer', { kind: 'LabelBinarizer', feature, classes }, opts),
  /** `categories`: per feature (see categoriesOf), so every worker makes the same columns. */
  oneHotEncoder: (features: string[], categories: Scalar[][], opts: Opt<Omit<OneHotEncoder, 'kind' | 'features' | 'categories'>> = {}): OneHotEncoder =>
    stage('oneHotEncoder', { kind: 'OneHotEncoder', features, categories }, opts),
  simpleImputer: (
    features: string[],
    strategy: SimpleImputer['strategy'] = 'mean',
    opts: Opt<Omit<SimpleImputer, 'kind' | 'features' | 'strategy'>> = {},
  ): SimpleImputer => stage('simpleImputer', { kind: 'SimpleImputer', features, strategy }, opts),
  /** Ferdelance's FederatedClamp. */
  clamp: (features: string[], min?: number, max?: number, opts: Opt<Pick<Clamp, 'outputs'>> = {}): Clamp =>
    stage('clamp', { kind: 'Clamp', features }, { min, max, ...opts }),
  trainTestSplit: (seed: number, testFraction: number, side: 'train' | 'test'): TrainTestSplit => ({
    kind: 'TrainTestSplit',
    seed,
    test_fraction: testFraction,
    side,
  }),
};

/**
 * A query built stage by stage (Ferdelance's `project.extract()`); every method returns a new
 * builder, so a prefix can be shared.
 *
 *   extract().where(where('HouseAge', '>', 10)).derive('rooms', expr.div(...)).pipe(transformers.standardScaler(['rooms']))
 */
export class QueryBuilder {
  constructor(private readonly q: Query = {}) {}

  /** Keeps the rows matching a filter: before any stage it joins `where` (and), after a stage it is a Filter stage. */
  where(filter: Filter): QueryBuilder {
    if ((this.q.stages?.length ?? 0) > 0) return this.pipe(columns.filter(filter));
    const w = this.q.where === undefined ? filter : { and: [this.q.where, filter] };
    return new QueryBuilder({ ...this.q, where: w });
  }

  pipe(...more: QueryStage[]): QueryBuilder {
    return new QueryBuilder({ ...this.q, stages: [...(this.q.stages ?? []), ...more] });
  }

  select(...features: string[]): QueryBuilder {
    return this.pipe(columns.select(...features));
  }

  drop(...features: string[]): QueryBuilder {
    return this.pipe(columns.drop(...features));
  }

  rename(renames: Record<string, string>): QueryBuilder {
    return this.pipe(columns.rename(renames));
  }

  derive(name: string, e: Expr): QueryBuilder {
    return this.pipe(columns.derive(name, e));
  }

  split(seed: number, testFraction: number, side: 'train' | 'test'): QueryBuilder {
    return this.pipe(transformers.trainTestSplit(seed, testFraction, side));
  }

  build(): Query {
    return structuredClone(this.q);
  }
}

export const extract = (q: Query = {}): QueryBuilder => new QueryBuilder(q);

// ---------------------------------------------------------------- federated fitting

/** What fitQuery needs of a project: to submit an artifact and read its result (the workbench's Project). */
export interface ProjectLike {
  info?: ProjectInfo;
  submit(spec: { name?: string; steps: Step[] }): Promise<{ result<T = unknown>(): Promise<T> }>;
}

/** How many bins the federated quantiles of a fit use: the edges are then within (max - min) / 1000. */
export const FIT_QUANTILE_BINS = 1000;

async function run<T>(project: ProjectLike, name: string, step: Step): Promise<T> {
  return (await project.submit({ name, steps: [step] })).result<T>();
}

function ranges(mm: MinMaxProduct, features: string[]): Array<{ min: number; max: number }> {
  return features.map((f) => {
    const min = mm.min[f];
    const max = mm.max[f];
    if (min === null || max === null || min === undefined || max === undefined) {
      throw new FdlError('BAD_QUERY', `no worker contributed values of ${JSON.stringify(f)} to fit on`);
    }
    return { min, max };
  });
}

async function quantileEdges(project: ProjectLike, features: string[], prefix: Query | undefined, levels: number[], name: string) {
  const mm = await run<MinMaxProduct>(project, `${name}: range`, estimators.minMax(features, prefix));
  const rs = ranges(mm, features);
  const bins = rs.map(({ min, max }) => (min < max ? { lo: min, hi: max, count: FIT_QUANTILE_BINS } : { lo: min - 0.5, hi: max + 0.5, count: 1 }));
  const qs = await run<QuantilesProduct>(project, `${name}: quantiles`, estimators.quantiles(features, bins, levels, prefix));
  return { rs, qs };
}

/**
 * Fits every transformer of the query that has no `fitted` parameters federatedly: for each,
 * in order, it runs the matching estimator over the query up to that stage (earlier stages
 * already fitted) on every worker, and fills `fitted` from its result. The returned query then
 * transforms every worker's rows with the same, global parameters.
 *
 * MinMaxScaler: MinMax. StandardScaler: Variance (ddof 0). KBinsDiscretizer uniform: MinMax;
 * quantile: MinMax then Quantiles (edges within (max - min) / 1000). SimpleImputer mean: Mean;
 * median: MinMax then Quantiles (0.5); most_frequent: GroupCount over the metadata's categories.
 */
export async function fitQuery(project: ProjectLike, query: QueryLike): Promise<Query> {
  const q = toQuery(query) ?? {};
  const out: QueryStage[] = [];
  for (const [i, s] of (q.stages ?? []).entries()) {
    const prefix = toQuery({ ...(q.where === undefined ? {} : { where: q.where }), stages: [...out] });
    const name = `fit stage ${i} (${s.kind})`;
    switch (s.kind) {
      case 'MinMaxScaler': {
        if (s.fitted) break;
        const mm = await run<MinMaxProduct>(project, name, estimators.minMax(s.features, prefix));
        out.push({ ...s, fitted: ranges(mm, s.features) });
        continue;
      }
      case 'StandardScaler': {
        if (s.fitted) break;
        const v = await run<VarianceProduct>(project, name, estimators.variance(s.features, prefix, { ddof: 0 }));
        out.push({ ...s, fitted: s.features.map((f) => ({ mean: v.mean[f] ?? 0, std: v.std[f] ?? 0 })) });
        continue;
      }
      case 'KBinsDiscretizer': {
        if (s.fitted) break;
        if (s.strategy === 'uniform') {
          const mm = await run<MinMaxProduct>(project, name, estimators.minMax(s.features, prefix));
          out.push({ ...s, fitted: ranges(mm, s.features).map(({ min, max }) => ({ edges: uniformEdges(min, max, s.n_bins) })) });
          continue;
        }
        const inner = Array.from({ length: s.n_bins - 1 }, (_, k) => (k + 1) / s.n_bins);
        const { rs, qs } = await quantileEdges(project, s.features, prefix, inner, name);
        const fitted = s.features.map((f, j) => {
          const { min, max } = rs[j] as { min: number; max: number };
          const mids = (qs.quantiles[f] ?? []).map((e) => e.value ?? min);
          return { edges: [min, ...mids, max].map((v, k, a) => (k > 0 ? Math.max(v, a[k - 1] as number) : v)) };
        });
        out.push({ ...s, fitted });
        continue;
      }
      case 'SimpleImputer': {
        if (s.fitted || s.strategy === 'constant') break;
        if (s.strategy === 'mean') {
          const m = await run<MeanProduct>(project, name, estimators.mean(s.features, prefix));
          out.push({ ...s, fitted: s.features.map((f) => m.mean[f] ?? null) });
        } else if (s.strategy === 'median') {
          const { qs } = await quantileEdges(project, s.features, prefix, [0.5], name);
          out.push({ ...s, fitted: s.features.map((f) => qs.quantiles[f]?.[0]?.value ?? null) });
        } else {
          if (!project.info) throw new FdlError('BAD_QUERY', 'most_frequent needs the project metadata (categories)');
          const fitted: Scalar[] = [];
          for (const [j, f] of s.features.entries()) {
            const domain = categoriesOf(project.info, [f]);
            const g = await run<GroupCountProduct>(project, `${name}: ${j}`, estimators.groupCount([f], domain, prefix));
            const best = [...g.groups].filter((x) => x.key[0] !== null).sort((a, b) => b.count - a.count)[0];
            fitted.push(best?.key[0] ?? null);
          }
          out.push({ ...s, fitted });
        }
        continue;
      }
      default:
        break;
    }
    out.push(s);
  }
  const fitted: Query = { stages: out };
  if (q.where !== undefined) fitted.where = q.where;
  return fitted;
}
