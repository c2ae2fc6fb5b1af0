import type { z } from 'zod';

/**
 * A zod schema compiled once into plain closures that only answer "does zod accept this value,
 * and give it back unchanged?". `decode` asks it first: a frame it accepts is the message as
 * decoded (zod would build an equal copy); anything else goes to zod, which has the last word and
 * writes the error. So the check must never say yes where zod says no or would change the value
 * (defaults, transforms, stripped keys): any construct this file does not know makes the whole
 * schema uncompiled (`undefined`), and that message type is always parsed by zod.
 * Why: zod's own parse of a 1 KiB `status` reply costs ~5 µs here, the closures ~0.5 µs, and the
 * codec runs on both ends of every round trip (docs/PERFORMANCE.md, "Request round trips").
 * No `eval`/`new Function`: the codec also runs in the dashboard's browser bundle.
 */
export type Check = (value: unknown) => boolean;

/** A construct the compiler does not know: the schema is left to zod. */
class Unsupported extends Error {}

interface Def {
  type: string;
  checks?: Array<{ _zod: { def: CheckDef } }>;
  [key: string]: unknown;
}
interface CheckDef {
  check: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  value?: number;
  inclusive?: boolean;
  pattern?: RegExp;
}

const defOf = (schema: unknown): Def => (schema as { _zod: { def: Def } })._zod.def;
/** A plain object, as msgpack maps decode (zod would also take a Uint8Array as one, and copy it). */
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;

/** The length checks of a string or array; any other check is unknown. */
function lengthBounds(def: Def, also?: (c: CheckDef) => boolean): { min: number; max: number } {
  let min = 0;
  let max = Number.POSITIVE_INFINITY;
  for (const { _zod } of def.checks ?? []) {
    const c = _zod.def;
    if (c.check === 'min_length' && typeof c.minimum === 'number') min = Math.max(min, c.minimum);
    else if (c.check === 'max_length' && typeof c.maximum === 'number') max = Math.min(max, c.maximum);
    else if (!also?.(c)) throw new Unsupported(`${def.type} check ${c.check}`);
  }
  return { min, max };
}

function compileNumber(def: Def): Check {
  let int = false;
  let min = Number.NEGATIVE_INFINITY;
  let max = Number.POSITIVE_INFINITY;
  let minInclusive = true;
  let maxInclusive = true;
  for (const { _zod } of def.checks ?? []) {
    const c = _zod.def;
    if (c.check === 'number_format' && c.format === 'safeint') int = true;
    else if (c.check === 'greater_than' && typeof c.value === 'number' && c.value >= min) {
      min = c.value;
      minInclusive = c.inclusive === true;
    } else if (c.check === 'less_than' && typeof c.value === 'number' && c.value <= max) {
      max = c.value;
      maxInclusive = c.inclusive === true;
    } else throw new Unsupported(`number check ${c.check}`);
  }
  return (v) =>
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (!int || Number.isSafeInteger(v)) &&
    (minInclusive ? v >= min : v > min) &&
    (maxInclusive ? v <= max : v < max);
}

function compileString(def: Def): Check {
  const patterns: RegExp[] = [];
  const { min, max } = lengthBounds(def, (c) => {
    if (c.check !== 'string_format' || c.format !== 'regex' || !(c.pattern instanceof RegExp)) return false;
    // A global or sticky pattern keeps state between tests: zod's answer could differ from ours.
    if (c.pattern.global || c.pattern.sticky) return false;
    patterns.push(c.pattern);
    return true;
  });
  if (patterns.length === 0) return (v) => typeof v === 'string' && v.length >= min && v.length <= max;
  return (v) => typeof v === 'string' && v.length >= min && v.length <= max && patterns.every((p) => p.test(v));
}

/**
 * A strict object (unknown keys refused, as zod's `.strict()` does): every key of the value is in
 * the shape, and each field's check accepts its value (an absent one only when it is optional).
 */
function compileObject(def: Def, compile: (schema: unknown) => Check): Check {
  if (def.checks && def.checks.length > 0) throw new Unsupported('object refinement');
  if (!def.catchall || defOf(def.catchall).type !== 'never') throw new Unsupported('object that is not strict');
  const shape = def.shape as Record<string, unknown>;
  const keys = Object.keys(shape);
  const fields = keys.map((k) => compile(shape[k]));
  const count = keys.length;
  return (v) => {
    if (!isObject(v)) return false;
    // An absent field is undefined: only an optional field's check accepts it.
    let present = 0;
    for (let i = 0; i < count; i++) {
      const field = v[keys[i] as string];
      if (field !== undefined) present++;
      if (!(fields[i] as Check)(field)) return false;
    }
    // Strict: the value has no key besides the fields present (they are among its keys).
    let own = 0;
    for (const _ in v) own++;
    return own === present;
  };
}

/** A union, by the discriminator's literal when every option has one (a discriminated union). */
function compileUnion(def: Def, compile: (schema: unknown) => Check): Check {
  const options = (def.options as unknown[]).map(compile);
  const key = def.discriminator;
  if (typeof key === 'string') {
    const byTag = new Map<unknown, Check>();
    let tagged = true;
    (def.options as unknown[]).forEach((o, i) => {
      const tag = defOf(o).type === 'object' ? (defOf(o).shape as Record<string, unknown>)[key] : undefined;
      const values = tag && defOf(tag).type === 'literal' ? (defOf(tag).values as unknown[]) : undefined;
      if (!values) tagged = false;
      else for (const value of values) if (!byTag.has(value)) byTag.set(value, options[i] as Check);
    });
    if (tagged) return (v) => isObject(v) && (byTag.get(v[key])?.(v) ?? false);
  }
  return (v) => options.some((check) => check(v));
}

/** A refinement's answer as zod reads it (truthy passes); a Promise (an async one) is no answer here. */
const isTrue = (r: unknown): boolean => !(r instanceof Promise) && Boolean(r);

/**
 * The def without its `.refine()` checks, and those checks' functions. A refinement only says yes
 * or no; `.superRefine()` (no `fn`) and one with a `when` stay, and the type's builder refuses them.
 */
function withoutRefinements(def: Def): { def: Def; refinements: Array<(v: unknown) => unknown> } {
  const refinements: Array<(v: unknown) => unknown> = [];
  const checks: NonNullable<Def['checks']> = [];
  for (const c of def.checks ?? []) {
    const d = c._zod.def as CheckDef & { fn?: unknown; when?: unknown };
    if (d.check === 'custom' && typeof d.fn === 'function' && d.when === undefined) refinements.push(d.fn as (v: unknown) => unknown);
    else checks.push(c);
  }
  return refinements.length === 0 ? { def, refinements } : { def: { ...def, checks }, refinements };
}

/**
 * Compiles `schema`, or undefined when it holds anything this file does not know (the message
 * type is then always parsed by zod). Recursive schemas (`z.lazy`) compile once.
 */
export function compileCheck(schema: z.ZodType): Check | undefined {
  const done = new Map<unknown, Check>();
  const compile = (s: unknown): Check => {
    const known = done.get(s);
    if (known) return known;
    // A placeholder first: a lazy schema that reaches itself calls the finished check.
    let finished: Check | undefined;
    done.set(s, (v) => (finished as Check)(v));
    finished = build(s);
    done.set(s, finished);
    return finished;
  };
  const build = (s: unknown): Check => {
    const { def, refinements } = withoutRefinements(defOf(s));
    const base = buildBase(def);
    if (refinements.length === 0) return base;
    // zod calls each refinement with the value it parsed, here the value itself.
    return (v) => base(v) && refinements.every((fn) => isTrue(fn(v)));
  };
  const buildBase = (def: Def): Check => {
    const refined = def.checks && def.checks.length > 0;
    switch (def.type) {
      case 'object':
        return compileObject(def, compile);
      case 'string':
        return compileString(def);
      case 'number':
        return compileNumber(def);
      case 'array': {
        const { min, max } = lengthBounds(def);
        const element = compile(def.element);
        return (v) => {
          if (!Array.isArray(v) || v.length < min || v.length > max) return false;
          for (let i = 0; i < v.length; i++) if (!element(v[i])) return false;
          return true;
        };
      }
      case 'tuple': {
        if (refined || def.rest) throw new Unsupported('tuple with a rest or checks');
        const items = (def.items as unknown[]).map((item) => {
          if (defOf(item).type === 'optional') throw new Unsupported('tuple with optional items');
          return compile(item);
        });
        return (v) => Array.isArray(v) && v.length === items.length && items.every((check, i) => check(v[i]));
      }
      case 'boolean':
        if (refined) break;
        return (v) => typeof v === 'boolean';
      case 'null':
        return (v) => v === null;
      case 'never':
        return () => false;
      case 'literal': {
        const values = new Set(def.values as unknown[]);
        return (v) => values.has(v);
      }
      case 'enum': {
        const values = new Set(Object.values(def.entries as Record<string, unknown>));
        return (v) => values.has(v);
      }
      case 'optional': {
        const inner = compile(def.innerType);
        return (v) => v === undefined || inner(v);
      }
      case 'nullable': {
        const inner = compile(def.innerType);
        return (v) => v === null || inner(v);
      }
      case 'union':
        if (refined) break;
        return compileUnion(def, compile);
      case 'lazy':
        return compile((def.getter as () => unknown)());
      case 'custom': {
        // z.custom(fn): fn is the whole check (Bytes: `instanceof Uint8Array`).
        if (refined || typeof def.fn !== 'function') break;
        const fn = def.fn as (v: unknown) => unknown;
        return (v) => fn(v) === true;
      }
    }
    throw new Unsupported(def.type);
  };
  try {
    return compile(schema);
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
}
