/**
 * The fuzz targets `npm run fuzz` and targets.test.ts run: the virtqueue engine (chain-parse,
 * queue-pop; virtqueue-kit.ts), the FUSE server (target-fuse.ts) and the vhost-user handler
 * (target-vhost.ts). Each names the invariants it checks in its own file.
 */
import { chainParseProperty, chainStats, queuePopProperty, type VirtqueueRig, virtqueueRig } from './virtqueue-kit.js';
import type { FuzzTarget, TargetDef } from './runner.js';
import { fuseTarget } from './target-fuse.js';
import { vhostTarget } from './target-vhost.js';

// One rig for both virtqueue targets: each property writes all the state it reads.
let rig: Promise<VirtqueueRig> | undefined;
const sharedRig = (): Promise<VirtqueueRig> => (rig ??= virtqueueRig());

export const TARGETS: TargetDef[] = [
  {
    name: 'chain-parse',
    what: 'chainParse over hostile descriptor tables (direct, indirect, across two regions): lists inside guest RAM',
    make: async (): Promise<FuzzTarget> => {
      const st = chainStats();
      const property = chainParseProperty(await sharedRig(), st);
      return { name: 'chain-parse', property: property as unknown as FuzzTarget['property'], counter: { get cases() { return st.runs; } } };
    },
  },
  {
    name: 'queue-pop',
    what: 'queuePop over random avail rings and bases: each head < size once, then EMPTY, or BROKEN for good',
    make: async (): Promise<FuzzTarget> => {
      const st = { runs: 0 };
      const property = queuePopProperty(await sharedRig(), st);
      return { name: 'queue-pop', property: property as unknown as FuzzTarget['property'], counter: { get cases() { return st.runs; } } };
    },
  },
  {
    name: 'fuse',
    what: 'the FUSE server over a passthrough on a temp share: built, raw and damaged requests; well-formed replies, no fd left',
    make: fuseTarget,
  },
  {
    name: 'vhost',
    what: 'the vhost-user handler on a real device and guest memory: valid, damaged and random messages with fds; replies as the table says, no fd left',
    make: vhostTarget,
  },
];
