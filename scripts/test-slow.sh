#!/bin/sh
# npm run test:slow: the same `npm test`, with the CPU of the tests (tap, every node process
# they start, the type check and the lint) capped at a quarter of one core, to show that no
# test depends on the machine being idle.
#
# The cap is a cgroup of our own (CFS bandwidth: QUOTA microseconds of CPU per PERIOD):
# cgroup v2 (cpu.max) when /sys/fs/cgroup is a writable v2 hierarchy with the cpu controller,
# else cgroup v1 (cpu.cfs_quota_us / cpu.cfs_period_us under /sys/fs/cgroup/cpu). systemd-run
# needs systemd as PID 1, which a container usually lacks. Needs root (or a delegated group).
# FDL_SLOW_CPU_PERCENT changes the cap (default 25, percent of one core).
set -eu

percent=${FDL_SLOW_CPU_PERCENT:-25}
period=100000
quota=$((period * percent / 100))
name="fdl-slow-$$"

if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  group="/sys/fs/cgroup/$name"
  mkdir "$group"
  if ! echo "$quota $period" >"$group/cpu.max" 2>/dev/null; then
    rmdir "$group"
    echo "test-slow: the cpu controller is not enabled for /sys/fs/cgroup's children (cgroup.subtree_control)" >&2
    exit 2
  fi
elif [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then
  group="/sys/fs/cgroup/cpu/$name"
  mkdir "$group"
  echo "$period" >"$group/cpu.cfs_period_us"
  echo "$quota" >"$group/cpu.cfs_quota_us"
else
  echo "test-slow: no writable cgroup cpu controller here (need root, cgroup v2 with cpu, or cgroup v1 cpu)" >&2
  exit 2
fi

cleanup() {
  # Give what is still in the group (nothing, after a normal end) ten seconds to exit, then move
  # it back to the parent group, so the group can be removed.
  n=0
  while [ -s "$group/cgroup.procs" ] && [ $n -lt 20 ]; do sleep 0.5; n=$((n + 1)); done
  for pid in $(cat "$group/cgroup.procs" 2>/dev/null); do echo "$pid" >"$(dirname "$group")/cgroup.procs" 2>/dev/null || true; done
  rmdir "$group" 2>/dev/null || echo "test-slow: could not remove $group" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "test-slow: npm test with its CPU capped at ${percent}% of one core (cgroup $group)" >&2
start=$(date +%s)
status=0
# Extra arguments go to tap (npm run test:slow -- test/fault/workers.test.ts).
if [ $# -gt 0 ]; then set -- -- "$@"; fi
# The child moves itself into the group, then becomes npm: everything it starts stays there.
sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$group" npm test "$@" || status=$?
end=$(date +%s)
echo "test-slow: exit $status after $((end - start)) s at ${percent}% of one core" >&2
exit "$status"
