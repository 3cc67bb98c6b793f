// Several instances behind a load balancer: one channel on a Redis stream.
// An event published on any instance reaches the clients of all of them,
// and a client resumes exactly on whichever instance its reconnect lands
// (or gets a `reset` event when it was away longer than the stream keeps).
// Run: redis-server, then `PORT=8001 node examples/several_instances.ts`
// and `PORT=8002 bun examples/several_instances.ts`; stream from either
// (curl -N localhost:8001), publish on either (curl -d hi localhost:8002).
import { createServer, type Server } from "node:http";
import process from "node:process";
import { createClient } from "redis";
import { EventChannel, EventEndpoint } from "ssekit";
import { RedisStreamLog } from "ssekit/redis";

export async function startInstance(redisUrl: string): Promise<Server> {
  // No offline queue: a publish while Redis is down fails at once.
  const client = createClient({ url: redisUrl, disableOfflineQueue: true });
  // The blocking read (XREAD BLOCK) needs a connection of its own.
  const reader = client.duplicate();
  for (const c of [client, reader]) c.on("error", () => {}); // it reconnects
  await Promise.all([client.connect(), reader.connect()]);

  const log = await RedisStreamLog.open({
    key: "news",
    command: (args) => client.sendCommand(args),
    reader: (args) => reader.sendCommand(args),
  });
  const news = new EventChannel({ log });

  const server = createServer((req, res) => {
    if (req.method !== "POST") {
      // Replays what this client missed (its Last-Event-ID), then live.
      news.join(new EventEndpoint(req, res));
      return;
    }
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      // Resolves with the event's id once Redis has it; rejects (and is
      // not retried) when Redis cannot be reached.
      news.publish({ data: body }).then(
        (id) => res.end(id),
        () => res.writeHead(503).end(),
      );
    });
  });
  server.on("close", () => {
    log.close();
    client.destroy();
    reader.destroy();
  });
  return server;
}

if (import.meta.main) {
  const server = await startInstance(
    process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  );
  server.listen(Number(process.env.PORT ?? 8000), "127.0.0.1", () => {
    const { port } = server.address() as { port: number };
    console.log(`listening on http://127.0.0.1:${port}`);
  });
}
