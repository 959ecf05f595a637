/**
 * Which extended attribute names the guest may use, and under which name each lives on the host:
 * virtiofsd's --xattrmap rules (docs/xattr.md), or the default policy when none are given.
 *
 * Two directions. A guest's GETXATTR, SETXATTR and REMOVEXATTR name goes client → server (`toHost`):
 * it passes, gets a prefix, or is refused. A host name in a LISTXATTR answer goes server → client
 * (`toGuest`): it is shown, shown without a prefix, or hidden.
 *
 * Rules (first match wins, in the order written), each `<d>type<d>scope<d>key<d>prepend<d>` where <d> is
 * the rule's first character, or `<d>map<d>key<d>prepend<d>`:
 *   prefix  client: a name starting with key gets prepend in front; server: a name starting with
 *           prepend loses it
 *   ok      the name passes unchanged (client: starts with key; server: starts with prepend)
 *   bad     client: refused (EPERM; a GETXATTR answers ENODATA); server: hidden
 *   unsupported  client: EOPNOTSUPP; server: hidden
 *   map     shorthand, only as the last rule: `map::P` is `prefix all "" P` + `bad all "" ""`;
 *           `map:K:P` is `prefix all K P` + `bad server "" K` + `bad client P ""` + `ok all "" ""`
 * scope: client, server or all. A name no rule matches is refused and hidden, as if the list ended
 * with `bad all "" ""`.
 *
 * Names are bytes (a FUSE request's name, a host listxattr buffer): matching compares bytes, a passing
 * name is the caller's own array, and a prefixed one is built in this map's scratch (valid until the
 * next call), so the per-request path allocates at most one view.
 */
import { UsageError } from '../errors.js';

/** toHost: refused (`bad`, or no rule): SETXATTR/REMOVEXATTR answer EPERM, GETXATTR ENODATA. */
export const XATTR_DENIED = -1;
/** toHost: `unsupported`: EOPNOTSUPP. */
export const XATTR_UNSUPPORTED = -2;
/** toGuest: the host name is left out of the guest's list. */
export const XATTR_HIDDEN = -1;

export interface XattrPolicy {
  /**
   * The host name for a guest's name: for a GETXATTR (`write` false) or a SETXATTR/REMOVEXATTR (`write`
   * true; `remove` true for a REMOVEXATTR); or XATTR_DENIED / XATTR_UNSUPPORTED. A returned array is
   * valid until the next call.
   */
  toHost(name: Uint8Array, write: boolean, remove?: boolean): Uint8Array | number;
  /** For a host name in a LISTXATTR answer: how many leading bytes the guest does not see, or XATTR_HIDDEN. */
  toGuest(hostName: Uint8Array): number;
}

type RuleType = 'prefix' | 'ok' | 'bad' | 'unsupported';
const TYPES: readonly string[] = ['prefix', 'ok', 'bad', 'unsupported', 'map'];

export interface XattrRule {
  type: RuleType;
  client: boolean;
  server: boolean;
  key: Uint8Array;
  prepend: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function startsWith(name: Uint8Array, prefix: Uint8Array): boolean {
  const n = prefix.length;
  if (n > name.length) return false;
  for (let i = 0; i < n; i++) if (name[i] !== prefix[i]) return false;
  return true;
}

function rule(type: RuleType, scope: 'client' | 'server' | 'all', key: string | Uint8Array, prepend: string | Uint8Array): XattrRule {
  return {
    type,
    client: scope !== 'server',
    server: scope !== 'client',
    key: typeof key === 'string' ? enc.encode(key) : key,
    prepend: typeof prepend === 'string' ? enc.encode(prepend) : prepend,
  };
}

/**
 * Parse an --xattrmap value into its rules (the map shorthand expanded). Throws UsageError naming the
 * rule (1-based) and what is wrong with it.
 */
export function parseXattrMap(text: string, where = '--xattrmap'): XattrRule[] {
  const rules: XattrRule[] = [];
  let i = 0;
  let n = 0;
  let mapAt = 0;
  while (i < text.length) {
    if (/\s/.test(text[i]!)) {
      i++;
      continue;
    }
    n++;
    const start = i;
    const d = text[i++]!;
    const at = `${where}: rule ${n}`;
    /** The field up to the next delimiter; `what` names it in the error. */
    const field = (what: string): string => {
      const end = text.indexOf(d, i);
      if (end < 0) {
        throw new UsageError(`${at} '${text.slice(start)}': incomplete, no '${d}' after its ${what} (a rule is ${d}type${d}scope${d}key${d}prepend${d})`);
      }
      const v = text.slice(i, end);
      i = end + 1;
      return v;
    };
    const type = field('type');
    if (!TYPES.includes(type)) {
      throw new UsageError(`${at}: unknown type '${type}' (prefix|ok|bad|unsupported|map; the first character, '${d}', is the separator)`);
    }
    if (mapAt !== 0) throw new UsageError(`${where}: rule ${mapAt}: a map rule must be the last rule`);
    if (type === 'map') {
      const key = field('key');
      const prepend = field('prepend');
      mapAt = n;
      if (key === '') {
        rules.push(rule('prefix', 'all', '', prepend), rule('bad', 'all', '', ''));
      } else {
        rules.push(rule('prefix', 'all', key, prepend), rule('bad', 'server', '', key), rule('bad', 'client', prepend, ''),
          rule('ok', 'all', '', ''));
      }
      continue;
    }
    const scope = field('scope');
    if (scope !== 'client' && scope !== 'server' && scope !== 'all') {
      throw new UsageError(`${at}: unknown scope '${scope}' (client|server|all)`);
    }
    const key = field('key');
    const prepend = field('prepend');
    rules.push(rule(type as RuleType, scope, key, prepend));
  }
  if (n === 0) throw new UsageError(`${where}: no rules (e.g. ${where}=:ok:all::: lets every name through)`);
  return rules;
}

/** Longest host name a prefix rule builds (XATTR_NAME_MAX is 255: longer ones the host refuses). */
const SCRATCH = 512;

/** A compiled --xattrmap. */
export class XattrMap implements XattrPolicy {
  private readonly scratch = new Uint8Array(SCRATCH);

  constructor(readonly rules: readonly XattrRule[]) {}

  static parse(text: string): XattrMap {
    return new XattrMap(parseXattrMap(text));
  }

  toHost(name: Uint8Array, _write: boolean): Uint8Array | number {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (!r.client || !startsWith(name, r.key)) continue;
      switch (r.type) {
        case 'ok':
          return name;
        case 'bad':
          return XATTR_DENIED;
        case 'unsupported':
          return XATTR_UNSUPPORTED;
        case 'prefix': {
          const p = r.prepend.length;
          if (p === 0) return name;
          // too long for the host anyway: built whole so the host answers ERANGE for it
          const out = p + name.length <= SCRATCH ? this.scratch : new Uint8Array(p + name.length);
          out.set(r.prepend, 0);
          out.set(name, p);
          return out.subarray(0, p + name.length);
        }
      }
    }
    return XATTR_DENIED;
  }

  toGuest(hostName: Uint8Array): number {
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (!r.server || !startsWith(hostName, r.prepend)) continue;
      switch (r.type) {
        case 'ok':
          return 0;
        case 'bad':
        case 'unsupported':
          return XATTR_HIDDEN;
        case 'prefix':
          return r.prepend.length;
      }
    }
    return XATTR_HIDDEN;
  }

  /** The rules as text, separated by spaces, each with ':' as its separator (for the tests). */
  describe(): string {
    return this.rules.map((r) => `:${r.type}:${r.client ? (r.server ? 'all' : 'client') : 'server'}:${dec.decode(r.key)}:${dec.decode(r.prepend)}:`).join(' ');
  }
}

const USER = enc.encode('user.');
const SECURITY = enc.encode('security.');
export const SECURITY_CAPABILITY = enc.encode('security.capability');
export const POSIX_ACL_ACCESS = enc.encode('system.posix_acl_access');
export const POSIX_ACL_DEFAULT = enc.encode('system.posix_acl_default');

/** name[from..] is exactly b */
/** name[from..] is exactly b */
export function equalAt(name: Uint8Array, from: number, b: Uint8Array): boolean {
  if (name.length - from !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (name[from + i] !== b[i]) return false;
  return true;
}

/** name[from..] is system.posix_acl_access or system.posix_acl_default */
export function isPosixAclName(name: Uint8Array, from = 0): boolean {
  return equalAt(name, from, POSIX_ACL_ACCESS) || equalAt(name, from, POSIX_ACL_DEFAULT);
}

/**
 * The policy without --xattrmap: the daemon acts as root on the host, so a guest name must not reach
 * a host namespace the host trusts. user.* passes both ways; security.* (capabilities, LSM labels,
 * IMA/EVM) may be read and listed but not set or removed — but for security.capability's removal,
 * which only lowers privileges and which the guest kernel makes itself before a write to or a chown
 * of a file that has one (refused, the write or chown would fail); the POSIX ACL names pass with
 * --posix-acl; trusted.*, the rest of system.* and any other name are refused and hidden.
 */
export class DefaultXattrPolicy implements XattrPolicy {
  constructor(private readonly posixAcl = false) {}

  toHost(name: Uint8Array, write: boolean, remove = false): Uint8Array | number {
    if (startsWith(name, USER)) return name;
    if (!write && startsWith(name, SECURITY)) return name;
    if (remove && equalAt(name, 0, SECURITY_CAPABILITY)) return name;
    if (this.posixAcl && isPosixAclName(name)) return name;
    return XATTR_DENIED;
  }

  toGuest(hostName: Uint8Array): number {
    if (startsWith(hostName, USER) || startsWith(hostName, SECURITY)) return 0;
    return this.posixAcl && isPosixAclName(hostName) ? 0 : XATTR_HIDDEN;
  }
}

/**
 * Without --posix-acl the guest may neither use nor see the POSIX ACL names, whatever the rules say
 * (EOPNOTSUPP, hidden; as virtiofsd): this wraps the rules or the default policy.
 */
export class NoPosixAcl implements XattrPolicy {
  constructor(private readonly inner: XattrPolicy) {}

  toHost(name: Uint8Array, write: boolean, remove = false): Uint8Array | number {
    return isPosixAclName(name) ? XATTR_UNSUPPORTED : this.inner.toHost(name, write, remove);
  }

  toGuest(hostName: Uint8Array): number {
    const strip = this.inner.toGuest(hostName);
    // the name the guest would see decides, as for its requests
    return strip >= 0 && isPosixAclName(hostName, strip) ? XATTR_HIDDEN : strip;
  }
}

/** The policy for --xattrmap (or none: the default) and --posix-acl. */
export function xattrPolicy(xattrmap: string | undefined, posixAcl: boolean): XattrPolicy {
  const p = xattrmap === undefined ? new DefaultXattrPolicy(posixAcl) : XattrMap.parse(xattrmap);
  return posixAcl ? p : new NoPosixAcl(p);
}
