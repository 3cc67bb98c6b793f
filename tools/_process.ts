/**
 * The one way the check scripts run a command to completion: its output
 * collected, and a rejection carrying the end of that output when it fails.
 *
 * @module
 */

import { spawn } from "node:child_process";

/**
 * Runs `command args` in `cwd` with `env` and resolves with its output
 * (stdout and stderr, interleaved); rejects when it cannot start or exits
 * non-zero, with the command and the last 3000 characters of its output.
 */
export function runChecked(
  command: string,
  args: string[],
  cwd: string,
  env: Record<string, string | undefined>,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(output);
      else {
        reject(
          new Error(
            `${command} ${args.join(" ")} exited ${code}:\n${
              output.slice(-3000)
            }`,
          ),
        );
      }
    });
  });
}
