import t from 'tap';
import { timeOrderedUuid } from '../lib/store/ids.ts';

// Artifact and resource ids are primary keys: they must sort by time (appended to their indices)
// and stay UUIDs (the wire documents `a-<uuid>`, `r-<uuid>`; the CLI's tests match the hex form).

t.test('a time-ordered id is a version 7 UUID whose first 48 bits are its milliseconds', async (t) => {
  const at = Date.UTC(2026, 11, 7, 5, 0, 0, 123);
  const id = timeOrderedUuid(at);
  t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'UUID v7 form, RFC 9562 variant');
  t.equal(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16), at, 'the milliseconds read back');
});

t.test('ids sort as their times do, and two in the same millisecond differ', async (t) => {
  const base = Date.UTC(2026, 0, 1);
  const ids = [0, 1, 2, 1_000, 86_400_000, 2 ** 40].map((d) => timeOrderedUuid(base + d));
  t.same([...ids].sort(), ids, 'string order is time order');
  const same = new Set(Array.from({ length: 1_000 }, () => timeOrderedUuid(base)));
  t.equal(same.size, 1_000, 'random bits keep ids of one millisecond apart');
});
