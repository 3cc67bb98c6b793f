import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { includedPaths, readProjectFile, renderReadme } from "./readme.ts";

describe("README.md", () => {
  test("quotes every included file exactly as it is", () => {
    const readme = readProjectFile("README.md");
    const stale = includedPaths(readme).filter((path) => {
      const block = renderReadme(
        `<!-- include: ${path} -->\n<!-- /include -->`,
        readProjectFile,
      );
      return !readme.includes(block);
    });
    assert.deepEqual(stale, [], "run `node tools/readme.ts` to refresh them");
  });

  test("an include block is refilled from its file", () => {
    const files: Record<string, string> = {
      "a.ts": "let a = 1;\n",
      "t.md": "<!-- generated -->\n\n# Results\n\n## On Deno\n\n| x |\n",
    };
    const readme = "# T\n<!-- include: a.ts -->\nold\n<!-- /include -->\n" +
      "<!-- include: t.md -->\n<!-- /include -->\n";
    assert.equal(
      renderReadme(readme, (path) => files[path]!),
      "# T\n<!-- include: a.ts -->\n\n```ts\nlet a = 1;\n```\n\n<!-- /include -->\n" +
        // A generated table loses its comment and title; its headings nest
        // under the README section that includes it.
        "<!-- include: t.md -->\n\n### On Deno\n\n| x |\n\n<!-- /include -->\n",
    );
  });
});
