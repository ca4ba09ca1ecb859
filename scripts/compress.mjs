// Writes brotli (`.br`) and gzip (`.gz`) copies next to every text and WebAssembly file of the
// built web UI, so the server sends each asset compressed without compressing per request: it
// picks the copy the browser's Accept-Encoding allows (tower-http's precompressed ServeDir).
// Run by trunk as a post-build hook on release builds (Trunk.toml), in trunk's staging folder;
// `node scripts/compress.mjs DIR` compresses a folder by hand.
//
// Both at their strongest settings: this runs once per build, the bytes go to every visitor.
// Node's zlib has both algorithms built in, so no tool is installed for it.

import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

/** Worth compressing: what trunk emits (the module, its JS glue, CSS, the page itself). */
const COMPRESSIBLE = /\.(wasm|js|mjs|css|html|svg|json|txt)$/;

const dir = process.argv[2] ?? process.env.TRUNK_STAGING_DIR;
if (!dir) {
  console.error('usage: node scripts/compress.mjs DIR (or run by trunk with TRUNK_STAGING_DIR set)');
  process.exit(2);
}
// A debug build (trunk serve) is rebuilt on every save; brotli at its strongest would add
// seconds to each, for a page served on the developer's own machine.
if (process.env.TRUNK_PROFILE === 'debug') {
  process.exit(0);
}

for (const name of readdirSync(dir)) {
  const path = join(dir, name);
  if (!COMPRESSIBLE.test(name) || !statSync(path).isFile()) {
    continue;
  }
  const raw = readFileSync(path);
  const brotli = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
      [constants.BROTLI_PARAM_MODE]: name.endsWith('.wasm')
        ? constants.BROTLI_MODE_GENERIC
        : constants.BROTLI_MODE_TEXT,
    },
  });
  const gzip = gzipSync(raw, { level: 9 });
  writeFileSync(`${path}.br`, brotli);
  writeFileSync(`${path}.gz`, gzip);
  console.error(`compressed ${name}: ${raw.length} B raw, ${brotli.length} B br, ${gzip.length} B gzip`);
}
