// Broadcast and resume: every client gets every price, encoded once for all.
// A client that reconnects with Last-Event-ID (EventSource does it by itself)
// first gets exactly the events it missed, then the live ones.
// Run: node examples/broadcast.ts, then open http://localhost:8000 in two tabs
import { createServer } from "node:http";
import process from "node:process";
import { EventChannel, EventEndpoint, MemoryHistoryStore } from "ssekit";

// Keep the last 1000 events, none older than five minutes.
export const prices = new EventChannel({
  history: new MemoryHistoryStore({ maxCount: 1000, maxAge: 5 * 60_000 }),
});

export const server = createServer((req, res) => {
  // Replays what this client missed (its Last-Event-ID), then live events.
  // The endpoint leaves the channel by itself when the client goes away.
  prices.join(new EventEndpoint(req, res));
});

if (import.meta.main) {
  setInterval(() => {
    prices.publish({
      event: "price",
      data: JSON.stringify({ eur: Math.random() }),
    });
  }, 1000);
  server.listen(Number(process.env.PORT ?? 8000));
}
