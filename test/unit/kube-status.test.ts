/** The Ready condition of SftpUser status (src/kube/sftp-user-resource.ts): what is written, and when not. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { statusMatches, statusPatch, type DesiredReady, type SftpUserResource } from '../../src/kube/sftp-user-resource.ts';

const T0 = '2025-01-01T00:00:00Z';
const NOW = new Date('2025-06-01T12:00:00.123Z');

function resource(status?: SftpUserResource['status'], generation = 2): SftpUserResource {
  return { metadata: { name: 'alice', namespace: 'ns', generation, resourceVersion: '7' }, spec: {}, status };
}

const loaded: DesiredReady = { status: 'True', reason: 'Loaded', message: 'loaded as user alice', observedGeneration: 2 };

describe('SftpUser status', () => {
  test('a first write sets the condition, observedGeneration and a whole-second transition time', () => {
    const patch = statusPatch(resource(), loaded, NOW);
    assert.deepEqual(patch, {
      status: {
        observedGeneration: 2,
        conditions: [{ type: 'Ready', status: 'True', reason: 'Loaded', message: 'loaded as user alice', observedGeneration: 2, lastTransitionTime: '2025-06-01T12:00:00Z' }],
      },
    });
  });

  test('lastTransitionTime changes only when the status flips; other conditions are kept', () => {
    const other = { type: 'Synced', status: 'True' as const, reason: 'Ok', message: '', lastTransitionTime: T0 };
    const before = resource({ observedGeneration: 1, conditions: [other, { type: 'Ready', ...loaded, observedGeneration: 1, lastTransitionTime: T0 }] });
    const same = statusPatch(before, loaded, NOW);
    assert.equal(same.status.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime, T0);
    assert.deepEqual(same.status.conditions[0], other);
    const flipped = statusPatch(before, { status: 'False', reason: 'InvalidSpec', message: 'bad', observedGeneration: 2 }, NOW);
    assert.equal(flipped.status.conditions.find((c) => c.type === 'Ready')?.lastTransitionTime, '2025-06-01T12:00:00Z');
  });

  test('statusMatches: nothing to write only when status, reason, message and both generations agree', () => {
    const written = resource(statusPatch(resource(), loaded, NOW).status);
    assert.equal(statusMatches(written, loaded), true);
    assert.equal(statusMatches(written, { ...loaded, observedGeneration: 3 }), false);
    assert.equal(statusMatches(written, { ...loaded, message: 'other' }), false);
    assert.equal(statusMatches(resource(), loaded), false);
    const staleTop = resource({ ...written.status, observedGeneration: 1 });
    assert.equal(statusMatches(staleTop, loaded), false);
  });
});
