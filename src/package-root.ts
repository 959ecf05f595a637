import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root: the nearest directory above `fromUrl` (an import.meta.url) holding package.json.
 * Works from src/ (tests run by tsx-like loaders) and from dist/src/ (the build).
 */
export function packageRoot(fromUrl: string = import.meta.url): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`virtiofsd-ts: package.json not found above ${fileURLToPath(fromUrl)}`);
    dir = up;
  }
}
