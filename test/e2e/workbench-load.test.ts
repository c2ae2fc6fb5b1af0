// A researcher's script with many requests in flight must not see them fail while the scheduler
// is there. Here 32 lanes of listProjects/listNodes run against a real scheduler whose frame-rate
// limit is set low, so it slows the workbench, then closes its session (RATE_LIMITED, 1008) over
// and over: each close is the "connection really dropped" case, met with requests in flight and
// with requests started while the socket is closing. Every request must be answered (idempotent
// ones wait out the reconnection and are sent again). Before the fix, a request started while the
// socket was closing was asked again in a loop of promise continuations that never let the close
// event in: the process froze until the request's deadline, then failed "not connected to the
// scheduler" (seen timing getStatus with 32 in flight on an idle machine: over 5 000 frames/s).
import t from 'tap';
import { PROCESS_FILE_TIMEOUT_MS, testCluster, within } from '../helpers/cluster.ts';

t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

t.test('32 requests in flight through repeated session drops: every one answered', async (t) => {
  const { cluster } = await testCluster(t, 'wb-load', {
    workers: [],
    scheduler: { rate_limit: { frames_per_second: 200, burst: 200, disconnect_after_ms: 300 } },
  });
  let welcomedAgain = 0;
  const wb = await cluster.connect('load', {
    onConnectionChange: (up) => {
      if (up) welcomedAgain++;
    },
  });
  t.teardown(() => wb.close());
  const errors: string[] = [];
  let answered = 0;
  const lane = async (i: number) => {
    while (welcomedAgain < 3 && errors.length === 0) {
      try {
        if (i % 2) await wb.projects();
        else await wb.nodes();
        answered++;
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
  };
  await within(Promise.all(Array.from({ length: 32 }, (_, i) => lane(i))), {
    what: 'three session drops of a workbench with 32 requests in flight',
  });
  t.same(errors, [], `no request failed (${answered} answered through ${welcomedAgain} reconnections)`);
  t.ok(welcomedAgain >= 3, 'the scheduler did close the session under the load');
});
