import { createHash, randomBytes as cryptoRandomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ErrorCode } from '../../../protocols/errors.ts';
import type { DpRequest } from '../../../protocols/entities.ts';
import { FdlError } from '../../errors.ts';
import type { OpContext, PrivacyBudget } from '../context.ts';

/**
 * Privacy rules every estimator applies on the worker, to what it contributes
 * (docs/OPERATIONS.md, "Privacy"):
 *
 * - Minimum group size k (node config `privacy.min_group_size`, default 5). A worker never
 *   contributes an aggregate computed from fewer than k of its rows: a group, a bin, or a
 *   whole feature with fewer rows is left out of its contribution (and counted as suppressed).
 *   Inside a masked chain no worker can see a global total, so the rule is local; as a
 *   consequence every released count is 0 or at least k.
 * - Differential privacy, when the operation asks for it (`dp: { epsilon }`): the worker adds
 *   Laplace noise (two-sided geometric for counts) of scale L1-sensitivity / epsilon to its own
 *   contribution, so what leaves it is epsilon-DP with respect to its own rows whatever the
 *   others do; and it charges epsilon to the project's budget first (node config
 *   `privacy.dp.budget_per_project`), refusing the job when the budget would be exceeded.
 */

export const DEFAULT_MIN_GROUP_SIZE = 5;

/**
 * The code of a privacy refusal (budget exhausted, noise required). Non-retryable. A dedicated
 * wire code (PRIVACY_BUDGET_EXHAUSTED) is proposed to the lead; until then it is BAD_QUERY,
 * the non-retryable code for a request this node will not serve.
 */
export const PRIVACY_REFUSED: ErrorCode = 'PRIVACY_REFUSED';

export function minGroupSize(ctx: OpContext): number {
  const k = ctx.privacy?.minGroupSize;
  return typeof k === 'number' && Number.isInteger(k) && k >= 1 ? k : DEFAULT_MIN_GROUP_SIZE;
}

/** Whether `n` rows may be contributed. Zero rows contribute nothing anyway and are not "suppressed". */
export function allowed(ctx: OpContext, n: number): boolean {
  return n >= minGroupSize(ctx);
}

export function randomBytesOf(ctx: OpContext, size: number): Uint8Array {
  return (ctx.randomBytes ?? cryptoRandomBytes)(size);
}

/** A uniform double in (0, 1], from 53 random bits. */
function unit(ctx: OpContext): number {
  const b = randomBytesOf(ctx, 7);
  let x = 0;
  for (const byte of b) x = x * 256 + byte;
  // 56 bits -> 53 bits, then shifted into (0, 1].
  return (Math.floor(x / 8) + 1) / 2 ** 53;
}

function sign(ctx: OpContext): number {
  return ((randomBytesOf(ctx, 1)[0] ?? 0) & 1) === 0 ? 1 : -1;
}

/** Laplace(0, scale). */
export function laplace(ctx: OpContext, scale: number): number {
  return sign(ctx) * -scale * Math.log(unit(ctx));
}

/** Two-sided geometric (the discrete Laplace) with P(k) proportional to exp(-|k| / scale): integer noise for counts. */
export function discreteLaplace(ctx: OpContext, scale: number): number {
  const lnAlpha = -1 / scale;
  const geometric = () => Math.floor(Math.log(unit(ctx)) / lnAlpha);
  return geometric() - geometric();
}

/** Refuses an estimator without noise on a node whose config requires it. */
export function checkDpRequired(ctx: OpContext, dp: DpRequest | undefined): void {
  if (dp === undefined && ctx.privacy?.requireDp === true) {
    throw new FdlError(PRIVACY_REFUSED, `${ctx.operation.kind}: this node answers only with differential-privacy noise; set "dp": { "epsilon": ... }`, {
      retryable: false,
      path: 'operation.dp',
    });
  }
}

/** Per feature: the clipping bounds a DP sum needs, and the sensitivity they give. */
export function dpBounds(ctx: OpContext, dp: DpRequest, features: readonly string[]): Array<[number, number]> {
  const b = dp.bounds;
  if (b === undefined || b.length !== features.length) {
    throw new FdlError('BAD_QUERY', `${ctx.operation.kind}: a noisy sum needs "dp.bounds", one [low, high] per feature (${features.length})`, {
      retryable: false,
      path: 'operation.dp.bounds',
    });
  }
  for (const [i, [lo, hi]] of b.entries()) {
    if (!(lo <= hi)) throw new FdlError('BAD_QUERY', 'dp bounds must be [low, high] with low <= high', { path: `operation.dp.bounds[${i}]` });
  }
  return b.map(([lo, hi]) => [lo, hi]);
}

export interface Noise {
  ints: number[];
  reals: number[];
}

/**
 * The noise of this job's contribution: `ints` integer slots and `reals` real slots, each with
 * scale sensitivity / epsilon. Charged to the budget and drawn once per job (kept in this node's
 * locals), so a retried attempt sends the same noisy figures and spends nothing more.
 */
export function dpNoise(ctx: OpContext, dp: DpRequest, sensitivity: number, ints: number, reals: number): Noise {
  const key = `dp:${ctx.stepIndex}/${ctx.iteration}`;
  const stored = ctx.locals.get(key) as Noise | undefined;
  if (stored && Array.isArray(stored.ints) && Array.isArray(stored.reals) && stored.ints.length === ints && stored.reals.length === reals) {
    return stored;
  }
  if (!(dp.epsilon > 0) || !Number.isFinite(dp.epsilon)) {
    throw new FdlError('BAD_QUERY', 'dp.epsilon must be a positive number', { path: 'operation.dp.epsilon' });
  }
  ctx.privacy?.budget?.charge(ctx.projectToken, `${ctx.artifactId}:${ctx.stepIndex}/${ctx.iteration}`, dp.epsilon);
  const scale = sensitivity / dp.epsilon;
  const noise: Noise = {
    ints: Array.from({ length: ints }, () => (scale === 0 ? 0 : discreteLaplace(ctx, scale))),
    reals: Array.from({ length: reals }, () => (scale === 0 ? 0 : laplace(ctx, scale))),
  };
  ctx.locals.set(key, noise);
  return noise;
}

interface LedgerEntry {
  spent: number;
  /** key -> epsilon: what was charged, once per job. */
  charges: Record<string, number>;
}

/**
 * A worker's per-project epsilon ledger, written through to a JSON file (tmp + rename) so
 * that a restart does not refill the budget. Projects are keyed by a hash of their token
 * (the token is a credential and is not written down).
 */
export class FileBudgetLedger implements PrivacyBudget {
  private readonly entries = new Map<string, LedgerEntry>();

  constructor(
    private readonly file: string | undefined,
    readonly budgetPerProject: number,
  ) {
    if (!(budgetPerProject >= 0) || !Number.isFinite(budgetPerProject)) throw new Error('budgetPerProject must be a finite number >= 0');
    if (file === undefined) return;
    mkdirSync(dirname(file), { recursive: true });
    try {
      const loaded = JSON.parse(readFileSync(file, 'utf8')) as Record<string, LedgerEntry>;
      for (const [k, v] of Object.entries(loaded)) {
        if (typeof v?.spent === 'number' && typeof v.charges === 'object' && v.charges !== null) this.entries.set(k, v);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  private static id(token: string): string {
    return createHash('sha256').update(token).digest('hex');
  }

  remaining(projectToken: string): number {
    return this.budgetPerProject - (this.entries.get(FileBudgetLedger.id(projectToken))?.spent ?? 0);
  }

  charge(projectToken: string, key: string, epsilon: number): void {
    const id = FileBudgetLedger.id(projectToken);
    const entry = this.entries.get(id) ?? { spent: 0, charges: {} };
    if (Object.hasOwn(entry.charges, key)) return;
    // A relative slack so that e.g. ten charges of 0.1 fit a budget of 1.
    if (entry.spent + epsilon > this.budgetPerProject * (1 + 1e-9)) {
      const left = Number(Math.max(0, this.budgetPerProject - entry.spent).toPrecision(6));
      throw new FdlError(
        PRIVACY_REFUSED,
        `privacy budget exhausted: this query asks epsilon ${epsilon}, the project has ${left} of ${this.budgetPerProject} left on this node`,
        { retryable: false, path: 'operation.dp.epsilon' },
      );
    }
    entry.spent += epsilon;
    entry.charges = { ...entry.charges, [key]: epsilon };
    this.entries.set(id, entry);
    if (this.file !== undefined) {
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.entries)));
      renameSync(tmp, this.file);
    }
  }
}
