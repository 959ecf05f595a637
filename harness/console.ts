/**
 * The guest console protocol: marker lines the guest prints on ttyS0 (QEMU's stdout) and their
 * parsers. /init (initramfs.ts) prints `@@BOOTED@@` and `@@EXIT rc=N@@`; guest scripts built on
 * GUEST_PRELUDE print `@@STEP@@`, `@@VAL@@` and `@@BEGIN/END@@` blocks.
 */

export const EXIT_MARKER = /@@EXIT rc=(\d+)@@/;
export const BOOTED_MARKER = '@@BOOTED';

/**
 * Splits a byte stream into lines (CR stripped, the serial console sends CRLF) and hands each to
 * `onLine`; a throwing callback must not kill the run. `flush()` delivers an unterminated last line.
 */
export class LineSplitter {
  private partial = '';
  constructor(private readonly onLine: (line: string) => void) {}

  push(s: string): void {
    this.partial += s;
    for (let i = this.partial.indexOf('\n'); i >= 0; i = this.partial.indexOf('\n')) {
      const line = this.partial.slice(0, i).replace(/\r/g, '');
      this.partial = this.partial.slice(i + 1);
      this.deliver(line);
    }
  }

  flush(): void {
    if (this.partial) this.deliver(this.partial.replace(/\r/g, ''));
    this.partial = '';
  }

  private deliver(line: string): void {
    try {
      this.onLine(line);
    } catch {
      /* a callback must not kill the run */
    }
  }
}

/** rc of /test.sh from the `@@EXIT rc=N@@` marker, or null if the guest never got there. */
export function exitCode(output: string): number | null {
  const m = EXIT_MARKER.exec(output);
  return m?.[1] !== undefined ? Number(m[1]) : null;
}

/** `@@STEP name ok@@` / `@@STEP name FAIL ...@@` markers → name → {ok, detail}. */
export function parseSteps(output: string): Map<string, { ok: boolean; detail: string }> {
  const steps = new Map<string, { ok: boolean; detail: string }>();
  for (const m of output.matchAll(/@@STEP (\S+) (ok|FAIL)([^@]*)@@/g)) {
    steps.set(m[1]!, { ok: m[2] === 'ok', detail: (m[3] ?? '').trim() });
  }
  return steps;
}

/** `@@VAL key value@@` markers → key → value. */
export function parseVals(output: string): Map<string, string> {
  const vals = new Map<string, string>();
  for (const m of output.matchAll(/@@VAL (\S+) ([^@\n]*)@@/g)) vals.set(m[1]!, m[2]!.trim());
  return vals;
}

/** Text printed between `@@BEGIN name@@` and `@@END name@@` lines. */
export function parseBlock(output: string, name: string): string[] | null {
  const lines = output.split('\n');
  const b = lines.findIndex((l) => l.includes(`@@BEGIN ${name}@@`));
  if (b < 0) return null;
  const e = lines.findIndex((l, i) => i > b && l.includes(`@@END ${name}@@`));
  if (e < 0) return null;
  return lines.slice(b + 1, e);
}

/**
 * Shell prelude for guest scripts: `step NAME cmd...` runs a function/command, prints its output
 * and a `@@STEP NAME ok|FAIL@@` marker, counting failures in $FAILS; `val KEY VALUE` prints a
 * `@@VAL@@` marker; `finish` exits with the number of failed steps.
 */
export const GUEST_PRELUDE = `
FAILS=0
step() {
  _n="$1"; shift
  if _o=$("$@" 2>&1); then
    [ -n "$_o" ] && echo "$_o"
    echo "@@STEP $_n ok@@"
  else
    _rc=$?
    [ -n "$_o" ] && echo "$_o"
    echo "@@STEP $_n FAIL rc=$_rc@@"
    FAILS=$((FAILS+1))
  fi
}
val() { echo "@@VAL $1 $2@@"; }
expect_eq() { if [ "$1" != "$2" ]; then echo "expected [$2] got [$1] $3"; return 1; fi; }
finish() { echo "@@FAILS $FAILS@@"; exit $FAILS; }
`;

/**
 * Lets a test act in the middle of a guest run: feed it every console line (RunGuestOptions.onLine),
 * then `await waitFor(/@@WAITFOR x@@/)` resolves with the first line matching (also one seen before
 * the call). `end()` (when runGuest has resolved) fails every wait still open: the guest is gone.
 */
export class ConsoleWatch {
  private readonly lines: string[] = [];
  private readonly waiters = new Set<() => void>();
  private ended = false;

  feed(line: string): void {
    this.lines.push(line);
    for (const w of this.waiters) w();
  }

  end(): void {
    this.ended = true;
    for (const w of this.waiters) w();
  }

  waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      let next = 0;
      const check = (): void => {
        for (; next < this.lines.length; next++) {
          const line = this.lines[next]!;
          if (pattern.test(line)) {
            done(() => resolve(line));
            return;
          }
        }
        if (this.ended) done(() => reject(new Error(`the guest ended without printing ${pattern}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} on the console in ${timeoutMs} ms`))), timeoutMs);
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }
}
