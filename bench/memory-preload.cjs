// Preload for measurement only: every 2 s the process writes its memoryUsage and V8 heap spaces,
// and its garbage collections so far (count and main-thread pause, ms, by kind).
const { writeFileSync } = require('node:fs');
const { PerformanceObserver, constants } = require('node:perf_hooks');
const v8 = require('node:v8');
const dir = process.env.FDL_MEM_DIR;
if (dir) {
  const kinds = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak' };
  const gc = {};
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = kinds[e.detail?.kind ?? e.kind] ?? 'other';
      gc[k] ??= { count: 0, ms: 0 };
      gc[k].count++;
      gc[k].ms += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  setInterval(() => {
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]));
    writeFileSync(`${dir}/mem-${process.pid}.json`, JSON.stringify({ mem: process.memoryUsage(), heap: v8.getHeapStatistics(), spaces, gc }));
  }, 2000).unref();
}
