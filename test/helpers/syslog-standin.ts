/**
 * A syslog daemon stand-in for tests of --syslog: python3 binds a Unix datagram socket at `logSock` and
 * appends every datagram, newline-terminated, to `out`. Killed at the test's end. `havePython` says
 * whether it can run here.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { Test } from 'tap';

export const havePython = spawnSync('python3', ['-c', 'import socket'], { encoding: 'utf8' }).status === 0;

export function startSyslogStandIn(t: Test, logSock: string, out: string): void {
  const server = spawn('python3', ['-c', [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'f = open(sys.argv[2], "ab", buffering=0)',
    'while True:',
    '    f.write(s.recv(65536) + b"\\n")',
  ].join('\n'), logSock, out], { stdio: 'ignore' });
  t.teardown(() => {
    server.kill('SIGKILL');
  });
}
