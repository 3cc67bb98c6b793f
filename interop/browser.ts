/**
 * The browser row of the interop matrix: ssekit's `EventEndpoint` on
 * `node:http` → headless Chromium's `EventSource`, driven by playwright-core.
 * Writes `results/browser.json` and re-renders `RESULTS.md` when its findings
 * differ from the recorded ones (never for a version alone), prints the
 * cells, and exits non-zero if a check failed.
 *
 * Needs Chromium (Debian: `apt-get install -y chromium`); set `CHROMIUM` to
 * use another executable than `/usr/bin/chromium`.
 *
 * Usage: `node_modules/.bin/node interop/browser.ts` (`npm run test:browser`)
 *
 * @module
 */

import { existsSync } from "node:fs";
import process from "node:process";
import { CHROMIUM_PATH, launchChromium } from "../tools/chromium.ts";
import { DEADLINE } from "./matrix.ts";
import { observeEventSource } from "./observe.ts";
import { failures, type Results, writeResults } from "./report.ts";
import { judge, type Observation, ServerLog } from "./scenario.ts";
import { ssekitServer } from "./servers.ts";
import { runtime, versioned } from "./serve.ts";

async function main(): Promise<number> {
  if (runtime !== "node") {
    console.error("interop/browser.ts runs on Node 24: node_modules/.bin/node");
    return 2;
  }
  if (!existsSync(CHROMIUM_PATH)) {
    console.error(
      `No Chromium at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set CHROMIUM`,
    );
    return 2;
  }
  const log = new ServerLog();
  const server = await ssekitServer.start(log);
  let results: Results;
  try {
    // launch() uses a new, empty user data directory each time.
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      // Same origin as the stream, so no CORS is involved.
      await page.goto(`${server.url}page`);
      const key = "ssekit-chromium";
      const observation = await page.evaluate(
        `(${observeEventSource.toString()})(EventSource, ${
          JSON.stringify(`${server.url}?key=${key}`)
        }, ${DEADLINE})`,
      ) as Observation;
      results = {
        host: `Node ${process.versions.node} + Chromium ${browser.version()}`,
        rows: [{
          pair: "ssekit EventEndpoint → Chromium EventSource",
          server: server.label,
          client: `Chromium ${browser.version()} EventSource (headless, ${
            versioned("playwright-core")
          })`,
          cells: judge(key, observation, log.of(key)),
        }],
      };
    } finally {
      await browser.close();
    }
  } finally {
    await server.close();
  }
  // A browser version alone (e.g. Debian's next Chromium patch) rewrites
  // nothing: only different findings do.
  const written = await writeResults("browser", results);
  console.log(
    written === "written"
      ? "interop browser: results/browser.json and RESULTS.md rewritten"
      : `interop browser: same findings as recorded (${results.host}); nothing rewritten`,
  );
  for (const row of results.rows) {
    console.log(`${row.server} → ${row.client}`);
    for (const [check, cell] of Object.entries(row.cells)) {
      console.log(
        `  ${cell.result.padEnd(4)}  ${check}${
          cell.detail ? `: ${cell.detail}` : ""
        }`,
      );
    }
  }
  const failed = failures(results);
  console.log(
    failed.length === 0
      ? "interop browser: all checks passed"
      : `interop browser: ${failed.length} check(s) failed`,
  );
  return failed.length === 0 ? 0 : 1;
}

process.exit(await main());
