// Validate an AsyncAPI document with @asyncapi/parser; print every diagnostic as JSON lines.
// Usage: node scripts/asyncapi-validate.mjs FILE   (exit 0: no diagnostics at all; 1 otherwise)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.resolve(".cache/asyncapi/package.json"));
const { Parser } = require("@asyncapi/parser");

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"), { source: file });
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
process.exit(document !== undefined && diagnostics.length === 0 ? 0 : 1);
