// Preload for measurement only (Node 20 refuses --cpu-prof in NODE_OPTIONS, which is how a bench
// reaches a process the CLI starts): with FDL_CPU_PROFILE_DIR set, the process profiles itself
// with the inspector from start to exit and writes <dir>/cpu-<pid>.cpuprofile (open in Chrome's
// DevTools or speedscope).
const { writeFileSync } = require('node:fs');
const inspector = require('node:inspector');
const dir = process.env.FDL_CPU_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-process session answers synchronously, so the profile is written before exit.
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(`${dir}/cpu-${process.pid}.cpuprofile`, JSON.stringify(result.profile));
    });
  });
}
