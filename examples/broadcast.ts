// Broadcast and resume: every price encoded once for all clients; a client
// that reconnects gets exactly what it missed, then the live events.
// Run: node examples/broadcast.ts, then open http://localhost:8000 in two tabs
import { createServer } from "node:http";
import process from "node:process";
import { EventChannel, EventEndpoint, MemoryHistoryStore } from "ssekit";

// Keep the last 1000 events, none older than five minutes.
export const prices = new EventChannel({
  history: new MemoryHistoryStore({ maxCount: 1000, maxAge: 5 * 60_000 }),
});

export const server = createServer((req, res) => {
  // Leaves the channel by itself when the client goes away.
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
