/**
 * The interfaces between languages agree on both sides: the native addon (native/src/functions.h,
 * constants.h) and src/native.ts; the AS module (assembly/) and src/virtio/wasm.ts; the constants the
 * AS module and the addon repeat from a kernel or spec header and the TypeScript leaf modules
 * (src/abi/virtio.ts, src/abi/stat.ts, src/errors.ts). Each check compares what the compiled artefact
 * actually exports with what TypeScript declares, in both directions.
 */
import t from 'tap';
import ts from 'typescript';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as abiStat from '../../src/abi/stat.js';
import * as abiVirtio from '../../src/abi/virtio.js';
import { Errno } from '../../src/errors.js';
import type { Tables } from '../../src/fs/tables.js';
import { ADDON_PATH, ERRNO_NAMES, native, NATIVE_CONSTANTS } from '../../src/native.js';
import { packageRoot } from '../../src/package-root.js';
import {
  createSharedMemory, LAYOUT_KEYS, loadVirtqueueModule, VQ_FUNCTIONS, VqError, virtqueueWasmPath,
} from '../../src/virtio/wasm.js';

/** Names on one side only, sorted; both empty when the sides agree. */
function diff(actual: Iterable<string>, declared: Iterable<string>): { undeclared: string[]; missing: string[] } {
  const a = new Set(actual);
  const d = new Set(declared);
  return {
    undeclared: [...a].filter((n) => !d.has(n)).sort(),
    missing: [...d].filter((n) => !a.has(n)).sort(),
  };
}
const AGREE = { undeclared: [], missing: [] };

/**
 * The functions the `Native` interface declares, read from src/native.ts with the TypeScript parser:
 * the interface is the only TS-side declaration of an addon function (no second list to keep in step).
 */
function declaredNativeFunctions(): string[] {
  const file = join(packageRoot(), 'src', 'native.ts');
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const names: string[] = [];
  sf.forEachChild((n) => {
    if (ts.isInterfaceDeclaration(n) && n.name.text === 'Native') {
      for (const m of n.members) if (ts.isMethodSignature(m) && ts.isIdentifier(m.name)) names.push(m.name.text);
    }
  });
  return names;
}
const NATIVE_FUNCTIONS = declaredNativeFunctions();

t.test('diff reports a name on either side only', async (t) => {
  t.same(diff(['a', 'b'], ['b', 'a']), AGREE);
  t.same(diff(['a', 'b', 'c'], ['a', 'd']), { undeclared: ['b', 'c'], missing: ['d'] });
});

// ---------------------------------------------------------------------------------------------------
// The native addon

const addon = createRequire(import.meta.url)(ADDON_PATH) as Record<string, unknown> & {
  constants: Record<string, unknown> & { errno: Record<string, unknown> };
};

t.test('addon: the functions it registers are exactly Native\'s', async (t) => {
  const registered = Object.keys(addon).filter((k) => k !== 'constants');
  t.ok(NATIVE_FUNCTIONS.length > 40, `read the Native interface (${NATIVE_FUNCTIONS.length} functions)`);
  t.same(diff(registered, NATIVE_FUNCTIONS), AGREE, 'native/src/functions.h vs the Native interface');
  for (const name of registered) t.type(addon[name], 'function', name);
  // The `native` object (the addon plus the SharedArrayBuffer adapters) has every function too.
  for (const name of NATIVE_FUNCTIONS) {
    t.type((native as unknown as Record<string, unknown>)[name], 'function', `native.${name}`);
  }
});

t.test('addon: the constants it exports are exactly NATIVE_CONSTANTS and ERRNO_NAMES', async (t) => {
  const { errno, ...constants } = addon.constants;
  t.same(diff(Object.keys(constants), NATIVE_CONSTANTS), AGREE, 'constants.h NATIVE_CONSTANTS');
  t.same(diff(Object.keys(errno), ERRNO_NAMES), AGREE, 'constants.h NATIVE_ERRNOS');
  for (const [k, v] of Object.entries(constants)) t.ok(Number.isInteger(v), `${k} is an integer`);
  for (const [k, v] of Object.entries(errno)) t.ok(Number.isInteger(v) && (v as number) > 0, `${k} > 0`);
});

t.test('addon: errno numbers equal Errno (src/errors.ts) for every name both have', async (t) => {
  const both = Object.keys(Errno).filter((k) => k in addon.constants.errno);
  t.ok(both.length > 0, 'the tables share names');
  for (const k of both) t.equal(addon.constants.errno[k], Errno[k as keyof typeof Errno], k);
});

t.test('addon: S_IF* equal src/abi/stat.ts', async (t) => {
  const stat: Record<string, number> = { ...abiStat };
  t.ok(Object.keys(stat).length >= 8, 'stat.ts exports the file types');
  for (const [k, v] of Object.entries(stat)) t.equal(addon.constants[k], v, k);
});

// ---------------------------------------------------------------------------------------------------
// The AS module

const mod = new WebAssembly.Module(readFileSync(virtqueueWasmPath()));
const exportsOf = (kind: WebAssembly.ImportExportKind): string[] =>
  WebAssembly.Module.exports(mod).filter((e) => e.kind === kind).map((e) => e.name);
const memory = createSharedMemory();
const inst = new WebAssembly.Instance(mod, { env: { memory } });
const globalValue = (name: string): number => (inst.exports[name] as WebAssembly.Global).value as number;

/** The names a file of assembly/ exports as constants (`export const NAME`). */
function asConstants(file: string): string[] {
  const src = readFileSync(join(packageRoot(), 'assembly', file), 'utf8');
  return [...src.matchAll(/^export const (\w+)\s*:/gm)].map((m) => m[1]!);
}

t.test('AS module: its functions are exactly the EXPORTS of src/virtio/wasm.ts', async (t) => {
  t.same(diff(exportsOf('function'), VQ_FUNCTIONS), AGREE, 'assembly/index.ts vs EXPORTS');
  const vq = await loadVirtqueueModule(memory);
  t.same(diff(Object.keys(vq), ['layout', ...VQ_FUNCTIONS]), AGREE, 'wrap() builds every export');
  for (const name of VQ_FUNCTIONS) t.type(vq[name], 'function', name);
  // The fs layer's view of the tables (src/fs/tables.ts) is a subset of the module's: this assignment
  // does not compile if the two disagree.
  const tables: Tables = vq;
  t.type(tables.inodeLookup, 'function');
});

t.test('AS module: every exported global has a TypeScript name with the same value', async (t) => {
  const errors = asConstants('errors.ts');
  const layout = asConstants('layout.ts');
  const virtio = asConstants('virtio.ts');
  const abiVirtioValues: Record<string, number> = { ...abiVirtio };
  t.same(diff(errors, Object.keys(VqError)), AGREE, 'assembly/errors.ts vs VqError');
  t.same(diff(layout, LAYOUT_KEYS), AGREE, 'assembly/layout.ts vs LAYOUT_KEYS');
  t.same(diff(virtio, Object.keys(abiVirtioValues)).undeclared, [], 'assembly/virtio.ts names are in src/abi/virtio.ts');
  // What the module exports is what those files declare (index.ts re-exports each of them whole).
  t.same(diff(exportsOf('global'), [...errors, ...layout, ...virtio]), AGREE, 'exported globals');

  for (const [k, v] of Object.entries(VqError)) t.equal(globalValue(k), v, `VqError.${k}`);
  const vq = await loadVirtqueueModule(memory);
  for (const k of LAYOUT_KEYS) t.equal(vq.layout[k], globalValue(k) >>> 0, `layout.${k}`);
  for (const k of virtio) t.equal(globalValue(k), abiVirtioValues[k], k);
});
