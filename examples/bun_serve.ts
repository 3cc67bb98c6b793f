// Bun.serve (Bun serves the default export).
// Run: bun examples/bun_serve.ts, then open http://localhost:8000
//
// Bun closes a connection that is idle for 10 s (`idleTimeout`), and a quiet
// event stream counts as idle. EventEndpoint writes a heartbeat comment after
// 5 s without other writes (the `heartbeat` option), which keeps it open.
import process from "node:process";
import { EventEndpoint } from "ssekit";

export default {
  port: Number(process.env.PORT ?? 8000),
  fetch(request: Request): Response {
    const endpoint = new EventEndpoint(request, { heartbeat: 5000 });
    endpoint.send("connected");
    const timer = setInterval(() => endpoint.send("still here"), 30_000);
    endpoint.addEventListener("close", () => clearInterval(timer));
    return endpoint.response!;
  },
};
