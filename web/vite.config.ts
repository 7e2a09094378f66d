import { defineConfig } from 'vitest/config';

// The C server serves dist/ and falls back to index.html for client routes.
// `npm run dev` proxies /api to it (CHATOPENAII_URL, default 127.0.0.1:8080).
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    target: 'es2022',
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  server: {
    proxy: { '/api': { target: process.env.CHATOPENAII_URL ?? 'http://127.0.0.1:8080', changeOrigin: false } },
  },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.{ts,tsx}'],
    // Correctness, not timing: the randomized streaming tests take seconds
    // on a busy 2-core machine, over Vitest's 5 s default.
    testTimeout: 30000,
    // `npm run coverage` (scripts/coverage.sh, `make coverage`): line
    // coverage of every source file, tested or not; the report goes to
    // ../build-cov/web (coverage-summary.json is read by scripts/coverage.sh).
    coverage: {
      provider: 'v8',
      include: ['src/**/*.{ts,tsx}'],
      exclude: ['src/**/*.test.{ts,tsx}'],
      reporter: ['text-summary', 'json-summary', 'html'],
      reportsDirectory: '../build-cov/web',
      thresholds: { lines: 80 },
    },
  },
});
