export const WINDOW_BASE: u32 = 64 << 20;
export function add(p: u32, v: u32): u32 { return atomic.add<u32>(p, v); }
export function ld16(p: u32): u32 { return atomic.load<u16>(p); }
