import 'uplot/dist/uPlot.min.css';
import './app.css';
import { render } from 'preact';
import uPlot from 'uplot';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { decodeValue } from '../protocols/codec.ts';
import type { ArtifactState, ArtifactSummary, JobStatus, NodeInfo, ProjectInfo } from '../protocols/entities.ts';
import type { WireError } from '../protocols/errors.ts';
import { COL_W, countStates, JOB_STATES, LANE_H, layoutDag, NODE_H, TOP } from './dag.ts';
import { flatRow, fmtValue, isRecord, isScalar, perFeatureArray, toJson } from './tables.ts';
import { layoutTimeline } from './timeline.ts';
import { Model } from './model.ts';
import { Session, type SessionState } from './session.ts';

/**
 * The fdl dashboard: a workbench session in the browser. It asks for a workbench token, then
 * shows what that token's scope may see, live: `watchNetwork` pushes nodes and artifacts, and
 * `subscribe` pushes the selected artifact's jobs. Views are chosen by the URL's hash
 * (#/artifacts, #/nodes, #/projects, #/artifact/<id>), so each can be linked to.
 */

const model = new Model();
let session: Session | undefined;

// ---------------------------------------------------------------- helpers

const fmtTime = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toLocaleTimeString());
const fmtDateTime = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toLocaleString());
function fmtDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
const describeError = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Redraws the component on every change of the model (at most once a frame). */
function useModel(): number {
  const [version, setVersion] = useState(model.version);
  useEffect(() => {
    const off = model.onChange(() => setVersion(model.version));
    // A change between this component's first drawing and now (a reply that arrived meanwhile)
    // had no listener here yet: catch up on it, or the view stays stale until the next push.
    if (model.version !== version) setVersion(model.version);
    return off;
  }, []);
  return version;
}

/** A clock for durations of running things: ticks once a second while mounted. */
function useNow(active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [active]);
  return now;
}

function useHash(): string {
  const [hash, setHash] = useState(location.hash || '#/artifacts');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/artifacts');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

// ---------------------------------------------------------------- session

async function watchNetwork(): Promise<void> {
  const reply = await session?.request((reqId) => ({ type: 'watchNetwork', reqId, limit: 1000 }), 'network');
  if (reply) model.applyNetwork(reply);
}

async function follow(artifactId: string): Promise<void> {
  if (!session) return;
  try {
    const reply = await session.request((reqId) => ({ type: 'subscribe', reqId, artifactId, locks: true }), 'status');
    model.applyStatus(reply.status);
  } catch (e) {
    if (model.selected?.id === artifactId) {
      model.selected.error = describeError(e);
      model.changed();
    }
  }
}

async function fetchResult(artifactId: string): Promise<void> {
  const sel = model.selected;
  if (!session || !sel || sel.id !== artifactId || sel.result !== undefined || sel.resultError) return;
  try {
    const r = await session.request((reqId) => ({ type: 'getResult', reqId, artifactId }), 'result');
    if (!r.data) {
      // Over the stream threshold the bytes follow as chunks, which the page does not gather.
      throw new Error(`the result is ${r.size.toLocaleString()} bytes, too large to show here: download it with fdl result ${artifactId} --out FILE`);
    }
    if (globalThis.crypto?.subtle) {
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', r.data as Uint8Array<ArrayBuffer>));
      const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
      if (hex !== r.sha256) throw new Error('the result arrived corrupted (its sha256 does not match)');
    }
    sel.result = decodeValue(r.data);
  } catch (e) {
    sel.resultError = describeError(e);
  }
  model.changed();
}

// ---------------------------------------------------------------- login

function Login(props: { onToken(token: string): void; message: string | undefined; busy: boolean }) {
  const [token, setToken] = useState('');
  return (
    <form
      class="login"
      onSubmit={(e) => {
        e.preventDefault();
        if (token.trim()) props.onToken(token.trim());
      }}
    >
      <h1>fdl dashboard</h1>
      <p>Enter a workbench token. Its scope decides which projects, artifacts and nodes you see.</p>
      <input
        id="token"
        type="password"
        autocomplete="off"
        placeholder="fdl_w_…"
        value={token}
        onInput={(e) => setToken((e.target as HTMLInputElement).value)}
      />
      <button id="connect" type="submit" disabled={props.busy}>
        {props.busy ? 'Connecting…' : 'Connect'}
      </button>
      {props.message && (
        <p class="error" id="login-error" role="alert">
          {props.message}
        </p>
      )}
    </form>
  );
}

// ---------------------------------------------------------------- lists

/** A list of fixed-height rows that renders only what is in view (thousands of rows stay fast). */
function VirtualList<T>(props: { items: readonly T[]; rowHeight: number; height: number; row(item: T, index: number): preact.ComponentChild; header: preact.ComponentChild; testId: string }) {
  const [top, setTop] = useState(0);
  const { items, rowHeight, height } = props;
  const first = Math.max(0, Math.floor(top / rowHeight) - 10);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 10);
  const shown = [];
  for (let i = first; i < last; i++) shown.push(props.row(items[i] as T, i));
  return (
    <div class="vlist" data-testid={props.testId}>
      <div class="vhead">{props.header}</div>
      <div class="vbody" style={{ height: `${Math.min(height, Math.max(rowHeight, items.length * rowHeight))}px` }} onScroll={(e) => setTop((e.target as HTMLElement).scrollTop)}>
        <div style={{ height: `${items.length * rowHeight}px`, position: 'relative' }}>
          <div style={{ position: 'absolute', top: `${first * rowHeight}px`, left: 0, right: 0 }}>{shown}</div>
        </div>
      </div>
      {items.length === 0 && <div class="empty">nothing to show</div>}
    </div>
  );
}

const ARTIFACT_STATES: ArtifactState[] = ['SCHEDULED', 'RUNNING', 'COMPLETED', 'ERROR', 'CANCELLED'];

function Progress(props: { completed: number; total: number }) {
  const pct = props.total > 0 ? Math.round((100 * props.completed) / props.total) : 0;
  return (
    <span class="progress" title={`${props.completed} of ${props.total} jobs done`}>
      <span class="bar">
        <span style={{ width: `${pct}%` }} />
      </span>
      {props.completed}/{props.total}
    </span>
  );
}

function Artifacts() {
  useModel();
  const [state, setState] = useState('');
  const [project, setProject] = useState('');
  const [text, setText] = useState('');
  const running = [...model.artifacts.values()].some((a) => a.finishedAt === undefined);
  const now = useNow(running);
  const list = useMemo(
    () =>
      [...model.artifacts.values()]
        .filter((a) => (!state || a.state === state) && (!project || a.projectId === project) && (!text || `${a.id} ${a.name ?? ''}`.includes(text)))
        .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1)),
    [model.version, state, project, text],
  );
  const projectName = (id: string) => model.projectNames.get(id)?.name ?? id;
  return (
    <section>
      <div class="filters">
        <select id="filter-state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
          <option value="">every state</option>
          {ARTIFACT_STATES.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
        <select id="filter-project" value={project} onChange={(e) => setProject((e.target as HTMLSelectElement).value)}>
          <option value="">every project</option>
          {[...model.projectNames.values()].map((p) => (
            <option value={p.id}>{p.name}</option>
          ))}
        </select>
        <input id="filter-text" placeholder="id or name" value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} />
        <span class="count">
          {list.length} of {model.artifacts.size} artifacts
        </span>
      </div>
      <VirtualList
        testId="artifact-list"
        items={list}
        rowHeight={32}
        height={560}
        header={
          <div class="row artifact-row head">
            <span>name</span>
            <span>state</span>
            <span>project</span>
            <span>submitted</span>
            <span>duration</span>
            <span>progress</span>
          </div>
        }
        row={(a: ArtifactSummary) => (
          <a class="row artifact-row" href={`#/artifact/${a.id}`} data-artifact={a.id} data-state={a.state} key={a.id}>
            <span title={a.id}>{a.name ?? a.id.slice(0, 10)}</span>
            <span class={`state s-${a.state}`}>{a.state}</span>
            <span>{projectName(a.projectId)}</span>
            <span>{fmtDateTime(a.createdAt)}</span>
            <span>{fmtDuration((a.finishedAt ?? now) - a.createdAt)}</span>
            <span>{a.progress && <Progress {...a.progress} />}</span>
          </a>
        )}
      />
    </section>
  );
}

function Nodes() {
  useModel();
  const [filter, setFilter] = useState('');
  const nodes = useMemo(
    () => [...model.nodes.values()].filter((n) => !filter || n.id.includes(filter) || n.name.includes(filter)).sort((a, b) => (a.id < b.id ? -1 : 1)),
    [model.version, filter],
  );
  const online = [...model.nodes.values()].filter((n) => n.connected).length;
  const projectName = (id: string) => model.projectNames.get(id)?.name ?? id;
  const sources = (n: NodeInfo) =>
    (n.sources ?? []).map((s) => `${s.name} (${projectName(s.projectId)}): ${s.rows.toLocaleString()} rows, ${s.features} features`).join('; ');
  return (
    <section>
      <div class="filters">
        <input id="filter-node" placeholder="node id or name" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        <span class="count">
          {online} online of {model.nodes.size} nodes
        </span>
      </div>
      <VirtualList
        testId="node-list"
        items={nodes}
        rowHeight={32}
        height={560}
        header={
          <div class="row node-row head">
            <span>node</span>
            <span>role</span>
            <span>status</span>
            <span>last seen</span>
            <span>key fingerprint</span>
            <span>projects</span>
            <span>data sources (aggregates)</span>
          </div>
        }
        row={(n: NodeInfo) => (
          <div class="row node-row" data-node={n.id} data-connected={String(n.connected)} key={n.id}>
            <span title={n.id}>{n.name || n.id}</span>
            <span>{n.role}</span>
            <span class={n.connected ? 'state s-COMPLETED' : 'state s-ERROR'}>{n.connected ? 'online' : 'lost'}</span>
            <span>{fmtDateTime(n.lastSeen)}</span>
            <span class="mono">{n.fingerprint ?? ''}</span>
            <span>{n.projects}</span>
            <span title={sources(n)}>{sources(n)}</span>
          </div>
        )}
      />
    </section>
  );
}

function Projects() {
  useModel();
  const lines = model.projectLines();
  return (
    <section>
      <table class="table" data-testid="project-list">
        <thead>
          <tr>
            <th>project</th>
            <th>workers online</th>
            <th>data sources</th>
            <th>rows</th>
            <th>features</th>
            <th>artifacts</th>
          </tr>
        </thead>
        <tbody>
          {lines.map((p) => (
            <tr key={p.id} data-project={p.id}>
              <td title={p.id}>{p.name}</td>
              <td>{p.workers}</td>
              <td>{p.datasources}</td>
              <td>{p.rows.toLocaleString()}</td>
              <td>{p.features}</td>
              <td>{[...model.artifacts.values()].filter((a) => a.projectId === p.id).length}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {lines.length === 0 && <div class="empty">no project in this token's scope</div>}
      <Schema />
    </section>
  );
}

/**
 * A project's aggregated schema (features, types, aggregates over its data sources), as
 * `getProject` gives it: it takes the project's own token, a secret the researcher holds, so the
 * page asks for it and keeps it only while it shows the answer.
 */
function Schema() {
  const [token, setToken] = useState('');
  const [info, setInfo] = useState<ProjectInfo | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const open = async () => {
    setError(undefined);
    setInfo(undefined);
    try {
      const reply = await session?.request((reqId) => ({ type: 'getProject', reqId, projectToken: token.trim() }), 'project');
      setInfo(reply?.project);
    } catch (e) {
      setError(describeError(e));
    }
  };
  return (
    <div class="schema">
      <h3>Aggregated schema</h3>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) void open();
        }}
      >
        <input id="project-token" type="password" autocomplete="off" placeholder="a project token" value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} />
        <button id="open-project" type="submit">
          Show its schema
        </button>
        {error && <span class="error">{error}</span>}
      </form>
      {info && (
        <table class="table" data-testid="schema">
          <caption>
            {info.name}: {info.workers} workers, {info.datasources} data sources, {info.rows.toLocaleString()} rows
          </caption>
          <thead>
            <tr>
              <th>feature</th>
              <th>type</th>
              <th>data sources</th>
              <th>rows</th>
              <th>missing</th>
              <th>min</th>
              <th>max</th>
              <th>mean</th>
              <th>categories</th>
            </tr>
          </thead>
          <tbody>
            {info.features.map((f) => (
              <tr key={`${f.name}/${f.dtype}`} data-feature={f.name}>
                <td>{f.name}</td>
                <td>{f.dtype}</td>
                <td>{f.datasources}</td>
                <td>{fmtValue(f.rows)}</td>
                <td>{fmtValue(f.missing)}</td>
                <td>{fmtValue(f.min)}</td>
                <td>{fmtValue(f.max)}</td>
                <td>{fmtValue(f.mean)}</td>
                <td>{f.categories ? f.categories.slice(0, 12).map(fmtValue).join(', ') + (f.categories.length > 12 ? ', …' : '') : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

// ---------------------------------------------------------------- one artifact

function Dag(props: { jobs: JobStatus[]; version: number; onPick(job: JobStatus): void; picked: string | undefined; onLane(key: string): void }) {
  // The layout depends on the DAG's shape only, not on states: laid out once per artifact.
  const layout = useMemo(() => layoutDag(props.jobs), [props.jobs]);
  return (
    <div class="dag-scroll">
      <svg class="dag" width={layout.width} height={layout.height} data-testid="dag" role="img" aria-label="the artifact's job DAG">
        <title>the artifact's job DAG</title>
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" />
          </marker>
        </defs>
        {layout.edges.map((e) => {
          const d = e.same
            ? `M ${e.x1} ${e.y1} C ${e.x1 + 24} ${e.y1}, ${e.x2 + 24} ${e.y2}, ${e.x2} ${e.y2}`
            : `M ${e.x1} ${e.y1} C ${(e.x1 + e.x2) / 2} ${e.y1}, ${(e.x1 + e.x2) / 2} ${e.y2}, ${e.x2} ${e.y2}`;
          return <path key={e.key} d={d} class="edge" marker-end="url(#arrow)" />;
        })}
        {layout.columns.map((c) => (
          <g key={c.key}>
            <text x={c.x} y={18} class="col-label">
              {c.label} ({c.jobs.length})
            </text>
            {c.collapsed ? <Lane jobs={c.jobs} x={c.x} laneKey={c.key} onLane={props.onLane} /> : c.jobs.map((j) => <JobNode job={j} x={c.x} y={layout.placed.get(j.index)?.y ?? TOP} picked={props.picked === j.id} onPick={props.onPick} />)}
          </g>
        ))}
      </svg>
    </div>
  );
}

function JobNode(props: { job: JobStatus; x: number; y: number; picked: boolean; onPick(job: JobStatus): void }) {
  const j = props.job;
  const tip = `${j.id}\n${j.operation} on ${j.worker}\n${j.state}, attempt ${j.attempt}${j.lastError ? `\nlast error: ${j.lastError.code}: ${j.lastError.message}` : ''}${j.nextAttemptAt ? `\nnext attempt at ${fmtTime(j.nextAttemptAt)}` : ''}`;
  return (
    // biome-ignore lint/a11y/useSemanticElements: an SVG shape cannot be a <button>; it has the role and the keys of one
    <g class={`job s-${j.state}${j.leftOut ? ' left-out' : ''}${props.picked ? ' picked' : ''}`} data-job={j.id} data-state={j.state} data-attempt={j.attempt} data-worker={j.worker} role="button" tabIndex={0} onClick={() => props.onPick(j)} onKeyDown={(e) => e.key === 'Enter' && props.onPick(j)}>
      <title>{tip}</title>
      <rect x={props.x} y={props.y} width={COL_W} height={NODE_H} rx={5} />
      <text x={props.x + 8} y={props.y + 18}>
        {j.worker.length > 16 ? `${j.worker.slice(0, 15)}…` : j.worker}
      </text>
      {j.attempt > 1 && (
        <text x={props.x + COL_W - 8} y={props.y + 18} class="attempts" text-anchor="end" data-attempts={j.attempt}>
          ×{j.attempt}
        </text>
      )}
    </g>
  );
}

function Lane(props: { jobs: JobStatus[]; x: number; laneKey: string; onLane(key: string): void }) {
  const counts = countStates(props.jobs);
  const total = props.jobs.length;
  let offset = 0;
  const attempts = props.jobs.reduce((n, j) => n + Math.max(0, j.attempt - 1), 0);
  return (
    // biome-ignore lint/a11y/useSemanticElements: an SVG shape cannot be a <button>; it has the role and the keys of one
    <g class="lane" data-lane={props.laneKey} role="button" tabIndex={0} onClick={() => props.onLane(props.laneKey)} onKeyDown={(e) => e.key === 'Enter' && props.onLane(props.laneKey)}>
      <title>{`${total} jobs: click to list them`}</title>
      <rect x={props.x} y={TOP} width={COL_W} height={LANE_H} rx={6} class="lane-box" />
      {JOB_STATES.map((s) => {
        const w = (COL_W - 16) * (counts[s] / total);
        const r = <rect x={props.x + 8 + offset} y={TOP + 10} width={w} height={14} class={`s-${s} fillonly`} />;
        offset += w;
        return r;
      })}
      {JOB_STATES.filter((s) => counts[s] > 0).map((s, i) => (
        <text x={props.x + 10} y={TOP + 44 + i * 16} class="lane-text">
          {s.toLowerCase()}: {counts[s]}
        </text>
      ))}
      {attempts > 0 && (
        <text x={props.x + 10} y={TOP + LANE_H - 10} class="lane-text">
          retries: {attempts}
        </text>
      )}
    </g>
  );
}

function JobTable(props: { jobs: JobStatus[]; lane: string | undefined }) {
  const [state, setState] = useState('');
  const now = Date.now();
  const jobs = props.jobs.filter((j) => (!state || j.state === state) && (!props.lane || `${j.iteration}/${j.stepIndex}/${j.operation}` === props.lane));
  return (
    <div>
      <div class="filters">
        <select id="filter-job-state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
          <option value="">every job state</option>
          {JOB_STATES.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
        <span class="count">
          {jobs.length} jobs{props.lane ? ' in the lane picked' : ''}
        </span>
      </div>
      <VirtualList
        testId="job-list"
        items={jobs}
        rowHeight={28}
        height={300}
        header={
          <div class="row job-row head">
            <span>job</span>
            <span>operation</span>
            <span>worker</span>
            <span>state</span>
            <span>attempts</span>
            <span>last error</span>
            <span>next retry</span>
          </div>
        }
        row={(j: JobStatus) => (
          <div class="row job-row" key={j.id} data-job-row={j.id} data-state={j.state} data-attempt={j.attempt}>
            <span>#{j.index}</span>
            <span>{j.operation}</span>
            <span>{j.worker}</span>
            <span class={`state s-${j.state}`}>
              {j.state}
              {j.leftOut ? ' (left out)' : ''}
            </span>
            <span class="attempt-count">{j.attempt}</span>
            <span class="last-error" title={j.lastError ? `${j.lastError.code}: ${j.lastError.message}` : ''}>
              {j.lastError ? `${j.lastError.code}: ${j.lastError.message}` : ''}
            </span>
            <span>{j.nextAttemptAt ? `${fmtTime(j.nextAttemptAt)} (in ${fmtDuration(Math.max(0, j.nextAttemptAt - now))})` : ''}</span>
          </div>
        )}
      />
    </div>
  );
}

/** One row per worker, a bar per job (its latest attempt, start to end) coloured by state; rows virtualized. */
function TimelineView(props: { jobs: JobStatus[]; version: number; now: number }) {
  const tl = useMemo(() => layoutTimeline(props.jobs, props.now), [props.jobs, props.version, props.now]);
  return (
    <VirtualList
      testId="timeline"
      items={tl.rows}
      rowHeight={24}
      height={300}
      header={
        <div class="row tl-row head">
          <span>worker</span>
          <span class="tl-axis">
            <span>{fmtTime(tl.rows.length > 0 ? tl.from : undefined)}</span>
            <span>{tl.rows.length > 0 ? fmtDuration(tl.to - tl.from) : 'no job has started yet'}</span>
            <span>{fmtTime(tl.rows.length > 0 ? tl.to : undefined)}</span>
          </span>
        </div>
      }
      row={(r) => (
        <div class="row tl-row" key={r.worker} data-timeline-worker={r.worker}>
          <span title={r.worker}>{r.worker}</span>
          <span class="tl-track">
            {r.bars.map((b) => (
              <span
                key={b.jobId}
                class={`tl-bar s-${b.state}`}
                data-timeline-job={b.jobId}
                data-state={b.state}
                style={{ left: `${(100 * b.left).toFixed(3)}%`, width: `${(100 * b.width).toFixed(3)}%` }}
                title={`#${b.index} ${b.operation}: ${b.state}, attempt ${b.attempt}\n${fmtTime(b.start)} – ${fmtTime(b.end)} (${fmtDuration(b.end - b.start)})`}
              />
            ))}
          </span>
        </div>
      )}
    />
  );
}

const CHART_COLORS = ['#2f6fdb', '#2e9d5b', '#e8902c', '#d64545', '#8e5bd6', '#1aa3a3', '#7b8190'];

/** The per-round metrics of a model (its `history`) as lines, one per metric, with uPlot. */
function RoundChart(props: { rows: Array<Record<string, unknown>> }) {
  const el = useRef<HTMLDivElement>(null);
  const rows = props.rows.map((r) => flatRow(r)).filter((r) => typeof r.round === 'number');
  const skip = new Set(['round', 'samples', 'workers', 'n', 'tn', 'fp', 'fn', 'tp']);
  const metrics = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !skip.has(k) && rows.every((r) => typeof r[k] === 'number'));
  const key = JSON.stringify(rows.map((r) => metrics.map((m) => r[m])));
  useEffect(() => {
    if (!el.current || rows.length === 0 || metrics.length === 0) return;
    const data: uPlot.AlignedData = [rows.map((r) => r.round as number), ...metrics.map((m) => rows.map((r) => r[m] as number))];
    const chart = new uPlot(
      {
        width: Math.min(900, el.current.clientWidth || 900),
        height: 260,
        title: 'metrics per round',
        scales: { x: { time: false } },
        axes: [{ label: 'round', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500] }, {}],
        series: [{ label: 'round' }, ...metrics.map((m, i) => ({ label: m, stroke: CHART_COLORS[i % CHART_COLORS.length] as string, width: 2, points: { show: true } }))],
      },
      data,
      el.current,
    );
    return () => chart.destroy();
  }, [key]);
  if (rows.length === 0 || metrics.length === 0) return null;
  return <div class="chart" ref={el} data-testid="round-chart" />;
}

/**
 * A statistic's product as tables: scalars as one table; maps keyed by feature (mean, count,
 * variance...) pivoted into one table, a row per feature; lists of records (groups, a model's
 * rounds) as a table. A model: its per-feature parameters as columns, its rounds as a chart.
 */
function ResultView(props: { value: unknown }) {
  const v = props.value;
  if (!isRecord(v)) return <pre class="json">{JSON.stringify(v, null, 2)?.slice(0, 5000)}</pre>;
  const modelFeatures = Array.isArray(v.features) && v.features.every((f) => typeof f === 'string') ? (v.features as string[]) : undefined;
  const scalars = Object.entries(v).filter(([, x]) => isScalar(x));
  const perFeature = Object.entries(v).flatMap(([k, x]): Array<[string, Record<string, unknown>]> => {
    if (isRecord(x) && Object.values(x).every(isScalar)) return [[k, x]];
    const arr = modelFeatures ? perFeatureArray(x, modelFeatures) : undefined;
    return arr ? [[k, arr]] : [];
  });
  const lists = Object.entries(v).filter(([, x]) => Array.isArray(x) && x.length > 0 && x.every(isRecord)) as Array<[string, Array<Record<string, unknown>>]>;
  const by = Array.isArray(v.by) && v.by.every((f) => typeof f === 'string') ? (v.by as string[]) : undefined;
  const shown = new Set([...scalars, ...perFeature, ...lists].map(([k]) => k));
  if (modelFeatures) shown.add('features');
  if (by) shown.add('by');
  const rest = Object.entries(v).filter(([k]) => !shown.has(k));
  const features = [...new Set(perFeature.flatMap(([, m]) => Object.keys(m)))];
  return (
    <div class="result" data-testid="result">
      {scalars.length > 0 && (
        <table class="table">
          <tbody>
            {scalars.map(([k, x]) => (
              <tr>
                <th>{k}</th>
                <td>{fmtValue(x)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {perFeature.length > 0 && (
        <table class="table">
          <thead>
            <tr>
              <th>feature</th>
              {perFeature.map(([k]) => (
                <th>{k}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {features.map((f) => (
              <tr>
                <td>{f}</td>
                {perFeature.map(([, m]) => (
                  <td>{fmtValue(m[f])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {lists.map(([k, raw]) => {
        const rows = raw.map((r) => flatRow(r, by));
        const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
        return (
          <>
          {k === 'history' && <RoundChart rows={raw} />}
          <table class="table">
            <caption>{k}</caption>
            <thead>
              <tr>
                {cols.map((c) => (
                  <th>{c}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.slice(0, 500).map((r) => (
                <tr>
                  {cols.map((c) => (
                    <td>{fmtValue(r[c])}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          </>
        );
      })}
      {rest.length > 0 && <pre class="json">{JSON.stringify(Object.fromEntries(rest), (_k, x) => (ArrayBuffer.isView(x) ? `(${x.byteLength} bytes)` : x), 2).slice(0, 5000)}</pre>}
    </div>
  );
}

function ArtifactView(props: { id: string }) {
  const version = useModel();
  const [picked, setPicked] = useState<JobStatus | undefined>(undefined);
  const [lane, setLane] = useState<string | undefined>(undefined);
  const [cancelling, setCancelling] = useState<string | undefined>(undefined);
  useEffect(() => {
    model.select(props.id);
    setPicked(undefined);
    setLane(undefined);
    void follow(props.id);
    return () => model.select(undefined);
  }, [props.id]);
  const sel = model.selected;
  const status = sel?.status;
  const done = status?.state === 'COMPLETED';
  useEffect(() => {
    if (done) void fetchResult(props.id);
  }, [done, props.id]);
  const now = useNow(status !== undefined && (status.state === 'RUNNING' || status.state === 'SCHEDULED'));
  if (sel?.error) return <p class="error">{sel.error}</p>;
  if (!status) return <p>loading {props.id}…</p>;
  const summary = model.artifacts.get(props.id);
  const finished = status.state === 'COMPLETED' || status.state === 'ERROR' || status.state === 'CANCELLED';
  const cancel = async () => {
    setCancelling('cancelling…');
    try {
      await session?.request((reqId) => ({ type: 'cancelArtifact', reqId, artifactId: props.id }), 'status');
      setCancelling(undefined);
    } catch (e) {
      setCancelling(describeError(e));
    }
  };
  const pickedNow = picked ? sel?.byId.get(picked.id) : undefined;
  return (
    <section class="artifact" data-artifact-view={status.id} data-state={status.state}>
      <div class="artifact-head">
        <h2>
          {status.name ?? 'artifact'} <span class="mono small">{status.id}</span>
        </h2>
        <span class={`state big s-${status.state}`} id="artifact-state">
          {status.state}
        </span>
        <Progress {...status.progress} />
        <span>project {model.projectNames.get(status.projectId)?.name ?? status.projectId}</span>
        <span>submitted {fmtDateTime(status.createdAt)}</span>
        <span>{fmtDuration((summary?.finishedAt ?? (finished ? status.updatedAt : now)) - status.createdAt)}</span>
        {!finished && (
          <button id="cancel" type="button" class="danger" onClick={cancel} disabled={cancelling === 'cancelling…'}>
            Cancel
          </button>
        )}
        {cancelling && cancelling !== 'cancelling…' && <span class="error">{cancelling}</span>}
      </div>
      {status.error && (
        <p class="error" id="artifact-error">
          {status.error.error.code}: {status.error.error.message}
          {status.error.jobId ? ` (job ${status.error.jobId} on ${status.error.worker ?? '?'})` : ''}
        </p>
      )}
      <h3>Job DAG</h3>
      <p class="legend">
        {JOB_STATES.map((s) => (
          <span class={`chip s-${s}`}>{s.toLowerCase()}</span>
        ))}
        <span class="hint">columns are steps; arrows are locks (a job waits for the jobs pointing at it); ×n is the attempt number</span>
      </p>
      <Dag jobs={status.jobs} version={version} picked={picked?.id} onPick={setPicked} onLane={(k) => setLane(k === lane ? undefined : k)} />
      {pickedNow && <JobDetails job={pickedNow} />}
      <h3>Timeline</h3>
      <p class="legend">
        <span class="hint">one row per worker; a bar per job, from the start of its latest attempt to its end, coloured by state</span>
      </p>
      <TimelineView jobs={status.jobs} version={version} now={now} />
      <h3>Jobs</h3>
      <JobTable jobs={status.jobs} lane={lane} />
      {status.state === 'COMPLETED' && (
        <>
          <h3>
            Result{' '}
            {sel?.result !== undefined && (
              <button id="download" type="button" onClick={() => download(`${status.name ?? status.id}.json`, toJson(sel.result))}>
                Download (JSON)
              </button>
            )}
          </h3>
          {sel?.resultError ? <p class="error">{sel.resultError}</p> : sel?.result === undefined ? <p>loading the result…</p> : <ResultView value={sel.result} />}
        </>
      )}
    </section>
  );
}

/** Saves text as a file (the result is already here: no second request). */
function download(name: string, text: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  a.download = name.replace(/[^A-Za-z0-9._ ()-]/g, '_');
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function JobDetails(props: { job: JobStatus }) {
  const j = props.job;
  return (
    <dl class="job-details" data-testid="job-details">
      <dt>job</dt>
      <dd>
        #{j.index} {j.operation} (step {j.stepIndex}
        {j.iteration > 0 ? `, round ${j.iteration}` : ''})
      </dd>
      <dt>worker</dt>
      <dd>{j.worker}</dd>
      <dt>state</dt>
      <dd>
        {j.state}
        {j.leftOut ? ' (left out under its quorum)' : ''}
      </dd>
      <dt>attempts</dt>
      <dd>{j.attempt}</dd>
      <dt>last error</dt>
      <dd>{j.lastError ? `${j.lastError.code}: ${j.lastError.message}` : 'none'}</dd>
      <dt>next retry</dt>
      <dd>{j.nextAttemptAt ? fmtDateTime(j.nextAttemptAt) : '—'}</dd>
    </dl>
  );
}

// ---------------------------------------------------------------- the page

function App() {
  const [phase, setPhase] = useState<SessionState | 'login'>('login');
  const [message, setMessage] = useState<string | undefined>(undefined);
  const hash = useHash();
  const selectedRef = useRef<string | undefined>(undefined);

  const connect = (token: string) => {
    session?.close();
    model.reset();
    setMessage(undefined);
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
    const s = new Session(url, token, {
      onPush: (m) => {
        if (m.type === 'networkEvent') model.applyNetworkEvent(m);
        else if (m.type === 'artifactEvent') model.applyArtifactEvent(m);
      },
      onWelcome: () => {
        // First welcome and every reconnection: the picture now, then its pushes.
        void watchNetwork().catch((e) => setMessage(describeError(e)));
        if (selectedRef.current) void follow(selectedRef.current);
      },
      onState: (state, error) => {
        if (state === 'refused') {
          const e = error as WireError | undefined;
          model.reset();
          session = undefined;
          setPhase('login');
          setMessage(
            e?.code === 'AUTH_FAILED'
              ? `The scheduler refused this token (${e.code}: ${e.message}). Check it, or ask the operator for a workbench token (fdl tokens create --kind workbench).`
              : `The scheduler refused the session: ${typeof error === 'string' ? error : `${e?.code}: ${e?.message}`}`,
          );
          return;
        }
        if (state === 'closed') {
          if (typeof error === 'string') {
            session = undefined;
            setPhase('login');
            setMessage(error);
          }
          return;
        }
        setPhase(state);
      },
    });
    session = s;
    s.start();
  };

  const route = hash.startsWith('#/artifact/') ? 'artifact' : hash.replace('#/', '') || 'artifacts';
  const artifactId = route === 'artifact' ? decodeURIComponent(hash.slice('#/artifact/'.length)) : undefined;
  selectedRef.current = artifactId;

  if (phase === 'login' || phase === 'connecting' || phase === 'refused') {
    return <Login onToken={connect} message={message} busy={phase === 'connecting'} />;
  }
  const tab = (name: string, label: string) => (
    <a href={`#/${name}`} class={route === name || (name === 'artifacts' && route === 'artifact') ? 'tab active' : 'tab'} id={`tab-${name}`}>
      {label}
    </a>
  );
  return (
    <div class="page">
      <header>
        <strong>fdl dashboard</strong>
        <nav>
          {tab('artifacts', 'Artifacts')}
          {tab('nodes', 'Nodes')}
          {tab('projects', 'Projects')}
        </nav>
        <span class={`conn c-${phase}`} id="connection">
          {phase === 'live' ? 'live' : phase}
        </span>
        <button
          type="button"
          onClick={() => {
            session?.close();
            session = undefined;
            model.reset();
            setPhase('login');
          }}
        >
          Sign out
        </button>
      </header>
      {message && <p class="error">{message}</p>}
      <main>
        {route === 'artifact' && artifactId ? <ArtifactView id={artifactId} /> : route === 'nodes' ? <Nodes /> : route === 'projects' ? <Projects /> : <Artifacts />}
      </main>
    </div>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
