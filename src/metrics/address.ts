/** Where the metrics endpoint listens (--metrics-address): its syntax and its parser. */
import { UNIX_PATH_MAX } from '../abi/unix.js';
import { UsageError } from '../errors.js';

/** A TCP host and port, or a Unix socket path (`unix:PATH`). */
export type MetricsAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (every address) or `unix:PATH`; port 0 lets the kernel choose (logged). */
export function parseMetricsAddress(v: string): MetricsAddress {
  const bad = (why: string): never => {
    throw new UsageError(`--metrics-address: '${v}' ${why} (HOST:PORT, [IPV6]:PORT or unix:PATH)`);
  };
  if (v.startsWith('unix:')) {
    const p = v.slice(5);
    if (p === '') bad('has no path');
    if (Buffer.byteLength(p) > UNIX_PATH_MAX) bad(`is longer than the ${UNIX_PATH_MAX} bytes a Unix socket address holds`);
    return { kind: 'unix', path: p };
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d+)$/.exec(v);
  if (!m) return bad('is not an address');
  const port = Number(m[3]);
  if (port > 65535) bad('has a port outside 0..65535');
  return { kind: 'tcp', host: m[1] ?? m[2] ?? '', port };
}
