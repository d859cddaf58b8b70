// Renders chat-template cases with @huggingface/jinja, the way transformers
// renders them (trim_blocks and lstrip_blocks are that engine's defaults;
// raise_exception and strftime_now are its built-ins).
//
// Usage: node render.mjs CASES.json TEMPLATE_DIR > GOLDENS.json
// CASES.json is a list of {name, template, messages, add_generation_prompt,
// tools, vars, tokens, now}; template names a file in TEMPLATE_DIR. The
// output has one {name, output} or {name, error} per case, in order.
import { Template } from "@huggingface/jinja";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [casesPath, templateDir] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(casesPath, "utf8"));
// The engine's strftime_now formats new Date() in local time: pin the zone
// and make the argument-less constructor return the case's "now".
process.env.TZ = "UTC";
const RealDate = Date;
let fixedNow = 0;
globalThis.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(fixedNow);
    else super(...args);
  }
  static now() { return fixedNow; }
};

const compiled = new Map();
const out = [];
for (const c of cases) {
  if (!compiled.has(c.template)) {
    compiled.set(c.template, new Template(readFileSync(join(templateDir, c.template), "utf8")));
  }
  fixedNow = RealDate.parse(c.now ?? "2026-12-01T12:00:00Z");
  const ctx = {
    ...(c.tokens ?? {}),
    ...(c.vars ?? {}),
    messages: c.messages,
    tools: c.tools ?? null,
    documents: null,
    add_generation_prompt: !!c.add_generation_prompt,
  };
  try {
    out.push({ name: c.name, output: compiled.get(c.template).render(ctx) });
  } catch (e) {
    out.push({ name: c.name, error: String(e.message ?? e) });
  }
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
