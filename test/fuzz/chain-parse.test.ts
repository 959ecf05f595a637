// fast-check fuzz of chainParse and queuePop against hostile descriptor tables, time-boxed.
// Run: npx tap dist/test/fuzz/chain-parse.test.js  (FUZZ_MS overrides the time box, default 3000).
// The rig and properties are shared with the long-running fuzzer (virtqueue-kit.ts, run.ts).
import t from 'tap';
import fc from 'fast-check';
import { chainParseProperty, chainStats, queuePopProperty, virtqueueRig } from './virtqueue-kit.js';

const TIME = Number(process.env.FUZZ_MS ?? 3000);
const rig = await virtqueueRig();

t.test('chainParse never traps and its lists are always inside guest RAM', async (t) => {
  const st = chainStats();
  fc.assert(chainParseProperty(rig, st), { numRuns: 1_000_000, interruptAfterTimeLimit: TIME, markInterruptAsFailure: false });
  t.ok(st.runs > 100, `${st.runs} runs, ${st.ok} parsed`);
  t.ok(st.inSecond > 0, `segments in the second region: ${st.inSecond}`);
  t.ok(st.seen.size >= 5, `several outcomes reached: ${[...st.seen].sort((a, b) => a - b).join(',')}`);
});

t.test('queuePop on random avail rings returns a head < size or EMPTY/BROKEN', async (t) => {
  const st = { runs: 0 };
  fc.assert(queuePopProperty(rig, st), { numRuns: 1_000_000, interruptAfterTimeLimit: Math.max(500, TIME / 3), markInterruptAsFailure: false });
  t.ok(st.runs > 100, `${st.runs} runs`);
});
