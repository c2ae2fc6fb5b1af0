import type { NodeInfo, ProjectData } from '../protocols/entities.ts';
import { wireError } from '../protocols/errors.ts';
import type { Message } from '../protocols/messages.ts';
import { projectSummary } from '../lib/projects.ts';
import { type WorkbenchScope, inScope } from '../lib/security/auth.ts';
import { fingerprint } from '../lib/security/identity.ts';
import type { Store, StoredNode, StoredProject } from '../lib/store/store.ts';

/**
 * The reply to a workbench's `getStatus`: the status the store keeps (`Store.status`), when its
 * project is in the session's scope; otherwise UNKNOWN_ARTIFACT, as for an artifact that does not
 * exist (a session cannot probe which ids exist). Answered by the socket's Connection as the frame
 * comes (actors/connection.ts), and by the Scheduler for a request that reaches it.
 */
export function scopedStatus(store: Store, scope: WorkbenchScope, reqId: number, artifactId: string): Message {
  const status = store.status(artifactId);
  if (status && inScope(scope, status.projectId)) return { type: 'status', reqId, status };
  return { type: 'error', reqId, error: wireError('UNKNOWN_ARTIFACT', `no artifact ${artifactId}`) };
}

/** A project's line in a listing. */
export type ProjectSummary = ReturnType<typeof projectSummary>;

/**
 * The project listing over the connected workers' data as the Scheduler last made it (frozen),
 * or none since a worker joined or left: the Scheduler, which alone knows who is connected,
 * publishes it and marks it stale; each Connection reads it to answer its workbench's
 * `listProjects` as the frame comes (no actor hop), and forwards the request to the Scheduler
 * while there is none.
 */
export class ProjectListing {
  private all: readonly ProjectSummary[] | undefined;

  get current(): readonly ProjectSummary[] | undefined {
    return this.all;
  }

  publish(all: ProjectSummary[]): readonly ProjectSummary[] {
    for (const p of all) Object.freeze(p);
    this.all = Object.freeze(all);
    return this.all;
  }

  stale(): void {
    this.all = undefined;
  }
}

/** A listing as the session of `scope` sees it: its projects only. */
export function scopedProjects(all: readonly ProjectSummary[], scope: WorkbenchScope): ProjectSummary[] {
  return all.filter((p) => inScope(scope, p.id));
}

/**
 * How nodes, projects and an artifact's status read in a listing, as a session of some scope may
 * see them. Not an actor: each actor that lists (the Scheduler, the Watchers) has its own
 * `Listings`, with its own cache; what they pass in (who is connected) is theirs.
 */
export class Listings {
  // Projects are fixed by the config for the life of the process: a token's project is looked
  // up (a hash and a query) once, not for every worker on every listing. Only hits are kept, so
  // a peer sending random tokens cannot grow the cache.
  private readonly projects = new Map<string, StoredProject>();

  constructor(private readonly store: Store) {}

  projectOf(token: string): StoredProject | undefined {
    const cached = this.projects.get(token);
    if (cached) return cached;
    const found = this.store.projectByToken(token);
    if (found) this.projects.set(token, found);
    return found;
  }

  /** A node's line in a listing, as the session of `scope` may see it (its data sources of that scope only). */
  nodeInfo(n: StoredNode, connected: boolean, scope: WorkbenchScope): NodeInfo {
    const info: NodeInfo = {
      id: n.id,
      name: n.name,
      role: n.role,
      connected,
      lastSeen: n.lastSeen,
      projects: n.projects.length,
      datasources: n.projects.reduce((acc, p) => acc + p.datasources.length, 0),
    };
    if (n.signKey) info.fingerprint = fingerprint(n.signKey);
    const sources: NodeInfo['sources'] = [];
    for (const p of n.projects) {
      const project = this.projectOf(p.token);
      if (!project || !inScope(scope, project.id)) continue;
      for (const d of p.datasources) sources.push({ projectId: project.id, name: d.name, rows: d.rows, features: d.features.length });
    }
    if (sources.length > 0) info.sources = sources;
    return info;
  }

  /** The scheduler itself, and the workers that announced a project of the scope (every worker when unscoped). */
  nodeVisible(scope: WorkbenchScope, n: StoredNode): boolean {
    return (
      n.role === 'scheduler' ||
      scope.projects === undefined ||
      n.projects.some((p) => {
        const project = this.projectOf(p.token);
        return project !== undefined && inScope(scope, project.id);
      })
    );
  }

  /** Every known node the scope may see; `connected` says which workers are connected now. */
  nodes(scope: WorkbenchScope, connected: (nodeId: string) => boolean): NodeInfo[] {
    return this.store
      .listNodes()
      .filter((n) => this.nodeVisible(scope, n))
      .map((n) => this.nodeInfo(n, n.role === 'scheduler' || connected(n.id), scope));
  }

  /** Every project, counted over the data the connected nodes announced (never their tokens). */
  projectsOf(connected: Iterable<[string, readonly ProjectData[]]>): ProjectSummary[] {
    // A listing never carries tokens: a token is a secret handed out by the operator. The
    // connected workers' data is matched to projects by token hash.
    const holdings = new Map<string, Array<{ nodeId: string; data: ProjectData }>>();
    for (const [nodeId, projects] of connected) {
      for (const data of projects) {
        const project = this.projectOf(data.token);
        if (!project) continue;
        const list = holdings.get(project.id) ?? [];
        list.push({ nodeId, data });
        holdings.set(project.id, list);
      }
    }
    return this.store.listProjects().map((p) => projectSummary(p, holdings.get(p.id) ?? []));
  }

  /** The reply to a status request: the artifact's status, optionally with each job's locks, or UNKNOWN_ARTIFACT. */
  status(reqId: number, artifactId: string, locks = false): Message {
    const status = this.store.status(artifactId);
    if (!status) return { type: 'error', reqId, error: wireError('UNKNOWN_ARTIFACT', `no artifact ${artifactId}`) };
    if (!locks) return { type: 'status', reqId, status };
    // The store's status is shared (frozen): the locks go on a copy.
    const all = this.store.locksOf(artifactId);
    return { type: 'status', reqId, status: { ...status, jobs: status.jobs.map((j) => ({ ...j, locks: all[j.index] ?? [] })) } };
  }
}
