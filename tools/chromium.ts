/**
 * Headless Chromium for the browser checks: Debian's build (or the one
 * `CHROMIUM` names), started by playwright-core with the flags this closed
 * network needs.
 *
 * @module
 */

import process from "node:process";
import { type Browser, chromium } from "playwright-core";

/** Where Chromium is: `CHROMIUM`, else Debian's `/usr/bin/chromium`. */
export const CHROMIUM_PATH: string = process.env.CHROMIUM ??
  "/usr/bin/chromium";

// Without the networking flags Chromium keeps dialling hosts that this closed
// network refuses; as root it needs --no-sandbox.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-quic",
  "--no-first-run",
  "--disable-sync",
];

/** Starts headless Chromium with a new, empty profile. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: FLAGS });
}
