/**
 * Uid/gid translation between the guest and the host (--translate-uid, --translate-gid), in the rule
 * syntax of the Rust virtiofsd; and the user-namespace maps of its rootless mode (--uid-map,
 * --gid-map), parsed only. Pure: strings in, tables out; the FUSE server applies the tables
 * (docs/operations.md "Id mapping").
 *
 * The two directions are separate tables, neither needs to invert the other:
 *   guest→host  the caller's uid/gid of every request and a SETATTR's new owner;
 *   host→guest  the owner in every fuse_attr a reply carries.
 * Rules (each a range of `count` ids, count ≥ 1, the range ending at or below 2^32):
 *   map:G:H:N                guest [G, G+N) ↔ host [H, H+N), one to one, both directions
 *   guest:G:H:N              guest [G, G+N) → host [H, H+N) (guest→host only)
 *   host:H:G:N               host [H, H+N) → guest [G, G+N) (host→guest only)
 *   squash-guest:G:H:N       guest [G, G+N) → host H (guest→host only)
 *   squash-host:H:G:N        host [H, H+N) → guest G (host→guest only)
 *   forbid-guest:G:N         guest [G, G+N) refused: the request fails with EPERM
 * Within one direction no two ranges may share an id (refused at startup); an id no range covers
 * passes unchanged. As in virtiofsd the rule name is case-insensitive and the separator is the first
 * character after it that is not a letter, digit, '-' or '_' (`map:1:2:3`, `map/1/2/3`).
 */
import { UsageError } from '../errors.js';
import type { IdMapRange } from '../abi/userns.js';

/** One past the largest u32: ranges end at or below it. */
const ID_LIMIT = 2 ** 32;

export type IdRule =
  | { kind: 'map' | 'guest' | 'host' | 'squash-guest' | 'squash-host'; from: number; to: number; count: number }
  | { kind: 'forbid-guest'; from: number; count: number };

/** guestToHost's answer for a forbidden guest id. */
export const FORBIDDEN = -1;

/** How a range's ids translate. */
enum How { Offset, Squash, Forbid }

/** A u32 in decimal. */
function u32(v: string, what: string): number {
  if (!/^\d{1,10}$/.test(v)) throw new UsageError(`${what}: '${v}' is not a number`);
  const n = Number(v);
  if (n >= ID_LIMIT) throw new UsageError(`${what}: ${n} is not a 32-bit id`);
  return n;
}

/** A range [from, from+count): count ≥ 1 and the end within 2^32. */
function range(from: number, count: number, what: string): void {
  if (count === 0) throw new UsageError(`${what}: the count must be at least 1`);
  if (from + count > ID_LIMIT) throw new UsageError(`${what}: the range ${from}+${count} goes past 2^32`);
}

/** One --translate-uid/--translate-gid value. `option` names it in messages ("--translate-uid"). */
export function parseIdRule(spec: string, option: string): IdRule {
  const what = `${option} '${spec}'`;
  const name = /^[A-Za-z0-9_-]*/.exec(spec)![0];
  const sep = spec[name.length];
  const kind = name.toLowerCase();
  const parts = sep === undefined ? [kind] : [kind, ...spec.slice(name.length + 1).split(sep)];
  switch (kind) {
    case 'map': case 'guest': case 'host': case 'squash-guest': case 'squash-host': {
      if (parts.length !== 4) throw new UsageError(`${what}: expected ${kind}:FROM:TO:COUNT`);
      const from = u32(parts[1]!, what);
      const to = u32(parts[2]!, what);
      const count = u32(parts[3]!, what);
      range(from, count, what);
      // a one-to-one rule's target range must fit too; a squash has a single target
      if (kind === 'map' || kind === 'guest' || kind === 'host') range(to, count, what);
      return { kind, from, to, count };
    }
    case 'forbid-guest': {
      if (parts.length !== 3) throw new UsageError(`${what}: expected forbid-guest:FROM:COUNT`);
      const from = u32(parts[1]!, what);
      const count = u32(parts[2]!, what);
      range(from, count, what);
      return { kind, from, count };
    }
    default:
      throw new UsageError(`${what}: unknown rule '${name}' (map|guest|host|squash-guest|squash-host|forbid-guest)`);
  }
}

/** One direction's ranges, sorted by start, none overlapping; looked up without allocating. */
class Table {
  private lo: number[] = [];
  private hi: number[] = [];
  private to: number[] = [];
  private how: How[] = [];
  private spec: string[] = [];

  get size(): number {
    return this.lo.length;
  }

  /** Insert [lo, hi) in order; a range sharing an id with one already there is a UsageError. */
  add(lo: number, hi: number, to: number, how: How, spec: string, what: string): void {
    let i = 0;
    while (i < this.lo.length && this.lo[i]! < lo) i++;
    const before = i - 1;
    if (before >= 0 && this.hi[before]! > lo) this.clash(lo, hi, before, spec, what);
    if (i < this.lo.length && this.lo[i]! < hi) this.clash(lo, hi, i, spec, what);
    this.lo.splice(i, 0, lo);
    this.hi.splice(i, 0, hi);
    this.to.splice(i, 0, to);
    this.how.splice(i, 0, how);
    this.spec.splice(i, 0, spec);
  }

  private clash(lo: number, hi: number, j: number, spec: string, what: string): never {
    throw new UsageError(
      `${what} '${spec}': ids [${lo}, ${hi}) overlap [${this.lo[j]}, ${this.hi[j]}) of '${this.spec[j]}'`,
    );
  }

  /** The id translated; FORBIDDEN for a forbidden one; unchanged where no range covers it. */
  map(id: number): number {
    const lo = this.lo;
    let a = 0;
    let b = lo.length - 1;
    // the last range starting at or below id
    while (a <= b) {
      const m = (a + b) >>> 1;
      if (lo[m]! <= id) a = m + 1;
      else b = m - 1;
    }
    if (b < 0 || id >= this.hi[b]!) return id;
    switch (this.how[b]) {
      case How.Offset: return this.to[b]! + (id - lo[b]!);
      case How.Squash: return this.to[b]!;
      default: return FORBIDDEN;
    }
  }
}

/** The uid or the gid translation: both directions. */
export class IdMap {
  private readonly g2h = new Table();
  private readonly h2g = new Table();

  /** The rules of one option, in order; overlaps within a direction are refused. */
  constructor(readonly rules: readonly IdRule[] = [], option = '--translate-id') {
    for (const r of rules) {
      const spec = r.kind === 'forbid-guest' ? `forbid-guest:${r.from}:${r.count}` : `${r.kind}:${r.from}:${r.to}:${r.count}`;
      const end = r.from + r.count;
      switch (r.kind) {
        case 'map':
          this.g2h.add(r.from, end, r.to, How.Offset, spec, `${option} guest-to-host`);
          this.h2g.add(r.to, r.to + r.count, r.from, How.Offset, spec, `${option} host-to-guest`);
          break;
        case 'guest':
          this.g2h.add(r.from, end, r.to, How.Offset, spec, `${option} guest-to-host`);
          break;
        case 'host':
          this.h2g.add(r.from, end, r.to, How.Offset, spec, `${option} host-to-guest`);
          break;
        case 'squash-guest':
          this.g2h.add(r.from, end, r.to, How.Squash, spec, `${option} guest-to-host`);
          break;
        case 'squash-host':
          this.h2g.add(r.from, end, r.to, How.Squash, spec, `${option} host-to-guest`);
          break;
        case 'forbid-guest':
          this.g2h.add(r.from, end, 0, How.Forbid, spec, `${option} guest-to-host`);
          break;
      }
    }
  }

  /** Parse and check the values of one option (e.g. every --translate-uid). */
  static parse(specs: readonly string[], option: string): IdMap {
    return new IdMap(specs.map((s) => parseIdRule(s, option)), option);
  }

  /** no rule at all: every id passes unchanged */
  get empty(): boolean {
    return this.g2h.size === 0 && this.h2g.size === 0;
  }

  /** A guest id as the host sees it; FORBIDDEN (-1) if the guest may not use it. */
  guestToHost(id: number): number {
    return this.g2h.map(id);
  }

  /** A host id as the guest sees it. */
  hostToGuest(id: number): number {
    return this.h2g.map(id);
  }
}

/** The uid and gid translations the FUSE server applies. */
export interface IdMaps {
  readonly uid: IdMap;
  readonly gid: IdMap;
}

/** Both options' values → the tables, or null when there is no rule (nothing to translate). */
export function idMapsOf(translateUid: readonly string[], translateGid: readonly string[]): IdMaps | null {
  if (translateUid.length === 0 && translateGid.length === 0) return null;
  return { uid: IdMap.parse(translateUid, '--translate-uid'), gid: IdMap.parse(translateGid, '--translate-gid') };
}

/**
 * A user-namespace map of the rootless mode (--uid-map, --gid-map): `:NAMESPACE_ID:HOST_ID:COUNT:`,
 * any one character but a letter or digit as the delimiter, which starts and ends the value.
 */
export type NamespaceIdMap = IdMapRange;

export function parseNamespaceIdMap(spec: string, option: string): NamespaceIdMap {
  const what = `${option} '${spec}'`;
  const d = spec[0];
  // (as virtiofsd: any delimiter but a letter or digit, the same around each field)
  if (d === undefined || /[\p{L}\p{N}]/u.test(d)) throw new UsageError(`${what}: expected :NAMESPACE_ID:HOST_ID:COUNT:`);
  const parts = spec.split(d);
  if (parts.length !== 5 || parts[0] !== '' || parts[4] !== '') {
    throw new UsageError(`${what}: expected ${d}NAMESPACE_ID${d}HOST_ID${d}COUNT${d} (three numbers, '${d}' around each)`);
  }
  const namespaceId = u32(parts[1]!, what);
  const hostId = u32(parts[2]!, what);
  const count = u32(parts[3]!, what);
  range(namespaceId, count, what);
  range(hostId, count, what);
  return { namespaceId, hostId, count };
}
