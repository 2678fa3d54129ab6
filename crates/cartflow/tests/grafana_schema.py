"""Reads each shipped Grafana dashboard with Grafana's own SDK (grafana-foundation-sdk,
whose models are generated from Grafana's dashboard schema and its panel and Prometheus
query plugins) and writes it back: a key the schema does not know is dropped on the way,
and a value of the wrong shape changes. Prints one line per difference, then "ok" when
there was none. Usage: grafana_schema.py DASHBOARD.json..."""

import json
import sys

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard


def differences(ours, theirs, path):
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            yield f"{path}: an object became {theirs!r}"
            return
        for key, value in ours.items():
            if key not in theirs:
                yield f"{path}.{key}: not in Grafana's schema"
            else:
                yield from differences(value, theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            yield f"{path}: a list of {len(ours)} became {theirs!r}"
            return
        for i, (a, b) in enumerate(zip(ours, theirs)):
            yield from differences(a, b, f"{path}[{i}]")
    elif ours != theirs or type(ours) is not type(theirs):
        yield f"{path}: {ours!r} became {theirs!r}"


plugins.register_default_plugins()
found = 0
for name in sys.argv[1:]:
    with open(name) as f:
        ours = json.load(f)
    theirs = json.loads(JSONEncoder().encode(Dashboard.from_json(ours)))
    for line in differences(ours, theirs, ""):
        print(f"{name}: {line}")
        found += 1
if found == 0 and len(sys.argv) > 1:
    print("ok")
sys.exit(1 if found else 0)
