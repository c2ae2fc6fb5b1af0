// Preload for measurement only: every 2 s the process writes its memoryUsage and V8 heap spaces.
const { writeFileSync } = require('node:fs');
const v8 = require('node:v8');
const dir = process.env.FDL_MEM_DIR;
if (dir) {
  setInterval(() => {
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]));
    writeFileSync(`${dir}/mem-${process.pid}.json`, JSON.stringify({ mem: process.memoryUsage(), heap: v8.getHeapStatistics(), spaces }));
  }, 2000).unref();
}
