/**
 * Runs the client side of the conversation with one `EventSource`
 * implementation and prints what it observed as one JSON line.
 *
 * Usage: `<runtime> interop/clients/source.ts <impl> <url> <deadline ms>`
 * where impl is `native` (the runtime's global `EventSource`: Deno's, or
 * Node's undici one under `--experimental-eventsource`) or `eventsource`
 * (the npm package).
 *
 * @module
 */

import process from "node:process";
import { type EventSourceClass, observeEventSource } from "../observe.ts";

const [impl, url, deadline] = process.argv.slice(2);
if (!url || !deadline || (impl !== "native" && impl !== "eventsource")) {
  console.error(
    "Usage: source.ts native|eventsource <url> <deadline ms>",
  );
  process.exit(2);
}

let EventSourceImpl: EventSourceClass;
if (impl === "native") {
  const native = (globalThis as { EventSource?: EventSourceClass })
    .EventSource;
  if (!native) {
    console.error(
      "This runtime has no global EventSource (Node needs --experimental-eventsource)",
    );
    process.exit(2);
  }
  EventSourceImpl = native;
} else {
  EventSourceImpl = (await import("eventsource")).EventSource;
}

const observation = await observeEventSource(
  EventSourceImpl,
  url,
  Number(deadline),
);
process.stdout.write(JSON.stringify(observation) + "\n");
// npm eventsource unrefs its timers, undici may keep sockets: exit now.
process.exit(0);
