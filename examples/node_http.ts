// node:http (also runs on Deno and Bun): numbered events that resume from the
// client's Last-Event-ID after a reconnect, then a final close.
// Run: node examples/node_http.ts, then open http://localhost:8000/events
import { createServer } from "node:http";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export const server = createServer((req, res) => {
  if (req.url !== "/events") {
    res.writeHead(404).end();
    return;
  }
  const endpoint = new EventEndpoint(req, res, { reconnectionTime: 1000 });
  // A reconnecting client sends the id of the last event it saw.
  let next = Number(endpoint.lastEventId || 0) + 1;
  const timer = setInterval(() => {
    const id = String(next++);
    endpoint.sendEvent("count", `event #${id}`, id);
    // A client that reconnects after this gets 204 No Content and stops.
    if (next > 5) endpoint.close(true);
  }, 100);
  endpoint.addEventListener("close", () => clearInterval(timer));
});

if (import.meta.main) server.listen(Number(process.env.PORT ?? 8000));
