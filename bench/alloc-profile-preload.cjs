// Preload for measurement only: with FDL_ALLOC_PROFILE_DIR set, SIGUSR2 starts V8's sampling heap
// profiler (every allocation sampled, kept or collected: the garbage is what sizes the heap under
// load) and the next SIGUSR2 writes <dir>/alloc-<pid>-<n>.heapprofile (Chrome DevTools, Memory tab,
// or speedscope) and stops it. bench/scale-memory.ts --alloc-profile sends both around its load.
const { writeFileSync } = require('node:fs');
const inspector = require('node:inspector');
const dir = process.env.FDL_ALLOC_PROFILE_DIR;
if (dir) {
  const session = new inspector.Session();
  session.connect();
  session.post('HeapProfiler.enable');
  let on = false;
  let n = 0;
  process.on('SIGUSR2', () => {
    if (!on) {
      session.post('HeapProfiler.startSampling', {
        samplingInterval: 16384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      on = true;
      return;
    }
    session.post('HeapProfiler.stopSampling', (err, result) => {
      if (!err) writeFileSync(`${dir}/alloc-${process.pid}-${++n}.heapprofile`, JSON.stringify(result.profile));
    });
    on = false;
  });
}
