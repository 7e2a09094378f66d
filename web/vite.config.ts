import fs from 'node:fs';
import path from 'node:path';
import { defineConfig, type Plugin } from 'vitest/config';

// The app's stylesheet goes into index.html as a <style> (the CSP allows
// inline styles, not scripts): a chat page the server rendered (ssr.c) is
// painted as soon as its HTML is parsed, without waiting for a render-blocking
// stylesheet request (in traces, 50-120 ms after the HTML on a busy machine,
// and a layout of the unstyled page at DOMContentLoaded when it came late).
// Done before Vite reads the page, which then minifies the inline style; no
// chunk owns the stylesheet, so none asks for it as a file.
function inlineCss(): Plugin {
  return {
    name: 'coai-inline-css',
    apply: 'build',
    transformIndexHtml: {
      order: 'pre',
      handler(html) {
        return html.replace(/<link rel="stylesheet" href="\/(src\/[\w-]+\.css)" \/>/g, (_tag, file: string) => {
          const css = fs.readFileSync(path.join(import.meta.dirname, file), 'utf8');
          if (/<\/style|@import|url\(/i.test(css)) throw new Error(`${file}: cannot be inlined as it is`);
          return `<style>${css}</style>`;
        });
      },
    },
  };
}

// The app's chunk, which src/entry.ts imports, is fetched while the page is
// parsed, as when it was the page's own script: a <link rel="preload"> (not
// modulepreload, which would also compile it then, taking a core from the
// first paint of a server-rendered chat; the import compiles it after).
function preloadApp(): Plugin {
  return {
    name: 'coai-preload-app',
    apply: 'build',
    transformIndexHtml: {
      order: 'post',
      handler(html, ctx) {
        const entry = Object.values(ctx.bundle ?? {}).find((c) => c.type === 'chunk' && c.isEntry);
        if (!entry || entry.type !== 'chunk') return html;
        const tags = entry.dynamicImports
          .filter((f) => /^assets\/main-[^/]*\.js$/.test(f))
          .map((f) => ({ tag: 'link', attrs: { rel: 'preload', as: 'script', crossorigin: '', href: `/${f}` }, injectTo: 'head' as const }));
        if (tags.length !== 1) throw new Error(`preloadApp: expected the entry to import one main-*.js, found ${tags.length}`);
        return { html, tags };
      },
    },
  };
}

export default defineConfig({
  plugins: [inlineCss(), preloadApp()],
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
