// Streaming an LLM completion: POST a prompt, read the SSE response with
// EventConsumer, and iterate over its events as they arrive.
// Run: node examples/llm_stream.ts http://localhost:8000/v1/completions
import process from "node:process";
import { EventConsumer } from "ssekit";

export async function* completion(
  url: string,
  prompt: string,
): AsyncGenerator<string> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt, stream: true }),
  });
  // Checks the status and content type; a wrong one is a clear TypeError.
  const consumer = new EventConsumer(response);
  for await (const event of consumer) {
    if (event.data === "[DONE]") break; // leaving the loop cancels the body
    yield JSON.parse(event.data).token;
  }
}

if (import.meta.main) {
  for await (const token of completion(process.argv[2]!, "Say hi")) {
    process.stdout.write(token);
  }
}
