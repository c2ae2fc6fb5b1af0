import type { z } from 'zod';
import { formatPath } from '../../protocols/errors.ts';
import { FdlError } from '../errors.ts';

/**
 * Run-time checks of the workbench builders' arguments. A script run with `npx tsx` is not
 * type-checked, and an option a builder does not know used to be dropped in silence
 * (`estimators.count(where(...))` counted every row): each builder checks its arguments against
 * a strict zod schema defined next to it, and refuses the first problem with INVALID_ARTIFACT,
 * naming the builder, the argument and the key:
 *
 *   count(query): unknown key 'feature' — did you mean { where: where(...) }?
 *
 * The error's `path` starts at the argument (`query.feature`, `options.dp.epsilon`, `features[1]`).
 */

/** Hints for a filter given where an object of options is expected. */
export const FILTER_HINTS = {
  query: 'did you mean { where: where(...) }?',
  options: 'a filter goes in the query argument, as { where: where(...) }',
  modelOptions: 'did you mean { query: { where: where(...) } }?',
} as const;

const looksLikeFilter = (v: unknown) => v !== null && typeof v === 'object' && ('feature' in v || 'and' in v || 'or' in v);

/** The known key that `key` misspells (case and underscores aside), if any. */
function spelledAs(schema: z.ZodType, key: string): string | undefined {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  if (!shape || typeof shape !== 'object') return undefined;
  const norm = (s: string) => s.toLowerCase().replace(/_/g, '');
  return Object.keys(shape).find((k) => norm(k) === norm(key));
}

/**
 * The problem to report: an unknown key first (a misspelled or misplaced key is the likely cause
 * of the others, such as a required key missing), else the first; its path ends at the key.
 */
function firstProblem(schema: z.ZodType, value: unknown): { at: PropertyKey[]; where: PropertyKey[]; message: string } | undefined {
  const r = schema.safeParse(value);
  if (r.success) return undefined;
  const issue = r.error.issues.find((i) => i.code === 'unrecognized_keys') ?? r.error.issues[0];
  if (!issue) return { at: [], where: [], message: 'invalid' };
  if (issue.code !== 'unrecognized_keys') return { at: issue.path, where: issue.path, message: issue.message };
  const key = String(issue.keys[0]);
  const known = issue.path.length === 0 ? spelledAs(schema, key) : undefined;
  return { at: [...issue.path, key], where: issue.path, message: `unknown key '${key}'${known ? ` — did you mean '${known}'?` : ''}` };
}

function refuse(fn: string, arg: string, at: PropertyKey[], where: PropertyKey[], message: string, hint = ''): never {
  const inner = formatPath(where);
  throw new FdlError('INVALID_ARTIFACT', `${fn}(${arg}): ${inner ? `${inner}: ` : ''}${message}${hint}`, { path: formatPath([arg, ...at]) });
}

/**
 * Refuses `value` unless `schema` accepts it. `filterHint` is added when the value looks like a
 * filter (where(...), and(...), or(...)), the usual misplaced argument.
 */
export function checkArg(fn: string, arg: string, schema: z.ZodType, value: unknown, filterHint?: string): void {
  const p = firstProblem(schema, value);
  if (!p) return;
  const hint = filterHint && p.where.length === 0 && looksLikeFilter(value) ? ` — ${filterHint}` : '';
  refuse(fn, arg, p.at, p.where, p.message, hint);
}

/**
 * Refuses a built wire object (a transformer stage) unless `schema` accepts it, naming the
 * argument a field came from: one of `positional` (an argument of the same name), else `options`.
 */
export function checkBuilt(fn: string, positional: readonly string[], schema: z.ZodType, built: unknown): void {
  const p = firstProblem(schema, built);
  if (!p) return;
  const head = p.at[0];
  if (typeof head === 'string' && positional.includes(head)) refuse(fn, head, p.at.slice(1), p.where.slice(1), p.message);
  refuse(fn, 'options', p.at, p.where, p.message);
}
