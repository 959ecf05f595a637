/**
 * The guest's own view of its memory, printed on the console and parsed on the host: evidence that a
 * large or hot-plugged guest really has the RAM, and that I/O buffers came from it.
 *
 * - MemTotal/MemFree (/proc/meminfo).
 * - the top-level "System RAM" ranges of /proc/iomem (root-readable in the guest): guest-physical
 *   RAM; on q35 everything beyond the first 2 GiB (or 2.75 GiB) lies above 4 GiB, and a pc-dimm
 *   lands in the device-memory area above that.
 * - memory blocks (/sys/devices/system/memory): the block size and how many are online.
 * - per zone of /proc/zoneinfo: present, managed and free pages. On x86-64, ZONE_DMA32 ends at 4 GiB,
 *   so free pages of Normal (or Movable, where a DIMM onlined `online_movable` goes) that disappear
 *   while a file moves through the share are page-cache pages, the FUSE request buffers, above 4 GiB.
 */

/** Shell functions for guest scripts (after GUEST_PRELUDE): `memory_report LABEL`, `memtotal_kib`, `stamp NAME`. */
export const GUEST_MEMORY_FNS = `
stamp() { echo "@@VAL t_$1 $(cut -d' ' -f1 /proc/uptime)@@"; }
memtotal_kib() { awk '/^MemTotal:/ {print $2}' /proc/meminfo; }
memory_report() {
  echo "@@BEGIN mem_$1@@"
  grep -E '^(MemTotal|MemFree):' /proc/meminfo
  grep -E '^[0-9a-f]+-[0-9a-f]+ : System RAM' /proc/iomem | sed 's/^/ram /'
  echo "block_size $(cat /sys/devices/system/memory/block_size_bytes)"
  echo "blocks_online $(cat /sys/devices/system/memory/memory*/state | grep -c '^online')"
  awk '/^Node/ {z=$4} /^ *pages free/ {f=$3} /^ *present/ {p=$2} /^ *managed/ {print "zone", z, p, $2, f}' /proc/zoneinfo
  echo "@@END mem_$1@@"
}
`;

export interface ZonePages {
  present: number;
  managed: number;
  free: number;
}

export interface GuestMemoryView {
  memTotalKiB: number;
  memFreeKiB: number;
  /** top-level System RAM ranges, [start, end) */
  ram: Array<{ start: bigint; end: bigint }>;
  blockSize: bigint;
  blocksOnline: number;
  /** zone name (DMA, DMA32, Normal, Movable, ...) → pages, summed over NUMA nodes */
  zones: Map<string, ZonePages>;
}

const FOUR_GIB = 1n << 32n;

/** Parses a `memory_report LABEL` block from the console output, or null if it is missing. */
export function parseMemoryReport(output: string, label: string): GuestMemoryView | null {
  const b = output.indexOf(`@@BEGIN mem_${label}@@`);
  const e = output.indexOf(`@@END mem_${label}@@`, b);
  if (b < 0 || e < 0) return null;
  const v: GuestMemoryView = { memTotalKiB: 0, memFreeKiB: 0, ram: [], blockSize: 0n, blocksOnline: 0, zones: new Map() };
  for (const line of output.slice(b, e).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'MemTotal:') v.memTotalKiB = Number(f[1]);
    else if (f[0] === 'MemFree:') v.memFreeKiB = Number(f[1]);
    else if (f[0] === 'ram' && f[1]) {
      const [s, x] = f[1].split('-');
      v.ram.push({ start: BigInt(`0x${s}`), end: BigInt(`0x${x}`) + 1n });
    } else if (f[0] === 'block_size' && f[1]) v.blockSize = BigInt(`0x${f[1]}`);
    else if (f[0] === 'blocks_online') v.blocksOnline = Number(f[1]);
    else if (f[0] === 'zone' && f[1]) {
      const z = v.zones.get(f[1]) ?? { present: 0, managed: 0, free: 0 };
      z.present += Number(f[2]);
      z.managed += Number(f[3]);
      z.free += Number(f[4]);
      v.zones.set(f[1], z);
    }
  }
  return v;
}

/** Bytes of guest RAM at or above 4 GiB guest-physical. */
export function ramAbove4GiB(v: GuestMemoryView): bigint {
  let sum = 0n;
  for (const r of v.ram) if (r.end > FOUR_GIB) sum += r.end - (r.start > FOUR_GIB ? r.start : FOUR_GIB);
  return sum;
}

/** One line for a test comment: MemTotal, RAM ranges, blocks, zones. */
export function describeMemory(v: GuestMemoryView): string {
  const gib = (n: number | bigint) => `${(Number(n) / 2 ** 30).toFixed(2)} GiB`;
  const ranges = v.ram.map((r) => `0x${r.start.toString(16)}-0x${(r.end - 1n).toString(16)}`).join(' ');
  const zones = [...v.zones]
    .filter(([, z]) => z.present > 0)
    .map(([n, z]) => `${n} ${gib(z.present * 4096)} (free ${gib(z.free * 4096)})`)
    .join(', ');
  return `MemTotal ${gib(v.memTotalKiB * 1024)}; System RAM ${ranges}; ${v.blocksOnline} blocks of ${gib(v.blockSize)} online; zones: ${zones}`;
}
