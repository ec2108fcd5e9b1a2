#!/usr/bin/env node
// The `matchbox` command: the compiled CLI (`npm run build` makes it).
import '../dist/src/cli/main.js';
