// Fastify (node req/res): reply.hijack() hands the raw response to the
// endpoint, so Fastify neither sends its own reply nor runs onSend hooks
// (such as @fastify/compress) over the stream.
// Run: node examples/fastify.ts, then open http://localhost:8000/events
import Fastify from "fastify";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export const app = Fastify();

app.get("/events", (request, reply) => {
  reply.hijack();
  const endpoint = new EventEndpoint(request.raw, reply.raw);
  let n = Number(endpoint.lastEventId || 0);
  const tick = () => endpoint.sendEvent("tick", `fastify ${++n}`, String(n));
  tick();
  const timer = setInterval(tick, 1000);
  endpoint.addEventListener("close", () => clearInterval(timer));
});

if (import.meta.main) {
  await app.listen({ port: Number(process.env.PORT ?? 8000) });
}
