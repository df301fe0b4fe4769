#!/usr/bin/env python3
"""Example client of the harness's exec protocol (README, "db: exec"): one op
per line of JSON on stdin, one result per line of JSON on stdout. Each op is
run by paxoskv's own `client` one-shot:  exec-client.py CLIENT ADDR [FLAGS...]"""
import json, subprocess, sys

client, addr, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
for line in sys.stdin:
    op = json.loads(line)
    f, key = op["f"], op["key"]
    expected = "-" if op.get("expected") is None else op["expected"]
    words = {"get": [key], "delete": [key], "put": [key, op.get("value")],
             "append": [key, op.get("value")], "cas": [key, expected, op.get("new")]}[f]
    p = subprocess.run([client, "--no-failover", *flags, "-a", addr, "--", f, *words],
                       capture_output=True, text=True)
    out, err = p.stdout.strip(), (p.stderr.strip() or p.stdout.strip())
    if p.returncode == 0 and out.startswith("FAILED"):    # CAS: value did not match
        result = {"type": "fail", "error": out}
    elif p.returncode == 0:
        result = {"type": "ok"}
        if f == "get":
            result["value"] = None if out == "(nil)" else out
    else:  # a failed GET changed nothing; others only if the client says so
        surely = f == "get" or "not applied" in err
        result = {"type": "fail" if surely else "info", "error": err}
    print(json.dumps(result), flush=True)
