// µs per ArtifactHandle.push of a jobState event, for an artifact of JOBS (900) jobs, each job SCHEDULED, RUNNING, COMPLETED; a listener attached.
// Usage: node --import tsx bench/handle-push.ts <a tree>/lib/workbench/client.ts [...another]; run two trees alternately (A/B).
for (const path of process.argv.slice(2)) await measure(path);

async function measure(path: string): Promise<void> {
  const mod = await import(path);
  const JOBS = Number(process.env.JOBS ?? 900);
  const jobs = Array.from({ length: JOBS }, (_, i) => ({ id: `a.${i}`, index: i, worker: 'w1', stepIndex: 0, iteration: i, operation: 'Noop', state: 'WAITING', attempt: 0 }));
  const status = { id: 'a', projectId: 'p', state: 'RUNNING', progress: { completed: 0, total: JOBS }, jobs, createdAt: 1, updatedAt: 1 };
  const h = new mod.ArtifactHandle({}, status);
  h.on('event', () => {});
  const states = ['SCHEDULED', 'RUNNING', 'COMPLETED'];
  const events: unknown[] = [];
  for (let i = 0; i < JOBS; i++) for (const s of states) events.push({ type: 'artifactEvent', artifactId: 'a', progress: { completed: i, total: JOBS }, event: { kind: 'jobState', jobId: `a.${i}`, worker: 'w1', state: s, attempt: 1 } });
  for (const e of events.slice(0, 300)) h.push(e); // warm
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < 5; r++) for (const e of events) h.push(e);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  console.log(JSON.stringify({ module: path, jobs: JOBS, events: events.length * 5, usPerEventWall: +(wall * 1000 / (events.length * 5)).toFixed(2), usPerEventCpu: +((cpu.user + cpu.system) / (events.length * 5)).toFixed(2) }));
}
