// Writes dist/esm/index.mjs, the ES module entry point: named re-exports of the CommonJS build
// (dist/index.js), so that `import` and `require` share one copy of the client and its classes
// (no dual-package hazard: `instanceof PsstError` holds whichever way the app loaded it).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.resolve(__dirname, '..', 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== 'default' && n !== '__esModule').sort();
fs.mkdirSync(path.join(dist, 'esm'), { recursive: true });
fs.writeFileSync(
  path.join(dist, 'esm', 'index.mjs'),
  "import client from '../index.js';\n\n" +
    `export const {\n${names.map((n) => `  ${n},`).join('\n')}\n} = client;\nexport default client;\n`,
);
