import { defineConfig } from 'vite';

// Preact through the automatic JSX runtime (no preset, no Babel): Vite's oxc transform imports
// `preact/jsx-runtime`. Everything is bundled: hospital networks are closed, no CDN at run time.
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    chunkSizeWarningLimit: 200,
  },
  server: {
    // `npm run dev -w dashboards` against a gateway on :8080.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
