#!/usr/bin/env python3
"""Renders testdata/cases.json with every template in templates.json using
Python Jinja2 configured as transformers' apply_chat_template does
(sandboxed, trim_blocks, lstrip_blocks, loopcontrols, json.dumps tojson,
raise_exception, strftime_now), and writes golden/<template>/<case>.txt.
The Go tests compare the package's rendering against these files.

    cd internal/chat/testdata && python3 render_reference.py
"""
import datetime
import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2025, 3, 4, 15, 4, 5)


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def env():
    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    e.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    return e


def content(c):
    if isinstance(c, list):
        return "".join(p["text"] for p in c if p["type"] == "text")
    return c


def messages(msgs, string_args):
    out = []
    for m in msgs:
        d = {"role": "system" if m["role"] == "developer" else m["role"], "content": content(m.get("content"))}
        if m.get("name"):
            d["name"] = m["name"]
        if m.get("reasoning_content"):
            d["reasoning_content"] = m["reasoning_content"]
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                args = c["function"]["arguments"]
                calls.append({"id": c["id"], "type": "function", "function": {
                    "name": c["function"]["name"],
                    "arguments": args if string_args else json.loads(args)}})
            d["tool_calls"] = calls
        if m.get("tool_call_id"):
            d["tool_call_id"] = m["tool_call_id"]
        out.append(d)
    return out


def tools(ts):
    if not ts:
        return None
    out = []
    for t in ts:
        f = {"name": t["function"]["name"]}
        if t["function"].get("description"):
            f["description"] = t["function"]["description"]
        f["parameters"] = t["function"].get("parameters") or {"type": "object", "properties": {}}
        out.append({"type": "function", "function": f})
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "templates.json")) as f:
        templates = json.load(f)
    with open(os.path.join(here, "cases.json")) as f:
        cases = json.load(f)
    e = env()
    for name, spec in sorted(templates.items()):
        with open(os.path.join(here, spec["file"])) as f:
            tmpl = e.from_string(f.read())
        os.makedirs(os.path.join(here, "golden", name), exist_ok=True)
        for case, c in sorted(cases.items()):
            ctx = dict(c.get("kwargs") or {})
            ctx.update(
                messages=messages(c["messages"], spec["string_args"]),
                tools=tools(c.get("tools")),
                add_generation_prompt=c.get("add_generation_prompt", True),
                bos_token=spec["bos"],
                eos_token=spec["eos"],
            )
            try:
                out = tmpl.render(**ctx)
            except TemplateError as err:
                out = "ERROR: " + str(err)
            except Exception as err:  # a template bug on this input, not a refusal
                out = "FAILURE: " + type(err).__name__
            with open(os.path.join(here, "golden", name, case + ".txt"), "w") as f:
                f.write(out)
    snippets(here)


SNIPPET_CTX = {
    "xs": [1, 2],
    "obj": {"z": "é <b> & \"q\"\n\t\u0001", "a": [1, 2.5, None, True], "emoji": "\U0001F600", "nested": {"k": {}}},
    "floats": [1.0, 0.1, 1e-05, 1e16, 123456789.125, -0.0, 1e300, 3.0e-7, 100.0],
}


def snippets(here):
    with open(os.path.join(here, "snippets.json")) as f:
        snips = json.load(f)
    e = env()
    out = []
    for s in snips:
        out.append(e.from_string(s["src"]).render(**SNIPPET_CTX))
    with open(os.path.join(here, "golden", "snippets.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
