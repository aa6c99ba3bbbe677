// Packaging: the client works bundled into one file (esbuild, as for Lambda, ncc or a Next.js
// standalone build), far from node_modules and from any .proto file, and loads as an ES module
// and as CommonJS sharing one copy of its classes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as esbuild from 'esbuild';

import { withoutAgent } from './helpers';

// The same app as an ES module and as CommonJS, each bundled in its own format.
const APPS = {
  esm: `import { PsstClient } from '@psst/client';
const psst = new PsstClient();
process.stdout.write((await psst.get(process.argv[2])).text());
psst.close();
`,
  cjs: `const { PsstClient } = require('@psst/client');
const psst = new PsstClient();
psst.get(process.argv[2]).then((secret) => { process.stdout.write(secret.text()); psst.close(); });
`,
};

test('the ES module and CommonJS entry points share one copy of the client', async () => {
  const esm = await import('@psst/client' as string);
  const cjs = require('@psst/client');
  assert.equal(typeof esm.PsstClient, 'function');
  assert.equal(esm.PsstClient, cjs.PsstClient);
  assert.equal(esm.PsstError, cjs.PsstError);
  assert.equal(esm.Source, cjs.Source);
});

test('the published files hold no .proto: the client never reads one', () => {
  const pkg = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8'));
  assert.ok(!pkg.files.some((f: string) => f.startsWith('proto')), `package.json files: ${pkg.files}`);
  assert.match(pkg.dependencies['@grpc/grpc-js'], /^\^/, 'caret range');
});

if (!process.env.PSST_SOCKET || !process.env.PSST_CONFORMANCE) {
  withoutAgent('a bundled app against the live agent', 'PSST_CONFORMANCE');
} else {
  test('an app bundled with esbuild runs against the live agent from a directory with nothing else in it', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psst-bundle-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    for (const format of ['esm', 'cjs'] as const) {
      // The entry sits in the package, where '@psst/client' resolves to this build.
      const entry = path.join(__dirname, `bundle-app.${format === 'esm' ? 'mjs' : 'cjs'}`);
      fs.writeFileSync(entry, APPS[format]);
      t.after(() => fs.rmSync(entry, { force: true }));
      const outfile = path.join(dir, 'out', path.basename(entry));
      await esbuild.build({
        entryPoints: [entry],
        bundle: true,
        platform: 'node',
        target: 'node18',
        format,
        outfile,
        logLevel: 'silent',
        // grpc-js is CommonJS and requires Node's modules: an ES module bundle needs a require
        // (esbuild's documented banner for this).
        ...(format === 'esm' ? { banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" } } : {}),
      });
      const copied = path.join(dir, 'run', path.basename(outfile));
      fs.mkdirSync(path.dirname(copied), { recursive: true });
      fs.copyFileSync(outfile, copied);
      const out = execFileSync(process.execPath, [copied, 'local:conf/plain'], { cwd: path.dirname(copied), encoding: 'utf8' });
      assert.equal(out, 'hello', `${format} bundle`);
    }
  });
}
