// A web-standard route handler, the shape Next.js (app/events/route.ts) and
// SvelteKit (src/routes/events/+server.ts) call with a Request.
// Run: node examples/route_handler.ts, then open http://localhost:8000/events
// (this file also serves itself with node:http so it runs on its own).
//
// Next.js: `dynamic = "force-dynamic"` keeps the route from being cached or
// prerendered; its gzip respects the endpoint's `Cache-Control: no-transform`.
// Behind nginx, `X-Accel-Buffering: no` (sent too) turns its buffering off.
import { createServer } from "node:http";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export const dynamic = "force-dynamic";

export function GET(request: Request): Response {
  const endpoint = new EventEndpoint(request);
  let n = Number(endpoint.lastEventId || 0);
  const tick = () => endpoint.sendEvent("tick", `route ${++n}`, String(n));
  tick();
  const timer = setInterval(tick, 1000);
  endpoint.addEventListener("close", () => clearInterval(timer));
  return endpoint.response!;
}

if (import.meta.main) {
  // A minimal adapter from node:http to the handler, as a framework does.
  createServer(async (req, res) => {
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    const response = GET(
      new Request(`http://localhost${req.url}`, {
        headers: req.headers as Record<string, string>,
        signal: controller.signal,
      }),
    );
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.flushHeaders();
    for await (const chunk of response.body!) res.write(chunk);
    res.end();
  }).listen(Number(process.env.PORT ?? 8000));
}
