import { readFileSync } from "node:fs";

/**
 * The page's files, shipped beside this module (scripts/build.mjs copies them into dist/) and
 * read once at start: no CDN, no bundler, nothing fetched at run time.
 */
const FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/dashboard.js": { file: "dashboard.js", type: "text/javascript; charset=utf-8" },
  "/dashboard.css": { file: "dashboard.css", type: "text/css; charset=utf-8" },
  "/favicon.svg": { file: "favicon.svg", type: "image/svg+xml" },
};

/** Paths of the asset files relative to src/ (and dist/), for the build. */
export const ASSET_FILES: readonly string[] = Object.values(FILES).map((f) => `dashboard/assets/${f.file}`);

export interface Assets {
  get(path: string): { body: Buffer; type: string } | undefined;
}

export function loadAssets(): Assets {
  const loaded = new Map<string, { body: Buffer; type: string }>();
  for (const [path, { file, type }] of Object.entries(FILES)) loaded.set(path, { body: readFileSync(new URL(`./assets/${file}`, import.meta.url)), type });
  return { get: (path) => loaded.get(path === "/index.html" ? "/" : path) };
}
