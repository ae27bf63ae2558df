import preact from '@preact/preset-vite';
import { defineConfig } from 'vitest/config';

// The build goes where the gateway serves it from (api/static, packaged as vapor/gateway/static).
export default defineConfig({
  plugins: [preact()],
  build: {
    outDir: '../api/static',
    target: 'es2022', // noVNC uses top-level await
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 600,
  },
  server: {
    // `npm run dev`: the page from Vite, the API from a gateway on :8080 (make dev)
    proxy: { '/api': 'http://127.0.0.1:8080', '/ws': { target: 'ws://127.0.0.1:8080', ws: true } },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
