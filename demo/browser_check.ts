/**
 * The demo in a real browser: starts `demo/server.ts` on a free port, opens
 * two tabs in headless Chromium (playwright-core), sends a chat message from
 * one and sees it in both, kills the server (SIGKILL) and starts it again,
 * and checks that both tabs reconnect and resume from their Last-Event-ID
 * with no event lost, repeated or reordered: the ids each tab received over
 * its stream must be exactly the ids in the server's history file after the
 * tab's starting point. Saves a screenshot to `demo/output/demo.png`.
 *
 * Not a `*_test.ts`: it needs Chromium, so it runs on its own.
 *
 * Usage: node_modules/.bin/node demo/browser_check.ts
 * (`CHROMIUM=/path/to/chromium` overrides `/usr/bin/chromium`)
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../tools/chromium.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const DENO = join(root, "node_modules", ".bin", "deno");
const SERVER = join(root, "demo", "server.ts");
const OUTPUT = join(root, "demo", "output");
/** Upper bound for any one wait; a healthy run needs a few seconds in all. */
const WAIT_MS = 20_000;

/** What the page exposes as `globalThis.__demo` (see public/app.js). */
interface DemoState {
  state: string;
  lastEventId: string;
  reconnects: number;
  received: number;
  replayed: number;
  duplicates: number;
  resets: number;
  opens: number;
  chatIds: string[];
  snapshotId: string;
  streamIds: string[];
}

interface Server {
  child: ChildProcess;
  port: number;
  output: () => string;
}

const results: { name: string; ok: boolean; detail: string }[] = [];

function check(name: string, ok: boolean, detail = ""): void {
  results.push({ name, ok, detail });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
}

/** Starts the demo server and resolves with its port once it listens. */
function startServer(port: number, dataDir: string): Promise<Server> {
  const child = spawn(
    DENO,
    ["run", "-A", SERVER, "--port", String(port), "--data", dataDir],
    { cwd: root, env: { ...process.env, NO_COLOR: "1" } },
  );
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`demo server did not print its URL:\n${output}`));
    }, WAIT_MS);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = output.match(/http:\/\/localhost:(\d+)\//);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), output: () => output });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`demo server exited (${code}):\n${output}`));
    });
  });
}

function kill(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    server.child.removeAllListeners("exit");
    server.child.once("exit", () => resolve());
    server.child.kill("SIGKILL");
  });
}

function state(page: Page): Promise<DemoState> {
  return page.evaluate(() =>
    structuredClone((globalThis as unknown as { __demo: DemoState }).__demo)
  );
}

function waitFor(
  page: Page,
  predicate: (demo: DemoState, arg: string) => boolean,
  arg = "",
): Promise<unknown> {
  return page.waitForFunction(
    ({ source, arg }) => {
      const demo = (globalThis as unknown as { __demo?: DemoState }).__demo;
      // The predicate crosses into the page as source text.
      return demo !== undefined &&
        (0, eval)(`(${source})`)(demo, arg) as boolean;
    },
    { source: predicate.toString(), arg },
    { timeout: WAIT_MS, polling: 50 },
  );
}

/** The texts of the chat messages shown, with their ids. */
function chatShown(page: Page): Promise<{ id: string; text: string }[]> {
  return page.$$eval(
    "#messages li",
    (items) =>
      items.map((li) => ({
        id: li.getAttribute("data-id") ?? "",
        text: li.querySelector(".body")?.textContent ?? "",
      })),
  );
}

/** Event ids in the server's history file, in publish order. */
function historyIds(dataDir: string): string[] {
  return readFileSync(join(dataDir, "history.jsonl"), "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => (JSON.parse(line) as { id: string }).id);
}

/**
 * Nothing lost, repeated or reordered: the ids a tab received over its
 * stream are exactly the history's ids after the tab's snapshot.
 */
function checkStream(name: string, demo: DemoState, history: string[]): void {
  const start = history.indexOf(demo.snapshotId) + 1;
  const expected = history.slice(start, start + demo.streamIds.length);
  const same = start > 0 &&
    expected.length === demo.streamIds.length &&
    expected.every((id, i) => id === demo.streamIds[i]);
  let detail = `${demo.streamIds.length} events after id ${demo.snapshotId}`;
  if (!same) {
    const at = expected.findIndex((id, i) => id !== demo.streamIds[i]);
    detail += `; first difference at ${at}: expected ${expected[at]}, got ${
      demo.streamIds[at]
    }`;
  }
  check(`${name}: stream ids equal the server's history`, same, detail);
  check(
    `${name}: no duplicates counted by the page`,
    demo.duplicates === 0,
    `duplicates ${demo.duplicates}`,
  );
}

async function main(): Promise<number> {
  const dataDir = mkdtempSync(join(tmpdir(), "ssekit-demo-"));
  mkdirSync(OUTPUT, { recursive: true });
  let server: Server | undefined;
  let browser: Browser | undefined;
  try {
    server = await startServer(0, dataDir);
    const port = server.port;
    const url = `http://127.0.0.1:${port}/`;
    console.log(`demo server on ${url} (history in ${dataDir})`);

    browser = await launchChromium();
    const context = await browser.newContext({
      viewport: { width: 1280, height: 860 },
    });
    const tabs = [await context.newPage(), await context.newPage()];
    const pageErrors: string[] = [];
    // Console errors and failed requests while the server is up (a missing
    // /favicon.ico shows as both); the restart below is meant to cause some.
    const loadErrors: string[] = [];
    let serverUp = true;
    for (const tab of tabs) {
      tab.on("pageerror", (error) => pageErrors.push(error.message));
      tab.on("console", (message) => {
        if (serverUp && message.type() === "error") {
          loadErrors.push(`console: ${message.text()}`);
        }
      });
      tab.on("response", (response) => {
        if (serverUp && response.status() >= 400) {
          loadErrors.push(`${response.status()} ${response.url()}`);
        }
      });
      // Tab one's first stream opens 700 ms after its snapshot, so at least
      // one tick (every 500 ms) is published in between: on a first load it
      // is new to the page, not a replay on resume. (Tab two loads without
      // interception, as a browser does: routing can change what it fetches.)
      if (tab === tabs[0]) {
        await tab.route("**/events*", async (route) => {
          await new Promise((resolve) => setTimeout(resolve, 700));
          await route.continue();
        }, { times: 1 });
      }
      await tab.goto(url);
    }
    const [one, two] = tabs as [Page, Page];
    for (const tab of tabs) {
      await waitFor(tab, (d) => d.state === "OPEN" && d.received >= 2);
    }
    check("both tabs open and receiving ticks", true);
    // A fresh load starts from a snapshot: nothing it shows is a resume.
    for (const [i, tab] of tabs.entries()) {
      const demo = await state(tab);
      const shown = await tab.$$eval(
        ["#replayed", "#reconnects"].join(","),
        (nodes) => nodes.map((node) => node.textContent),
      );
      check(
        `${
          i === 0 ? "tab one" : "tab two"
        }: a fresh load shows replayed 0, reconnects 0`,
        demo.replayed === 0 && demo.reconnects === 0 &&
          shown.join(",") === "0,0",
        `replayed ${demo.replayed}, reconnects ${demo.reconnects}, shown ${shown}`,
      );
    }

    // Chat: sent from tab one, shown in both under the same id.
    const hello = `hello from tab one ${Date.now()}`;
    await one.fill("#text", hello);
    await one.click("#chat-form button[type=submit]");
    const seenHello: string[] = [];
    for (const tab of tabs) {
      await tab.waitForSelector(`#messages li:has-text("${hello}")`, {
        timeout: WAIT_MS,
      });
      const shown = await chatShown(tab);
      seenHello.push(...shown.filter((m) => m.text === hello).map((m) => m.id));
    }
    check(
      "a chat message sent from tab one appears once in each tab, same id",
      seenHello.length === 2 && seenHello[0] === seenHello[1],
      `ids ${seenHello.join(", ")}`,
    );

    // Kill the server hard; both tabs notice and start reconnecting.
    const before = await Promise.all(tabs.map(state));
    check(
      "no console error or failed request while the server is up",
      loadErrors.length === 0,
      loadErrors.join("; "),
    );
    const favicon = await fetch(`${url}favicon.ico`);
    await favicon.body?.cancel();
    check("GET /favicon.ico answers", favicon.ok, `${favicon.status}`);
    serverUp = false;
    await kill(server);
    for (const tab of tabs) await waitFor(tab, (d) => d.state !== "OPEN");
    check("both tabs notice the server is gone", true);
    // Stay down a moment so the outage shows as a band on the chart in the
    // screenshot (nothing is timed or asserted here).
    await new Promise((resolve) => setTimeout(resolve, 1500));

    // Same port, same history file: a new process.
    server = await startServer(port, dataDir);
    const restartNotice = `(pid ${server.child.pid});`;
    // Posted while the tabs may still be reconnecting: whether it reaches
    // them live or by replay, each must get it once.
    const during = `posted during the reconnect ${Date.now()}`;
    const posted = await fetch(`${url}chat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "browser_check", text: during }),
    });
    check("POST /chat on the restarted server", posted.ok, `${posted.status}`);
    for (const [i, tab] of tabs.entries()) {
      await waitFor(
        tab,
        (d, opens) => d.state === "OPEN" && d.opens > Number(opens),
        String(before[i]!.opens),
      );
      await tab.waitForSelector(`#messages li:has-text("${during}")`, {
        timeout: WAIT_MS,
      });
      await tab.waitForSelector(
        `#messages li:has-text("${restartNotice}")`,
        { timeout: WAIT_MS },
      );
    }
    check(
      "both tabs reconnect to the restarted server and get the messages " +
        "published since their last id (the restart notice only by replay)",
      true,
    );

    // Tab two drops its stream by hand and resumes via ?lastEventId=.
    await two.click("#drop");
    await waitFor(two, (d) => d.state === "OPEN" && d.opens >= 3);
    // Let a few more ticks through on both sides of everything.
    const target = (await state(one)).received + 6;
    await waitFor(one, (d, n) => d.received >= Number(n), String(target));
    await waitFor(two, (d, n) => d.received >= Number(n), String(target - 6));

    const history = historyIds(dataDir);
    for (const [i, tab] of tabs.entries()) {
      const demo = await state(tab);
      const name = i === 0 ? "tab one" : "tab two";
      checkStream(name, demo, history);
      const shown = await chatShown(tab);
      const ids = shown.map((m) => m.id);
      check(
        `${name}: every chat message shown once`,
        new Set(ids).size === ids.length &&
          shown.filter((m) => m.text === hello).length === 1 &&
          shown.filter((m) => m.text === during).length === 1,
        `${ids.length} messages, ids ${ids.join(",")}`,
      );
      // Published before the new server listened, so it can only have come
      // over the stream by replay after the tab's Last-Event-ID; a `reset`
      // would mean the history did not reach back across the restart.
      const notice = shown.find((m) => m.text.includes(restartNotice));
      check(
        `${name}: resumed across the restart (the restart notice came by replay, no reset)`,
        notice !== undefined && demo.streamIds.includes(notice.id) &&
          demo.resets === 0,
        `notice ${notice?.id}, resets ${demo.resets}, replayed ${demo.replayed}, reconnects ${demo.reconnects}`,
      );
    }
    check("no page errors", pageErrors.length === 0, pageErrors.join("; "));

    const screenshot = join(OUTPUT, "demo.png");
    await one.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  } catch (error) {
    check("browser check ran to the end", false, String(error));
    if (server) console.log(`server output:\n${server.output()}`);
  } finally {
    await browser?.close();
    if (server) await kill(server);
    rmSync(dataDir, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r.ok).length;
  console.log(
    `demo browser check: ${results.length - failed} passed, ${failed} failed`,
  );
  return failed === 0 ? 0 : 1;
}

process.exit(await main());
