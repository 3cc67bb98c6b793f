// EventSource with fetch options: a fresh token on every (re)connection, a
// reconnect policy, and a signal that stops it.
// Run: node examples/event_source.ts http://localhost:8000/events
import process from "node:process";
import { EventSource } from "ssekit";

export function follow(
  url: string,
  getToken: () => Promise<string>,
  signal: AbortSignal,
): EventSource {
  const source = new EventSource(url, {
    headers: async () => ({ Authorization: `Bearer ${await getToken()}` }),
    reconnect: {
      initialDelay: 1000, // until the server sends `retry:`
      maxDelay: 30_000, // backoff cap after repeated failures
      maxAttempts: 10, // then readyState is CLOSED and `error` fires
    },
    signal, // aborting it closes the source
  });
  source.addEventListener("open", () => console.log("connected"));
  source.onmessage = (event) => console.log(event.lastEventId, event.data);
  return source;
}

if (import.meta.main) {
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  follow(
    process.argv[2]!,
    () => Promise.resolve("demo-token"),
    controller.signal,
  );
}
