/**
 * Words for what was wrong with a reply (the load tester prints them instead of a result) and errno
 * names for the error table.
 */
import { errnoName } from '../native.js';

export { errnoName };

/** The sentence for a positive drvReplyCheck code (assembly/driver.ts) about a reply at r in u8. */
export function headerFault(code: number, op: string, u8: Uint8Array, r: number, usedLen: number, cap: number): string {
  const dv = new DataView(u8.buffer, u8.byteOffset + r, Math.min(16, Math.max(0, u8.byteLength - r)));
  const len = usedLen >= 4 ? dv.getUint32(0, true) : 0;
  const error = usedLen >= 8 ? dv.getInt32(4, true) : 0;
  switch (code) {
    case 1:
      return `${op} reply of ${usedLen} bytes, shorter than fuse_out_header`;
    case 2:
      return `${op} reply header says ${len} bytes but the device wrote ${usedLen}`;
    case 3:
      return `${op} reply of ${len} bytes overruns the ${cap} bytes of its buffers`;
    case 4:
      return `${op} reply carries unique 0x${dv.getBigUint64(8, true).toString(16)}, not the request's`;
    case 5:
      return `${op} reply has error ${error}, outside -4095..0`;
    case 6:
      return `${op} reply has error ${error} and ${len - 16} bytes of payload`;
    default:
      return `${op} reply is malformed (check ${code})`;
  }
}
