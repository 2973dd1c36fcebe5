import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // 2-core CI machines: SoftHSM and openssl children are CPU-bound.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
