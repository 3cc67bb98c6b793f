/**
 * Checks the npm package as Node users get it: `npm run build` must have
 * compiled every entry point to `dist/`, and importing the package by its name,
 * or `require()`-ing it, must give exactly the exports of the TypeScript
 * sources.
 *
 * Usage: node tools/check_npm_package.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";

const pkg = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
) as {
  name: string;
  exports: Record<string, unknown>;
};

const sources: Record<string, string> = {
  ".": "../mod.ts",
  "./server": "../sse.ts",
  "./client": "../client.ts",
  "./channel": "../channel.ts",
  "./redis": "../redis.ts",
};

let failed = 0;
for (const [subpath, source] of Object.entries(sources)) {
  const specifier = pkg.name + subpath.slice(1);
  try {
    assert.ok(pkg.exports[subpath], `package.json exports ${subpath}`);
    const built = await import(specifier);
    const original = await import(source);
    assert.deepEqual(
      Object.keys(built).sort(),
      Object.keys(original).sort(),
      `${specifier} exports the same names as ${source.slice(3)}`,
    );
    // Node 24 can require() an ES module: CommonJS users get the same.
    const required = createRequire(import.meta.url)(specifier);
    assert.deepEqual(
      Object.keys(required).sort(),
      Object.keys(original).sort(),
      `require("${specifier}") gives the same names as ${source.slice(3)}`,
    );
    console.log(
      `ok ${specifier}: ${
        Object.keys(built).length
      } exports (import and require)`,
    );
  } catch (error) {
    failed++;
    console.log(`FAILED ${specifier}: ${(error as Error).message}`);
  }
}
process.exit(failed ? 1 : 0);
