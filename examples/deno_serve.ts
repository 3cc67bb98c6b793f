// Deno.serve: a clock that pushes the time every second.
// Run: deno run -A examples/deno_serve.ts, then open http://localhost:8000
import { EventEndpoint } from "@ssekit/sse";

export function handler(request: Request): Response {
  const endpoint = new EventEndpoint(request);
  endpoint.send("connected");
  const timer = setInterval(() => {
    endpoint.sendEvent("time", new Date().toISOString());
  }, 1000);
  // Fires when the client goes away, too: no timer outlives its client.
  endpoint.addEventListener("close", () => clearInterval(timer));
  return endpoint.response!;
}

if (import.meta.main) {
  Deno.serve({ port: Number(Deno.env.get("PORT") ?? 8000) }, handler);
}
