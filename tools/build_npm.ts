/**
 * `npm run build` (and `prepare`, so `npm ci`, `npm pack` and git installs
 * build too): compiles the sources to `dist/` with tsc, then points the
 * relative imports of the emitted `.d.ts` files at `.js`. tsc rewrites `.ts`
 * specifiers in the JavaScript it emits but leaves them in declarations,
 * which Deno and older TypeScript resolvers cannot follow from `dist/`.
 *
 * Usage: node tools/build_npm.ts
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "dist");

const tsc = spawnSync(
  join(root, "node_modules", ".bin", "tsc"),
  ["-p", join(root, "tools", "tsconfig.npm.json")],
  { stdio: "inherit" },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

for (const name of readdirSync(dist)) {
  if (!name.endsWith(".d.ts")) continue;
  const path = join(dist, name);
  const text = readFileSync(path, "utf8");
  // Only import/export specifiers, not `@example` code in comments.
  const fixed = text.replace(
    /^((?:import|export)\b[^"'\n]*?\bfrom\s*|import\s*\(\s*)(["'])(\.\.?\/[^"']+)\.ts\2/gm,
    "$1$2$3.js$2",
  );
  if (fixed !== text) writeFileSync(path, fixed);
}
