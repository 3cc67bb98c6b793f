// Bun.serve serves the default export; the heartbeat (a comment after 5 s of
// quiet) keeps Bun from closing the stream as idle (after 10 s).
// Run: bun examples/bun_serve.ts, then open http://localhost:8000
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
