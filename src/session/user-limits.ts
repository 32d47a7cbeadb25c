/**
 * A user's storage with spec.quota and spec.bandwidth applied: the quota
 * decorator innermost (it sees each write before the store does), the
 * bandwidth pacing outside it (a refused write does not wait for its rate).
 */
import { limitBandwidth, type BandwidthLimiter } from './bandwidth.ts';
import type { User } from '../users/user.ts';
import { QuotaStorage, type UsageScan, type UsageTrackers } from '../storage/quota.ts';
import type { Storage } from '../storage/storage.ts';

export interface UserLimitDeps {
  quotas: UsageTrackers;
  bandwidth: BandwidthLimiter;
  /** Counts what the user's home holds (S3: a flat listing of the prefix). */
  scan: UsageScan;
}

export function withUserLimits(storage: Storage, user: User, deps: UserLimitDeps): Storage {
  let limited = storage;
  if (user.quota) {
    const tracker = deps.quotas.get(user.username, `${user.s3.bucket}/${user.s3.keyPrefix}`, deps.scan);
    limited = new QuotaStorage({ storage: limited, tracker, limits: user.quota });
  }
  return limitBandwidth(limited, deps.bandwidth, user.username, user.bandwidth);
}
