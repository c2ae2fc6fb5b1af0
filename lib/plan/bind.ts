import type { Distribution, Operation, SimpleStep, Step } from '../../protocols/entities.ts';
import { FdlError } from '../errors.ts';

export interface PlannedJob {
  /** 0..n-1, in creation order; every lock points to a higher index. */
  index: number;
  /** Node id: the initiator or one of the workers. */
  worker: string;
  /** Index into the artifact's top-level steps; an Iterate's inner jobs carry the Iterate's index. */
  stepIndex: number;
  /** 0 unless inside an Iterate. */
  iteration: number;
  role: 'init' | 'op' | 'final';
  operation: Operation;
  /** A Parallel step with a quorum may go on without some of its jobs: `required` of those in `group`. */
  quorum?: { group: string; required: number };
  /** The link this job's product travels asks for encryption: seal it for the receiving nodes. */
  seal?: boolean;
  /** Jobs this job unlocks (its successors, which receive its product): sorted, no duplicates. */
  locks: number[];
}

export interface Plan {
  jobs: PlannedJob[];
  /** Jobs whose products are the artifact's result: the exit jobs of the last step. */
  exits: number[];
}

export interface PlanContext {
  initiator: string;
  workers: string[];
}

/** A huge Iterate (or RoundRobin over many workers) must be refused before it is built, not after memory runs out. */
export const MAX_JOBS = 100_000;

/** The jobs of one bound step: `entry` receive from the step before, `exit` send to the step after. */
interface Segment {
  entry: number[];
  exit: number[];
}

/** Where a link comes from and goes to; `path` and `kind` only serve error messages. */
interface Receiver {
  seg: Segment;
  path: string;
  kind: string;
}
interface Sender extends Receiver {
  distribution: Distribution | undefined;
}

/** `3` means three workers; `"60%"` means 60% of the step's workers, rounded up. */
function quorumCount(quorum: number | string, workers: number, path: string): number {
  const required = typeof quorum === 'number' ? quorum : Math.ceil((Number.parseFloat(quorum) / 100) * workers);
  if (!(required >= 1 && required <= workers)) {
    throw invalid(`quorum ${JSON.stringify(quorum)} asks for ${required} of ${workers} workers`, path);
  }
  return required;
}

/**
 * Whether an artifact bound over `holders` workers may go on with only `present` of them: every
 * step that runs on the workers (Iterate's inner steps included) is a Parallel step whose quorum
 * the present ones meet. A Sequential or RoundRobin step, or a Parallel step without a quorum,
 * needs every holder. A quorum out of range is left to the binding to refuse.
 */
export function quorumToleratesAbsence(steps: readonly Step[], holders: number, present: number): boolean {
  const simple = steps.flatMap((step) => (step.kind === 'Iterate' ? step.steps : [step]));
  return simple.every((step) => {
    if (step.kind === 'Initialize' || step.kind === 'Finalize') return true;
    if (step.kind !== 'Parallel' || step.quorum === undefined) return false;
    try {
      return quorumCount(step.quorum, holders, 'quorum') <= present;
    } catch {
      return false;
    }
  });
}

function invalid(message: string, path?: string): FdlError {
  return new FdlError('INVALID_ARTIFACT', message, path === undefined ? {} : { path });
}

/**
 * Turns an artifact's steps into jobs linked by locks (AND-join: a job runs once all jobs that lock it
 * have completed, and takes their products as inputs). Pure: the caller stores and schedules the plan.
 *
 * Unlike the original, a Sequential step is linked to the next step, RoundRobin passes each product
 * around the whole ring, and Iterate may sit anywhere: all exit jobs of iteration k (not only the last job) feed
 * iteration k+1, through the last inner step's distribution.
 */
export function bindArtifact(steps: Step[], ctx: PlanContext): Plan {
  if (steps.length === 0) throw invalid('an artifact needs at least one step', 'steps');
  if (ctx.workers.length === 0) throw new FdlError('NO_WORKERS', 'no worker has announced data for this project');
  const seen = new Set<string>();
  for (const w of ctx.workers) {
    // A repeated worker would get two jobs of one Parallel step and count its data twice.
    if (seen.has(w)) throw invalid(`worker ${w} is listed twice`);
    seen.add(w);
  }

  const total = countJobs(steps, ctx.workers.length);
  if (total > MAX_JOBS) throw invalid(`the artifact would create ${total} jobs, more than the limit of ${MAX_JOBS}`, 'steps');

  const b = new Builder(ctx);
  let prev: Sender | undefined;
  for (const [i, step] of steps.entries()) {
    const path = `steps[${i}]`;
    const seg = step.kind === 'Iterate' ? b.iterate(step, i, path) : b.simple(step, i, 0, path);
    if (prev !== undefined) b.link(prev, { seg, path, kind: step.kind });
    // An Iterate has no distribution of its own, so what follows it is linked with Arrange.
    prev = { seg, distribution: step.kind === 'Iterate' ? undefined : step.distribution, path, kind: step.kind };
  }

  return { jobs: b.finish(), exits: [...(prev?.seg.exit ?? [])].sort((x, y) => x - y) };
}

/** For each job, the jobs that unlock it (its inputs), sorted. */
export function predecessors(plan: Plan): number[][] {
  const preds: number[][] = plan.jobs.map(() => []);
  // Visiting jobs in index order keeps each list sorted without a sort.
  for (const job of plan.jobs) for (const next of job.locks) preds[next]?.push(job.index);
  return preds;
}

function countJobs(steps: Step[], n: number): number {
  let total = 0;
  steps.forEach((step, i) => {
    if (step.kind !== 'Iterate') {
      total += countSimple(step, n, `steps[${i}]`);
      return;
    }
    // Steps may reach us without schema parsing; a NaN or empty Iterate would slip past the cap.
    if (!Number.isInteger(step.iterations) || step.iterations < 1) {
      throw invalid('iterations must be a positive integer', `steps[${i}].iterations`);
    }
    if (step.steps.length === 0) throw invalid('an Iterate step needs at least one inner step', `steps[${i}].steps`);
    let inner = 0;
    step.steps.forEach((s, j) => {
      inner += countSimple(s, n, `steps[${i}].steps[${j}]`);
    });
    total += inner * step.iterations;
  });
  return total;
}

function countSimple(step: SimpleStep, n: number, path: string): number {
  switch (step.kind) {
    case 'Initialize':
    case 'Finalize':
      return 1;
    case 'Parallel':
      return n;
    case 'Sequential':
      return n + 2;
    case 'RoundRobin':
      return n * n;
    default:
      throw invalid(`step kind ${(step as { kind: unknown }).kind} cannot be used here`, path);
  }
}

/**
 * An Iterate's Aggregation on the initiator (a Finalize or Initialize step) keeps the record of its
 * round only; its job of the last iteration also receives the products of its jobs of every earlier
 * iteration, and puts the model's whole history together from them (lib/ops/models/aggregate.ts).
 * So the model sent to the workers each round, and echoed back in their updates, stays the same size
 * whatever the round (issue 9), and the final model still lists every round. These links join jobs
 * on the initiator only, and all of them complete before the last one is unlocked anyway.
 */
function gathersRounds(step: SimpleStep): boolean {
  return (step.kind === 'Finalize' || step.kind === 'Initialize') && step.operation.kind === 'Aggregation';
}

class Builder {
  private readonly jobs: PlannedJob[] = [];
  private readonly locks: Set<number>[] = [];

  constructor(private readonly ctx: PlanContext) {}

  private add(worker: string, stepIndex: number, iteration: number, role: PlannedJob['role'], operation: Operation): number {
    const index = this.jobs.length;
    this.jobs.push({ index, worker, stepIndex, iteration, role, operation, locks: [] });
    this.locks.push(new Set());
    return index;
  }

  private lock(from: number, to: number): void {
    this.locks[from]?.add(to);
  }

  simple(step: SimpleStep, stepIndex: number, iteration: number, path: string): Segment {
    const segment = this.simpleJobs(step, stepIndex, iteration, path);
    // Products leaving the step travel its distribution; a Sequential chain's inner links
    // follow the step's own `encryption`.
    const outgoing = step.distribution?.encryption === true;
    const inner = step.kind === 'Sequential' && step.encryption === true;
    const exits = new Set(segment.exit);
    const first = this.jobs.length - this.countOf(step);
    for (let j = first; j < this.jobs.length; j++) {
      const sealed = exits.has(j) ? outgoing : step.kind === 'Sequential' ? inner : outgoing;
      if (sealed) (this.jobs[j] as PlannedJob).seal = true;
    }
    return segment;
  }

  private countOf(step: SimpleStep): number {
    const n = this.ctx.workers.length;
    return step.kind === 'Parallel' ? n : step.kind === 'Sequential' ? n + 2 : step.kind === 'RoundRobin' ? n * n : 1;
  }

  private simpleJobs(step: SimpleStep, stepIndex: number, iteration: number, path: string): Segment {
    const { initiator, workers } = this.ctx;
    const n = workers.length;
    switch (step.kind) {
      case 'Initialize':
      case 'Finalize': {
        const j = this.add(initiator, stepIndex, iteration, 'op', step.operation);
        return { entry: [j], exit: [j] };
      }
      case 'Parallel': {
        const js = workers.map((w) => this.add(w, stepIndex, iteration, 'op', step.operation));
        if (step.quorum !== undefined) {
          const required = quorumCount(step.quorum, n, `${path}.quorum`);
          for (const j of js) (this.jobs[j] as PlannedJob).quorum = { group: `${path}@${iteration}`, required };
        }
        return { entry: js, exit: js };
      }
      case 'Sequential': {
        const chain = [
          this.add(initiator, stepIndex, iteration, 'init', step.init),
          ...workers.map((w) => this.add(w, stepIndex, iteration, 'op', step.operation)),
          this.add(initiator, stepIndex, iteration, 'final', step.final),
        ];
        for (let k = 0; k + 1 < chain.length; k++) this.lock(chain[k] as number, chain[k + 1] as number);
        return { entry: [chain[0] as number], exit: [chain[chain.length - 1] as number] };
      }
      case 'RoundRobin': {
        // n rounds, so the product started by each worker visits every worker once.
        const rounds: number[][] = [];
        for (let r = 0; r < n; r++) {
          rounds.push(workers.map((w) => this.add(w, stepIndex, iteration, 'op', step.operation)));
        }
        for (let r = 0; r + 1 < n; r++) {
          for (let i = 0; i < n; i++) this.lock(rounds[r]?.[i] as number, rounds[r + 1]?.[(i + 1) % n] as number);
        }
        return { entry: rounds[0] ?? [], exit: rounds[n - 1] ?? [] };
      }
    }
  }

  iterate(step: Extract<Step, { kind: 'Iterate' }>, stepIndex: number, path: string): Segment {
    let entry: number[] = [];
    // Across iterations `prev` carries over: the last inner step of iteration k hands its products,
    // with its own distribution, to the first inner step of iteration k+1.
    let prev: Sender | undefined;
    /** Per inner step that gathers its rounds (see `gathersRounds`), its job of each iteration. */
    const rounds = new Map<number, number[]>();
    for (let it = 0; it < step.iterations; it++) {
      for (const [j, inner] of step.steps.entries()) {
        const innerPath = `${path}.steps[${j}]`;
        const seg = this.simple(inner, stepIndex, it, innerPath);
        if (gathersRounds(inner)) {
          const jobs = rounds.get(j) ?? [];
          jobs.push(...seg.exit);
          rounds.set(j, jobs);
        }
        if (prev === undefined) entry = seg.entry;
        else this.link(prev, { seg, path: innerPath, kind: inner.kind });
        prev = { seg, distribution: inner.distribution, path: innerPath, kind: inner.kind };
      }
    }
    for (const jobs of rounds.values()) {
      const last = jobs[jobs.length - 1] as number;
      for (const earlier of jobs.slice(0, -1)) this.lock(earlier, last);
    }
    return { entry, exit: prev?.seg.exit ?? [] };
  }

  /**
   * Links A's exit jobs to B's entry jobs with A's distribution. A step without one is linked with
   * Arrange, so steps always run in the order written and nothing is left dangling.
   */
  link(a: Sender, b: Receiver): void {
    const kind = a.distribution?.kind ?? 'Arrange';
    const where = `${a.path}.distribution`;
    const from = a.seg.exit;
    const to = b.seg.entry;
    const sending = `${a.path} (${a.kind}) has ${from.length}`;
    const receiving = `${b.path} (${b.kind}) has ${to.length}`;
    switch (kind) {
      case 'Collect':
        if (to.length !== 1) throw invalid(`Collect needs exactly one receiving job, step ${receiving}`, where);
        break;
      case 'Distribute':
        if (from.length !== 1) {
          throw invalid(`Distribute needs exactly one sending job, step ${sending}; use Arrange`, where);
        }
        break;
      case 'DirectToNext':
        if (from.length !== to.length) {
          throw invalid(`DirectToNext needs as many receiving jobs as sending jobs: step ${sending}, step ${receiving}`, where);
        }
        for (const [i, f] of from.entries()) this.lock(f, to[i] as number);
        return;
      case 'Arrange':
        break;
    }
    // Collect and Distribute are Arrange with a shape check, as in the original.
    for (const f of from) for (const t of to) this.lock(f, t);
  }

  finish(): PlannedJob[] {
    this.jobs.forEach((job, i) => {
      job.locks = [...(this.locks[i] ?? [])].sort((x, y) => x - y);
    });
    return this.jobs;
  }
}
