/**
 * Metrics of the memory and S3 fairness limits (docs/security.md): how often a session stopped
 * reading its channel and why, the upload part memory reserved against its budget, and how
 * often a storage operation waited for a per-session or per-user cap.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { FlowEvents, HoldReason } from '../sftp/flow-control.ts';
import type { UploadBudgetStats } from '../storage/upload-budget.ts';
import type { LimitScope } from '../storage/s3/request-limiter.ts';
import type { ReadAheadBudget } from '../storage/s3/read-ahead.ts';

const HOLD_REASONS: readonly HoldReason[] = ['session-writes', 'unread-replies', 'queued-requests'];
const SCOPES: readonly LimitScope[] = ['session', 'user'];

export interface LimitMetrics {
  flow: FlowEvents;
  requestWaited(scope: LimitScope): void;
}

export function limitMetrics(registry: Registry, budget: UploadBudgetStats, readAhead: ReadAheadBudget): LimitMetrics {
  const registers = [registry];
  readAheadMetrics(registers, readAhead);
  const held = new Counter({
    name: 's3sftp_sftp_channel_holds_total',
    help: 'Times an SFTP session started waiting (stopped reading its channel (SSH window held closed)), by reason: session-writes (sftp.maxQueuedWriteBytes), unread-replies (the client does not read replies), queued-requests (requests wait behind READs in flight).',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of HOLD_REASONS) held.inc({ reason }, 0);
  new Gauge({
    name: 's3sftp_upload_part_memory_bytes',
    help: 'Upload part memory reserved now (parts being filled, queued or uploading, and spare part buffers), against sftp.uploadMemoryBudget.',
    registers,
    collect() {
      this.set(budget.held);
    },
  });
  new Gauge({
    name: 's3sftp_upload_part_memory_peak_bytes',
    help: 'The most upload part memory reserved at once since the server started.',
    registers,
    collect() {
      this.set(budget.peak);
    },
  });
  new Gauge({
    name: 's3sftp_upload_memory_waiting',
    help: 'Uploads waiting now for part memory under sftp.uploadMemoryBudget (their WRITE replies wait too).',
    registers,
    collect() {
      this.set(budget.waiting);
    },
  });
  new Gauge({
    name: 's3sftp_upload_memory_budget_bytes',
    help: 'sftp.uploadMemoryBudget.',
    registers,
    collect() {
      this.set(budget.limit);
    },
  });
  const waited = new Counter({
    name: 's3sftp_storage_operations_waited_total',
    help: 'Storage operations that waited for a free slot under s3.maxRequestsPerSession (scope session) or s3.maxRequestsPerUser (scope user).',
    labelNames: ['scope'],
    registers,
  });
  for (const scope of SCOPES) waited.inc({ scope }, 0);
  return {
    flow: { held: (reason) => held.inc({ reason }) },
    requestWaited: (scope) => waited.inc({ scope }),
  };
}

/** Small files fetched ahead of their OPEN (docs/adr/0021): what they hold, and how many were used. */
function readAheadMetrics(registers: Registry[], readAhead: ReadAheadBudget): void {
  new Gauge({
    name: 's3sftp_read_ahead_bytes',
    help: 'Bytes of small files fetched ahead of their OPEN and not yet opened (at most 16 MiB per server).',
    registers,
    collect() {
      this.set(readAhead.usedBytes);
    },
  });
  new Counter({
    name: 's3sftp_read_ahead_files_total',
    help: 'Small files fetched ahead of their OPEN, by result: used (an OPEN took it) or unused (skipped, expired, changed, or the session moved on).',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      this.inc({ result: 'used' }, readAhead.usedFiles);
      this.inc({ result: 'unused' }, readAhead.unusedFiles);
    },
  });
}
