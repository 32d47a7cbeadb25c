/**
 * Quota usage as gauges, read from the trackers at each scrape. Users are a
 * label only with metrics.perUserLabels; otherwise one series sums every user
 * with a quota whose usage has been counted.
 */
import { Gauge, type Registry } from 'prom-client';
import type { UsageTrackers } from '../storage/quota.ts';

export function registerQuotaMetrics(registry: Registry, quotas: UsageTrackers, perUserLabels: boolean): void {
  const labelNames = perUserLabels ? ['user'] : [];
  const gauge = (name: string, help: string, field: 'bytes' | 'files') =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        let total = 0;
        for (const { username, usage } of quotas.usages()) {
          if (perUserLabels) this.set({ user: username }, usage[field]);
          total += usage[field];
        }
        if (!perUserLabels) this.set(total);
      },
    });
  gauge('s3sftp_quota_usage_bytes', 'Bytes stored by users with spec.quota, as counted for their quota.', 'bytes');
  gauge('s3sftp_quota_usage_files', 'Files stored by users with spec.quota, as counted for their quota.', 'files');
}
