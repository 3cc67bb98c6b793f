// node:http2 (compatibility API): EventEndpoint leaves out the connection
// headers HTTP/2 forbids. Browsers speak HTTP/2 only over TLS:
// Run: node examples/node_http2.ts key.pem cert.pem, then open
// https://localhost:8443
import {
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
} from "node:http2";
import { readFileSync } from "node:fs";
import process from "node:process";
import { EventEndpoint } from "ssekit";

export function handler(
  req: Http2ServerRequest,
  res: Http2ServerResponse,
): void {
  const endpoint = new EventEndpoint(req, res);
  endpoint.sendEvent("hello", `HTTP/${req.httpVersion}`);
  const timer = setInterval(
    () => endpoint.send(new Date().toISOString()),
    1000,
  );
  endpoint.addEventListener("close", () => clearInterval(timer));
}

if (import.meta.main) {
  const [key, cert] = process.argv.slice(2);
  createSecureServer(
    { key: readFileSync(key!), cert: readFileSync(cert!), allowHTTP1: true },
    handler,
  ).listen(8443);
}
