// Hono: EventEndpoint works with any framework built on web Request/Response.
// Run: deno run -A examples/hono.ts
import { Hono } from "hono";
import { EventEndpoint } from "ssekit";

export const app = new Hono();

app.get("/events", (c) => {
  const endpoint = new EventEndpoint(c.req.raw, {
    headers: { "Access-Control-Allow-Origin": "*" },
  });
  endpoint.sendEvent("greeting", `hello from ${c.req.path}`);
  return endpoint.response!;
});

if (import.meta.main) Deno.serve({ port: 8000 }, app.fetch);
