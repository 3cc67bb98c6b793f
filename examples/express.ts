// Express (node req/res): numbered ticks that resume from Last-Event-ID.
// Run: node examples/express.ts, then open http://localhost:8000/events
//
// compression() leaves the stream alone: EventEndpoint sends
// `Cache-Control: no-transform`, which it respects.
import express from "express";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export const app: express.Express = express();

app.get("/events", (req, res) => {
  const endpoint = new EventEndpoint(req, res);
  let n = Number(endpoint.lastEventId || 0);
  const tick = () => endpoint.sendEvent("tick", `express ${++n}`, String(n));
  tick();
  const timer = setInterval(tick, 1000);
  endpoint.addEventListener("close", () => clearInterval(timer));
});

if (import.meta.main) app.listen(Number(process.env.PORT ?? 8000));
