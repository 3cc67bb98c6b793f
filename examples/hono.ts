// Hono: EventEndpoint works with any framework built on web Request/Response.
// Run: deno run -A examples/hono.ts, then open http://localhost:8000/events
import { Hono } from "hono";
import { EventEndpoint } from "@ssekit/sse";

export const app = new Hono();

app.get("/events", (c) => {
  const endpoint = new EventEndpoint(c.req.raw, {
    headers: { "Access-Control-Allow-Origin": "*" },
  });
  endpoint.sendEvent("greeting", `hello from ${c.req.path}`);
  return endpoint.response!;
});

if (import.meta.main) {
  Deno.serve({ port: Number(Deno.env.get("PORT") ?? 8000) }, app.fetch);
}
