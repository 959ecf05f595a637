/**
 * Multi-queue end-to-end test: a Linux >= 6.11 guest (its virtiofs driver maps CPUs to request queues)
 * with `vhost-user-fs-pci,num-request-queues=4` and 4 vCPUs runs one workload per vCPU, each pinned
 * with taskset, in parallel. The host checks every byte the guest wrote and read, and the daemon's own
 * log says which queues were started and how far each one's avail index moved (= requests it popped):
 * more than one request queue must have carried requests. While the jobs run the host stops and
 * continues the VM over QMP, so every ring is stopped and restarted with requests in flight.
 *
 * Needs a second guest kernel >= 6.11 (`apt-get install -t bookworm-backports linux-image-amd64`, see
 * .ci/run); the 6.1 kernel stays the default of the other e2e tests. VIRTIOFSD_TS_MQ_KERNEL picks one.
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  GUEST_PRELUDE,
  findKernelAtLeast,
  guestSkipReason,
  kernelInfo,
  parseBlock,
  parseSteps,
  parseVals,
  QmpClient,
  runGuest,
  startDaemon,
} from '../../harness/index.js';

const QUEUES = 4; // request queues (the device has 1 hiprio + QUEUES)
const JOBS = 4; // one per vCPU
// VIRTIOFSD_TS_MQ_SCALE=N multiplies the workload, VIRTIOFSD_TS_MQ_THREADS sets the daemon's workers
// (default 4), for stress runs by hand.
const SCALE = Math.max(1, Number(process.env.VIRTIOFSD_TS_MQ_SCALE ?? 1) || 1);
const THREADS = Number(process.env.VIRTIOFSD_TS_MQ_THREADS ?? 4) || 4;
const FILE_MIB = 8 * SCALE; // per job: written, read back and checksummed
const SMALL = 150 * SCALE; // per job: small files created, 1/3 of them removed again
const TAG = 'mqfs';
const STOP_CONTS = 3; // QMP stop + cont cycles while the jobs run

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

const mqKernel = process.env.VIRTIOFSD_TS_MQ_KERNEL ? kernelInfo(process.env.VIRTIOFSD_TS_MQ_KERNEL) : findKernelAtLeast('6.11');
const skip =
  guestSkipReason('ours') ??
  (mqKernel
    ? null
    : 'missing: a guest kernel >= 6.11 with a multi-queue virtiofs driver (apt-get install -t bookworm-backports linux-image-amd64)');

// Each job: checksum a host file, write a big file of its own and read it back, create, rewrite and
// remove small files. Everything it saw goes to /tmp/jN.log, printed afterwards (consoles interleave).
const JOB = `n=$1; d=/mnt/job$n
set -e
mkdir -p $d || exit 1
echo "host_md5 $(md5sum /mnt/host$n.bin | cut -d' ' -f1)"
dd if=/dev/urandom of=$d/big bs=64k count=$((${FILE_MIB} * 16)) 2>/dev/null || exit 1
echo "big_md5 $(md5sum $d/big | cut -d' ' -f1)"
# read it back from the host, not from the page cache
echo 1 > /proc/sys/vm/drop_caches
cat $d/big > $d/big.copy || exit 1
echo "copy_md5 $(md5sum $d/big.copy | cut -d' ' -f1)"
i=0
while [ $i -lt ${SMALL} ]; do
  echo "job $n file $i" > $d/f$i || exit 1
  i=$((i+1))
done
i=0
while [ $i -lt ${SMALL} ]; do
  if [ $((i % 3)) -eq 0 ]; then rm $d/f$i || exit 1; else echo "rewritten $n $i" >> $d/f$i || exit 1; fi
  i=$((i+1))
done
echo "count $(ls $d | wc -l)"
# a directory every job works in at once: the same directory inode from every queue
i=0
while [ $i -lt ${SMALL} ]; do
  echo "$n $i" > /mnt/shared/tmp-$n-$i || exit 1
  mv /mnt/shared/tmp-$n-$i /mnt/shared/j$n-$i || exit 1
  if [ $((i % 2)) -eq 0 ]; then rm /mnt/shared/j$n-$i || exit 1; fi
  # readdir only (ls would also stat entries other jobs are renaming away)
  if [ $((i % 25)) -eq 0 ]; then echo /mnt/shared/* > /dev/null || exit 1; fi
  i=$((i+1))
done
echo "cpu $(cut -d' ' -f39 /proc/self/stat)"
`;

const SCRIPT = `${GUEST_PRELUDE}
step mount mount -t virtiofs ${TAG} /mnt
grep -q " /mnt virtiofs " /proc/mounts || { echo "share not mounted"; finish; }
val ncpu "$(nproc)"
mkdir /mnt/shared
n=0
while [ $n -lt ${JOBS} ]; do
  ( taskset $((1 << n)) sh /job.sh $n > /tmp/j$n.log 2>&1; echo $? > /tmp/j$n.rc ) &
  n=$((n+1))
done
echo "@@JOBS started@@"
wait
# The host pauses and resumes the VM while the jobs run; wait until it is done.
i=0
while [ ! -e /mnt/stopcont.done ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
step stopcont_done test -e /mnt/stopcont.done
n=0
while [ $n -lt ${JOBS} ]; do
  echo "@@BEGIN job$n@@"; cat /tmp/j$n.log; echo "@@END job$n@@"
  step job$n expect_eq "$(cat /tmp/j$n.rc)" 0 "job $n exit code"
  n=$((n+1))
done
echo "@@BEGIN interrupts@@"; grep -i virtio /proc/interrupts; echo "@@END interrupts@@"
step umount umount /mnt
finish
`;

t.test('virtio-fs multi-queue: parallel workload over several request queues', { skip: skip ?? false }, async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-mq-'));
  const share = path.join(root, 'share');
  fs.mkdirSync(share);
  const sock = path.join(root, 'vfs.sock');
  const hostFiles: Buffer[] = [];
  for (let n = 0; n < JOBS; n++) {
    const b = randomBytes((1 << 20) + n * 4099);
    fs.writeFileSync(path.join(share, `host${n}.bin`), b);
    hostFiles.push(b);
  }
  const daemon = await startDaemon('ours', {
    sharedDir: share,
    socketPath: sock,
    extraArgs: [`--thread-pool-size=${THREADS}`],
  });
  t.teardown(async () => {
    await daemon.stop(5000);
    fs.rmSync(root, { recursive: true, force: true });
  });

  // While the jobs run, stop and continue the VM a few times: QEMU then stops every ring
  // (SET_VRING_ENABLE 0, GET_VRING_BASE) and starts it again from the base we returned, with
  // requests in flight on all queues.
  const qmpPath = path.join(root, 'qmp.sock');
  const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
  let stopConts = 0;
  let stopContError: string | null = null;
  let stopCont: Promise<void> | null = null;
  const runStopCont = async (): Promise<void> => {
    let q: QmpClient | undefined;
    try {
      q = await QmpClient.connect(qmpPath);
      for (let k = 0; k < STOP_CONTS; k++) {
        await sleep(400);
        await q.execute('stop');
        await sleep(300);
        await q.execute('cont');
        stopConts++;
      }
    } catch (e) {
      stopContError = String((e as Error)?.message ?? e);
    } finally {
      q?.close();
      fs.writeFileSync(path.join(share, 'stopcont.done'), '');
    }
  };

  const r = await runGuest({
    socketPath: sock,
    tag: TAG,
    script: SCRIPT,
    kernel: mqKernel!,
    files: { 'job.sh': JOB },
    cpus: JOBS,
    deviceProps: [`num-request-queues=${QUEUES}`],
    timeoutSec: 180 * SCALE,
    qmpSocket: qmpPath,
    onLine: (l) => {
      if (process.env.VIRTIOFSD_TS_E2E_VERBOSE) console.error(`[mq] ${l}`);
      if (!stopCont && l.includes('@@JOBS started@@')) stopCont = runStopCont();
    },
  });
  if (stopCont) await stopCont;
  // Let the daemon finish logging the ring stops (GET_VRING_BASE comes as QEMU shuts down).
  await new Promise((res) => setTimeout(res, 300));
  const logs = daemon.logs();
  t.comment(`guest kernel ${mqKernel!.kver}: ${r.durationMs} ms total, modules loaded at ${r.bootMs} ms`);
  const diag = {
    console: r.output.split('\n').slice(-80).join('\n'),
    qemuStderr: r.stderr,
    daemonLogs: logs.split('\n').slice(-60).join('\n'),
  };
  t.notOk(r.timedOut, 'guest finished before the timeout', r.timedOut ? diag : {});
  if (r.rc === null) {
    t.fail(`guest did not report an exit code (qemu exit ${r.qemuExitCode})`, diag);
    return;
  }
  t.equal(r.rc, 0, 'guest script exit code', r.rc === 0 ? {} : diag);
  const steps = parseSteps(r.output);
  for (const s of ['mount', 'stopcont_done', ...Array.from({ length: JOBS }, (_, n) => `job${n}`), 'umount']) {
    t.ok(steps.get(s)?.ok, `guest step ${s}`, steps.get(s)?.ok ? {} : { step: steps.get(s) ?? 'missing', ...diag });
  }
  t.equal(parseVals(r.output).get('ncpu'), String(JOBS), 'guest has one vCPU per job');
  t.equal(stopContError, null, 'QMP stop/cont worked');
  t.equal(stopConts, STOP_CONTS, `the VM was stopped and continued ${STOP_CONTS} times during the workload`);

  // Host side: every job's data.
  const cpus = new Set<string>();
  for (let n = 0; n < JOBS; n++) {
    const lines = parseBlock(r.output, `job${n}`) ?? [];
    const v = new Map(lines.map((l) => [l.split(' ')[0]!, l.split(' ').slice(1).join(' ')]));
    const d = path.join(share, `job${n}`);
    t.equal(v.get('host_md5'), md5(hostFiles[n]!), `job ${n}: guest read the host file intact`);
    const big = fs.readFileSync(path.join(d, 'big'));
    t.equal(big.length, FILE_MIB << 20, `job ${n}: size of the guest-written file on the host`);
    t.equal(v.get('big_md5'), md5(big), `job ${n}: host md5 of the guest-written file matches the guest's`);
    t.equal(md5(fs.readFileSync(path.join(d, 'big.copy'))), md5(big), `job ${n}: the guest's copy is identical on the host`);
    t.equal(v.get('copy_md5'), md5(big), `job ${n}: guest md5 of its copy`);
    let bad = 0;
    for (let i = 0; i < SMALL; i++) {
      const p = path.join(d, `f${i}`);
      if (i % 3 === 0) {
        if (fs.existsSync(p)) bad++;
      } else if (!fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== `job ${n} file ${i}\nrewritten ${n} ${i}\n`) {
        bad++;
      }
    }
    t.equal(bad, 0, `job ${n}: ${SMALL} small files created, rewritten and removed as on the guest`);
    const expectCount = 2 + SMALL - Math.ceil(SMALL / 3);
    t.equal(fs.readdirSync(d).length, expectCount, `job ${n}: host directory entry count`);
    t.equal(v.get('count'), String(expectCount), `job ${n}: guest directory entry count`);
    if (v.get('cpu')) cpus.add(v.get('cpu')!);
  }
  const shared = fs.readdirSync(path.join(share, 'shared')).sort();
  const expectShared = Array.from({ length: JOBS }, (_, n) =>
    Array.from({ length: SMALL }, (_, i) => i).filter((i) => i % 2 === 1).map((i) => `j${n}-${i}`),
  ).flat().sort();
  t.same(shared, expectShared, 'the directory all jobs shared holds exactly the renamed survivors');
  t.ok(
    expectShared.every((f) => fs.readFileSync(path.join(share, 'shared', f), 'utf8') === `${f.slice(1).replace('-', ' ')}\n`),
    'with their contents',
  );
  t.equal(cpus.size, JOBS, `jobs ran on ${JOBS} different vCPUs (${[...cpus].join(',')})`);

  // Daemon side: which queues ran, and how many requests each popped.
  // Each run of a queue goes from "started (avail index A)" to "stopped (avail index B)": B - A
  // requests (mod 2^16). A restart must continue at the index the queue stopped at.
  const started = new Map<number, number>();
  const starts = new Map<number, number>();
  const popped = new Map<number, number>();
  let resumedAt = 0;
  let badResume = '';
  const lastStop = new Map<number, number>();
  for (const m of logs.matchAll(/queue (\d+) (started|stopped) \((?:size \d+, )?avail index (\d+)\)/g)) {
    const q = Number(m[1]);
    const idx = Number(m[3]);
    if (m[2] === 'started') {
      started.set(q, idx);
      starts.set(q, (starts.get(q) ?? 0) + 1);
      if (lastStop.has(q)) {
        if (lastStop.get(q) !== idx) badResume += ` q${q}: stopped at ${lastStop.get(q)}, restarted at ${idx};`;
        else if (idx > 0) resumedAt++;
      }
    } else {
      popped.set(q, (popped.get(q) ?? 0) + ((idx - (started.get(q) ?? 0)) & 0xffff));
      lastStop.set(q, idx);
    }
  }
  const expectQueues = Array.from({ length: QUEUES + 1 }, (_, q) => q);
  t.same([...started.keys()].sort((a, b) => a - b), expectQueues, `daemon started hiprio + ${QUEUES} request queues`, { daemonLogs: logs });
  t.equal(badResume, '', 'every restarted queue continued at the avail index it stopped at');
  t.ok(resumedAt >= QUEUES, `queues resumed mid-stream after stop/cont (${resumedAt} restarts at a non-zero index; starts per queue: ${expectQueues.map((q) => starts.get(q) ?? 0).join(',')})`);
  const perQueue = expectQueues.map((q) => `q${q}=${popped.get(q) ?? '?'}`).join(' ');
  t.comment(`requests popped per queue: ${perQueue}`);
  t.comment(`guest interrupts:\n${(parseBlock(r.output, 'interrupts') ?? []).join('\n')}`);
  const busy = expectQueues.filter((q) => q >= 1 && (popped.get(q) ?? 0) > 0);
  t.ok(busy.length > 1, `more than one request queue carried requests (${perQueue})`, { daemonLogs: logs });
  t.equal(busy.length, QUEUES, `every request queue carried requests (${perQueue})`);
  t.notMatch(logs, /bad descriptor chain|corrupted the avail ring|request handler failed|cannot start/, 'no ring errors in the daemon log');
});
