// Vite 7 (Node 20): builds the console into dist/, which the coordinator embeds (coordinator/build.rs);
// console/build.sh runs it only when the sources changed.
// Preact's JSX through esbuild's automatic runtime, so no framework plugin is needed.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // Hashed file names: the coordinator serves /assets/* as immutable.
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  test: { include: ["test/**/*.test.ts"] },
} as never);
