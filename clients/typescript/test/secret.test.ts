import { test } from 'node:test';
import assert from 'node:assert/strict';
import { format, inspect } from 'node:util';

import { Secret } from '@psst/client';

const VALUE = 'hunter2-super-secret';

function secret(): Secret {
  return new Secret({
    reference: 'local:demo/db-password',
    value: Buffer.from(VALUE),
    versionId: '3',
    stages: ['AWSCURRENT'],
    createdAt: new Date(0),
    cache: { hit: true, stale: false },
  });
}

test('the value is readable on purpose: value (a copy) and text()', () => {
  const s = secret();
  assert.equal(s.text(), VALUE);
  assert.deepEqual(s.value, Buffer.from(VALUE));
  assert.equal(s.size, VALUE.length);
  s.value.fill(0); // a copy: changing it changes nothing
  assert.equal(s.text(), VALUE);
  assert.equal(s.reference, 'local:demo/db-password');
  assert.equal(s.versionId, '3');
  assert.deepEqual(s.stages, ['AWSCURRENT']);
  assert.equal(s.cache.hit, true);
});

test('the constructor copies the bytes it is given', () => {
  const bytes = Buffer.from(VALUE);
  const s = new Secret({ reference: 'local:a', value: bytes, versionId: '1' });
  bytes.fill(0);
  assert.equal(s.text(), VALUE);
});

test('toString, template strings and String() redact the value', () => {
  const s = secret();
  for (const text of [s.toString(), `${s}`, String(s), '' + s]) {
    assert.ok(!text.includes(VALUE), text);
    assert.match(text, /redacted/);
    assert.match(text, /local:demo\/db-password/);
  }
});

test('JSON.stringify redacts the value, also nested', () => {
  const s = secret();
  for (const text of [JSON.stringify(s), JSON.stringify({ nested: [s] }), JSON.stringify(s, null, 2)]) {
    assert.ok(!text.includes(VALUE), text);
    assert.match(text, /\[redacted\]/);
  }
  const parsed = JSON.parse(JSON.stringify(s));
  assert.equal(parsed.value, '[redacted]');
  assert.equal(parsed.reference, 'local:demo/db-password');
  assert.equal(parsed.versionId, '3');
});

test('util.inspect and console formatting redact the value', () => {
  const s = secret();
  const texts = [
    inspect(s),
    inspect(s, { showHidden: true, depth: Infinity }),
    inspect({ a: { b: { c: s } } }, { depth: 0 }),
    inspect([s], { depth: 5 }),
    format('%o', s),
    format('%O', s),
    format('%s', s),
    format('%j', s),
  ];
  for (const text of texts) assert.ok(!text.includes(VALUE), text);
  assert.match(inspect(s), /redacted/);
});

test('spreading or listing keys does not expose the value', () => {
  const s = secret();
  assert.ok(!JSON.stringify(Object.entries({ ...s })).includes(VALUE));
  assert.ok(!Object.keys(s).includes('value'));
});

test('wipe() zeroes the value', () => {
  const s = secret();
  s.wipe();
  assert.deepEqual(s.value, Buffer.alloc(VALUE.length));
});

test('binary values survive as bytes', () => {
  const bytes = Buffer.from([0, 255, 1, 128, 10]);
  const s = new Secret({ reference: 'local:bin', value: bytes, versionId: '1' });
  assert.deepEqual(s.value, bytes);
  assert.equal(s.text('base64'), bytes.toString('base64'));
});
