// Counts for the full run (`npm run bench`, at most ~10 minutes on 2 cores) and for the smoke run
// that CI uses to keep the bench working (tiny counts; its numbers mean nothing).

export interface Profile {
  name: 'full' | 'smoke';
  rounds: number;
  /** Signatures per round under one login (raw, module host, sign.batch). */
  batch: { 'EC P-256': number; 'RSA 2048': number };
  /** Single consented `sign.raw` requests per round. */
  single: { 'EC P-256': number; 'RSA 2048': number };
  /** Key generations `tokens.list` is measured against, and their size. */
  keygens: number;
  keygenBits: 2048 | 4096;
  idleListCalls: number;
  provisioningRounds: number;
  startups: number;
  /** Signatures for the memory figure, in batches of at most 10,000, after warm-up batches. */
  memorySignatures: number;
  memoryBatch: number;
  memoryWarmupBatches: number;
  largeFileBytes: number;
}

export const PROFILES: Record<Profile['name'], Profile> = {
  full: {
    name: 'full',
    rounds: 3,
    batch: { 'EC P-256': 10_000, 'RSA 2048': 2000 },
    single: { 'EC P-256': 300, 'RSA 2048': 150 },
    keygens: 3,
    keygenBits: 4096,
    idleListCalls: 300,
    provisioningRounds: 5,
    startups: 5,
    memorySignatures: 100_000,
    memoryBatch: 2000,
    memoryWarmupBatches: 75,
    largeFileBytes: 1024 * 1024 * 1024,
  },
  smoke: {
    name: 'smoke',
    rounds: 1,
    batch: { 'EC P-256': 40, 'RSA 2048': 10 },
    single: { 'EC P-256': 8, 'RSA 2048': 4 },
    keygens: 1,
    keygenBits: 2048,
    idleListCalls: 20,
    provisioningRounds: 1,
    startups: 1,
    memorySignatures: 300,
    memoryBatch: 100,
    memoryWarmupBatches: 1,
    largeFileBytes: 8 * 1024 * 1024,
  },
};
