// Koa (node req/res): `ctx.respond = false` leaves the response to the
// endpoint; Koa (and koa-compress) no longer touch it.
// Run: node examples/koa.ts, then open http://localhost:8000/events
import Koa from "koa";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export const app = new Koa();

app.use((ctx, next) => {
  if (ctx.path !== "/events") return next();
  ctx.respond = false;
  const endpoint = new EventEndpoint(ctx.req, ctx.res);
  let n = Number(endpoint.lastEventId || 0);
  const tick = () => endpoint.sendEvent("tick", `koa ${++n}`, String(n));
  tick();
  const timer = setInterval(tick, 1000);
  endpoint.addEventListener("close", () => clearInterval(timer));
});

if (import.meta.main) app.listen(Number(process.env.PORT ?? 8000));
