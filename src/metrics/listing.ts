/**
 * Metrics of what listings cost beyond ListObjectsV2: where each listed file's stored mtime came
 * from (a HeadObject, or one of the memories that spare it), and the directories' listing index
 * objects read and written (docs/adr/0012, 0020, 0022). A high `head` share on directories listed
 * again and again means the memories are not answering; `listing.mtime: lastModified` spares them all.
 */
import { Counter, type Registry } from 'prom-client';
import type { ListingIndexStore } from '../storage/s3/listing-index.ts';
import type { ListedMtimeSource, MtimeCache } from '../storage/s3/mtime-cache.ts';

const SOURCES: readonly ListedMtimeSource[] = ['memory', 'written', 'index', 'head'];

export function listingMetrics(registry: Registry, mtimes: MtimeCache, index: ListingIndexStore | undefined): void {
  new Counter({
    name: 's3sftp_listing_mtimes_total',
    help: 'Files a listing looked up the stored mtime of, by source: memory (a HEAD answer kept for that version), written (stored by this server in the last minute), index (the directory listing index), head (a HeadObject).',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const source of SOURCES) this.inc({ source }, mtimes.listed[source]);
    },
  });
  if (!index) return;
  new Counter({
    name: 's3sftp_listing_index_objects_total',
    help: 'Directory listing index objects read (found: usable; none: missing, malformed or unreadable) and written (written, failed).',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [result, count] of Object.entries(index.counts)) this.inc({ result }, count);
    },
  });
}
