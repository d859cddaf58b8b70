"""Renders chat-template cases with Python Jinja2 configured as transformers
configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, its tojson, raise_exception, strftime_now).

Not run by the tests (the pinned judge is @huggingface/jinja, render.mjs);
used to settle the cases where that engine departs from Jinja2. Usage:
python3 render_jinja2.py CASES.json TEMPLATE_DIR > OUT.json (jinja2 3.1.6)."""
import json, sys
from datetime import datetime
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import loopcontrols
from jinja2.exceptions import TemplateError

cases = json.load(open(sys.argv[1]))
tdir = sys.argv[2]

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

def raise_exception(message):
    raise TemplateError(message)

out = []
for c in cases:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    now = datetime.fromisoformat((c.get("now") or "2026-12-01T12:00:00Z").replace("Z", "+00:00"))
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
    t = env.from_string(open(f"{tdir}/{c['template']}").read())
    ctx = dict(c.get("tokens") or {})
    ctx.update(c.get("vars") or {})
    try:
        s = t.render(messages=c["messages"], tools=c.get("tools"), documents=None,
                     add_generation_prompt=bool(c.get("add_generation_prompt")), **ctx)
        out.append({"name": c["name"], "output": s})
    except Exception as e:
        out.append({"name": c["name"], "error": str(e)})
json.dump(out, sys.stdout, indent=1, ensure_ascii=False)
print()
