/**
 * Metrics of the memory and S3 fairness limits (docs/security.md): how often a session stopped
 * reading its channel and why, the upload bytes the server holds against its budget, and how
 * often a storage operation waited for a per-session or per-user cap.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { FlowEvents, HoldReason, UploadMemoryBudget } from '../sftp/flow-control.ts';
import type { LimitScope } from '../storage/s3/request-limiter.ts';

const HOLD_REASONS: readonly HoldReason[] = ['session-writes', 'server-budget', 'unread-replies', 'queued-requests'];
const SCOPES: readonly LimitScope[] = ['session', 'user'];

export interface LimitMetrics {
  flow: FlowEvents;
  requestWaited(scope: LimitScope): void;
}

export function limitMetrics(registry: Registry, budget: UploadMemoryBudget): LimitMetrics {
  const registers = [registry];
  const held = new Counter({
    name: 's3sftp_sftp_channel_holds_total',
    help: 'Times an SFTP session started waiting (stopped reading its channel (SSH window held closed)), by reason: session-writes (sftp.maxQueuedWriteBytes), server-budget (sftp.uploadMemoryBudget), unread-replies (the client does not read replies), queued-requests (requests wait behind READs in flight).',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of HOLD_REASONS) held.inc({ reason }, 0);
  new Gauge({
    name: 's3sftp_upload_memory_bytes',
    help: 'Upload bytes held in memory now (queued WRITE data plus part buffers), counted against sftp.uploadMemoryBudget.',
    registers,
    collect() {
      this.set(budget.used);
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
