// Elysia on Bun: return the endpoint's Response from the handler.
// Run: bun examples/elysia.ts, then open http://localhost:8000/events
import { Elysia } from "elysia";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export const app = new Elysia().get("/events", ({ request }) => {
  const endpoint = new EventEndpoint(request);
  let n = Number(endpoint.lastEventId || 0);
  const tick = () => endpoint.sendEvent("tick", `elysia ${++n}`, String(n));
  tick();
  const timer = setInterval(tick, 1000);
  endpoint.addEventListener("close", () => clearInterval(timer));
  return endpoint.response!;
});

if (import.meta.main) app.listen(Number(process.env.PORT ?? 8000));
