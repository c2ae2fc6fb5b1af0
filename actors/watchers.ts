import type { ArtifactState, ArtifactSummary, NodeInfo } from '../protocols/entities.ts';
import type { MessageOf } from '../protocols/messages.ts';
import { type Ref, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { type WorkbenchScope, inScope } from '../lib/security/auth.ts';
import { DEFAULT_ARTIFACT_LIST_LIMIT } from '../lib/store/defaults.ts';
import { artifactSummary } from '../lib/store/status.ts';
import { FINISHED_STATES, type Store, type StoredNode } from '../lib/store/store.ts';
import { Listings } from './listings.ts';
import type { PeerHandle } from './scheduler.ts';

/**
 * Watchers: who watches what on a scheduler, and the pushes they get. Owns the subscriptions of
 * workbench sessions to artifacts (`artifactEvent`), the sessions watching the network
 * (`networkEvent`), and the listing line of each supervised artifact, kept current from its
 * supervisor's events (no store read per event). Supervisors send their events here, not through
 * the Scheduler; the Scheduler tells it what only it knows (an artifact accepted or ended, a node
 * joined or left, a session gone) and hands it the requests that subscribe.
 */

export type WatchersMsg =
  /** An artifact is supervised: its line, and the session that submitted it (subscribed at once). */
  | { kind: 'track'; summary: ArtifactSummary; submitter?: PeerHandle }
  /** From a supervisor: transitions of its artifact (actors/artifact-supervisor.ts). */
  | { kind: 'artifactEvent'; message: MessageOf<'artifactEvent'> }
  /** Its supervisor finished (the final push went before): no more pushes for it. */
  | { kind: 'untrack'; artifactId: string }
  | { kind: 'artifactDeleted'; artifactId: string; projectId: string }
  /** `subscribe` from a session that may see the artifact: replied with its status, then its pushes. */
  | { kind: 'subscribe'; peer: PeerHandle; reqId: number; artifactId: string; locks: boolean }
  /** `watchNetwork`: the nodes and projects as the Scheduler sees them now; the artifacts are added here. */
  | { kind: 'watch'; peer: PeerHandle; scope: WorkbenchScope; reqId: number; limit?: number | undefined; nodes: NodeInfo[]; projects: MessageOf<'network'>['projects'] }
  /** A worker joined or left. */
  | { kind: 'node'; node: StoredNode; connected: boolean }
  | { kind: 'sessionEnded'; sessionId: string }
  /** Metrics and test seam: artifacts with subscriptions. */
  | { kind: 'countSubscriptions'; replyTo(subscriptions: number): void };

interface WatchersState {
  /** Sessions that sent `watchNetwork`, by session id. */
  watchers: Map<string, { peer: PeerHandle; scope: WorkbenchScope }>;
  /** The listing line of each supervised artifact. */
  live: Map<string, ArtifactSummary>;
  subscriptions: Map<string, Set<PeerHandle>>;
}

export function spawnWatchers(parent: Ref<unknown>, props: { store: Store; log: Logger; now(): number }): Ref<WatchersMsg> {
  const { store } = props;
  const listings = new Listings(store);

  const pushArtifact = (s: WatchersState, summary: ArtifactSummary) => {
    for (const w of s.watchers.values()) {
      if (inScope(w.scope, summary.projectId)) w.peer.send({ type: 'networkEvent', event: { kind: 'artifact', artifact: summary } });
    }
  };

  const subscribe = (s: WatchersState, artifactId: string, peer: PeerHandle) => {
    let subs = s.subscriptions.get(artifactId);
    if (!subs) {
      subs = new Set();
      s.subscriptions.set(artifactId, subs);
    }
    subs.add(peer);
  };

  /** A supervisor's push: to the subscribers; the listing line moves with the artifact's state and done count. */
  const onEvent = (s: WatchersState, message: MessageOf<'artifactEvent'>) => {
    const { artifactId, progress, events } = message;
    for (const peer of s.subscriptions.get(artifactId) ?? []) peer.send(message);
    // Not with each job's SCHEDULED/RUNNING: watchers get one push per batch with a job done, none per job started.
    const line = s.live.get(artifactId);
    if (!line) return;
    let state: ArtifactState | undefined;
    for (const e of events) if (e.kind === 'artifactState') state = e.state;
    const stateChanged = state !== undefined && state !== line.state;
    if (!stateChanged && line.progress?.completed === progress.completed) return;
    let next: ArtifactSummary = { ...line, progress, updatedAt: stateChanged ? props.now() : line.updatedAt };
    if (state !== undefined) {
      // A terminal state: the row is final, read it once for its exact times.
      const row = FINISHED_STATES.includes(state) ? store.artifact(artifactId) : undefined;
      next = row ? { ...artifactSummary(row), progress } : { ...next, state };
    }
    s.live.set(artifactId, next);
    pushArtifact(s, next);
  };

  return spawnActor<WatchersState, WatchersMsg>(
    parent,
    'watchers',
    (s, msg) => {
      switch (msg.kind) {
        case 'track':
          s.live.set(msg.summary.id, msg.summary);
          pushArtifact(s, msg.summary);
          if (msg.submitter) subscribe(s, msg.summary.id, msg.submitter);
          return s;
        case 'artifactEvent':
          onEvent(s, msg.message);
          return s;
        case 'untrack':
          s.subscriptions.delete(msg.artifactId);
          s.live.delete(msg.artifactId);
          return s;
        case 'artifactDeleted':
          s.subscriptions.delete(msg.artifactId);
          for (const w of s.watchers.values()) {
            if (inScope(w.scope, msg.projectId)) w.peer.send({ type: 'networkEvent', event: { kind: 'artifactDeleted', artifactId: msg.artifactId } });
          }
          return s;
        case 'subscribe':
          // The status now, then every push from here on (same turn: nothing falls between).
          // A finished artifact has nothing more to push: its status is the last word.
          if (s.live.has(msg.artifactId)) subscribe(s, msg.artifactId, msg.peer);
          msg.peer.send(listings.status(msg.reqId, msg.artifactId, msg.locks));
          return s;
        case 'watch': {
          // The picture now, then every change from here on: the reply and the pushes leave in
          // the order this actor makes them, so nothing falls between the two.
          const artifacts = store.listArtifacts(msg.scope.projects, msg.limit ?? DEFAULT_ARTIFACT_LIST_LIMIT);
          const progress = store.progressOf(artifacts.map((a) => a.id));
          msg.peer.send({
            type: 'network',
            reqId: msg.reqId,
            nodes: msg.nodes,
            projects: msg.projects,
            artifacts: artifacts.map((a) => s.live.get(a.id) ?? { ...artifactSummary(a), progress: progress.get(a.id) ?? { completed: 0, total: 0 } }),
          });
          s.watchers.set(msg.peer.sessionId, { peer: msg.peer, scope: msg.scope });
          return s;
        }
        case 'node':
          for (const w of s.watchers.values()) {
            if (listings.nodeVisible(w.scope, msg.node)) {
              w.peer.send({ type: 'networkEvent', event: { kind: 'node', node: listings.nodeInfo(msg.node, msg.connected, w.scope) } });
            }
          }
          return s;
        case 'sessionEnded':
          s.watchers.delete(msg.sessionId);
          for (const [artifactId, subs] of s.subscriptions) {
            for (const p of subs) if (p.sessionId === msg.sessionId) subs.delete(p);
            if (subs.size === 0) s.subscriptions.delete(artifactId);
          }
          return s;
        case 'countSubscriptions':
          msg.replyTo(s.subscriptions.size);
          return s;
      }
    },
    {
      log: props.log,
      initialState: () => ({ watchers: new Map(), live: new Map(), subscriptions: new Map() }),
      // Live sessions, not durable state: resume, don't lose them.
      onCrash: 'resume',
    },
  );
}
