import { canonicalJson } from '../protocols/codec.ts';
import type { ArtifactSpec, Provenance } from '../protocols/entities.ts';
import { DEFAULT_SEED } from './ops/models/spec.ts';
import { sha256Hex } from './store/blobs.ts';
import type { StoredArtifact, StoredJob } from './store/store.ts';
import { SOFTWARE } from './version.ts';

/**
 * A completed artifact's provenance (docs/PROTOCOL.md, "Provenance"): which holders and rows the
 * result covers, what a quorum left out, the seeds in effect, the artifact's hash and the software.
 * Built from the job rows as they ended, by the supervisor that completes the artifact.
 */
export function provenanceOf(artifact: StoredArtifact, jobs: readonly StoredJob[]): Provenance {
  // Artifacts stored before the plan's holders were kept: the nodes of their jobs.
  const holders = artifact.workers ?? [...new Set(jobs.filter((j) => j.role === 'op').map((j) => j.worker))].sort();
  // One pass over the jobs, tallied per node (a pass per holder was O(holders × jobs): ~1M steps
  // for a 1,001-job artifact at 1,000 workers, in the supervisor's turn that completes it).
  const tallies = new Map<string, { completedJobs: number; leftOutJobs: number; rows: number | undefined }>();
  for (const nodeId of holders) tallies.set(nodeId, { completedJobs: 0, leftOutJobs: 0, rows: undefined });
  for (const j of jobs) {
    const t = tallies.get(j.worker);
    if (!t) continue;
    if (j.leftOut) t.leftOutJobs++;
    else if (j.state === 'COMPLETED') {
      t.completedJobs++;
      if (j.rows !== undefined) t.rows = Math.max(t.rows ?? 0, j.rows);
    }
  }
  const workers = holders.map((nodeId) => {
    const { completedJobs, leftOutJobs, rows } = tallies.get(nodeId) as { completedJobs: number; leftOutJobs: number; rows: number | undefined };
    return { nodeId, ...(rows === undefined ? {} : { rows }), completedJobs, leftOutJobs };
  });
  const included = workers.filter((w) => w.leftOutJobs === 0);
  const leftOutJobs = jobs.filter((j) => j.leftOut).map((j) => j.id);
  return {
    complete: leftOutJobs.length === 0,
    workers,
    included: included.map((w) => w.nodeId),
    leftOut: workers.filter((w) => w.leftOutJobs > 0).map((w) => w.nodeId),
    rows: included.reduce((n, w) => n + (w.rows ?? 0), 0),
    leftOutJobs,
    seeds: seedsOf(artifact.spec),
    artifactSha256: artifactSha256(artifact.spec),
    software: { ...SOFTWARE },
  };
}

/** SHA-256 (hex) of the artifact's canonical JSON: what anyone holding the same spec can recompute. */
export function artifactSha256(spec: ArtifactSpec): string {
  return sha256Hex(new TextEncoder().encode(canonicalJson(spec)));
}

/**
 * The seeds an artifact's operations use, defaults filled in as the workers fill them
 * (lib/ops/models): a model spec's `seed`; a TrainTest's or LocalCrossValidation's `splitSeed`
 * (else the model's seed); a TrainTestSplit stage's `seed`. Distinct, ascending.
 */
export function seedsOf(spec: ArtifactSpec): Provenance['seeds'] {
  const model = new Set<number>();
  const split = new Set<number>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (v === null || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    const modelSpec = o.model as { seed?: number; type?: unknown } | undefined;
    const modelSeed = modelSpec && typeof modelSpec === 'object' && typeof modelSpec.type === 'string' ? (modelSpec.seed ?? DEFAULT_SEED) : undefined;
    if (modelSeed !== undefined) model.add(modelSeed);
    if (o.kind === 'TrainTest' || o.kind === 'LocalCrossValidation') split.add((o.splitSeed as number | undefined) ?? modelSeed ?? DEFAULT_SEED);
    if (o.kind === 'TrainTestSplit' && typeof o.seed === 'number') split.add(o.seed);
    for (const x of Object.values(o)) visit(x);
  };
  visit(spec.steps);
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { model: sorted(model), split: sorted(split) };
}
