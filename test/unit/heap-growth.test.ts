/** The server's V8 heap growth: set at `serve` unless the node command line chose one. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEAP_GROWING_PERCENT, setHeapGrowth } from '../../src/cli/heap-growth.ts';

test('sets the heap growth unless node was started with one, on its command line or in NODE_OPTIONS', () => {
  assert.equal(HEAP_GROWING_PERCENT, 300);
  assert.equal(setHeapGrowth(['--heap-growing-percent=100']), false);
  assert.equal(setHeapGrowth(['--heap_growing_percent=0']), false);
  assert.equal(setHeapGrowth([], '--max-old-space-size=512 --heap-growing-percent=50'), false, 'NODE_OPTIONS');
  assert.equal(setHeapGrowth(['--max-old-space-size=512'], ''), true);
});
