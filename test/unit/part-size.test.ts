import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_OBJECT_SIZE, MAX_PARTS, MAX_PART_SIZE, partSizeFor } from '../../src/storage/s3/part-size.ts';

const MiB = 1024 ** 2;

describe('partSizeFor', () => {
  it('uses the base size for the first 500 parts', () => {
    assert.equal(partSizeFor(1, 5 * MiB), 5 * MiB);
    assert.equal(partSizeFor(500, 5 * MiB), 5 * MiB);
    assert.equal(partSizeFor(501, 5 * MiB), 10 * MiB);
    assert.equal(partSizeFor(1001, 5 * MiB), 20 * MiB);
  });

  it('reaches 5 TiB within 10,000 parts from a 5 MiB base, no part above 5 GiB', () => {
    let total = 0;
    let previous = 0;
    for (let n = 1; n <= MAX_PARTS; n++) {
      const size = partSizeFor(n, 5 * MiB);
      assert.ok(size <= MAX_PART_SIZE, `part ${n} is ${size} bytes`);
      assert.ok(size >= previous, 'sizes never shrink');
      previous = size;
      total += size;
    }
    assert.ok(total >= MAX_OBJECT_SIZE, `10,000 parts hold only ${total} bytes`);
  });

  it('caps a huge base at 5 GiB', () => {
    assert.equal(partSizeFor(1, 8 * 1024 ** 3), MAX_PART_SIZE);
    assert.equal(partSizeFor(10_000, 64 * MiB), MAX_PART_SIZE);
  });

  it('returns whole numbers of bytes', () => {
    for (const n of [1, 499, 500, 501, 5000, 9999, 10_000]) {
      assert.ok(Number.isSafeInteger(partSizeFor(n, 5 * MiB + 1)));
    }
  });
});
