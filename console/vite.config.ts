// The console is served by the dispatcher under /console/; the build goes to dist/, which
// ci/ installs as server.console_dir.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  base: "/console/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
});
