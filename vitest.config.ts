import { defineConfig } from 'vitest/config';

// One project per package. Everything runs in forked processes: Dawn (webgpu) is a native
// addon that crashes in worker threads, and the cpu backend starts its own workers.
const packages = ['formats', 'kernels', 'tensor', 'data', 'eval', 'ibq', 'ar', 'cli', 'mpi'];

export default defineConfig({
  test: {
    projects: packages.map((name) => ({
      extends: true,
      test: {
        name,
        root: `packages/${name}`,
        include: ['test/**/*.test.ts'],
        pool: 'forks',
        testTimeout: 120_000,
        hookTimeout: 120_000,
      },
    })),
    passWithNoTests: true,
    reporters: ['default'],
  },
});
