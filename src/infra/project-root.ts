// The project's root folder (the one with matchbox's package.json), found from this file so it is
// the same whether the code runs from src/ or from dist/src/, whatever the current directory.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string };
      if (name === 'matchbox') return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('matchbox: cannot find the project root (package.json)');
    dir = parent;
  }
}
