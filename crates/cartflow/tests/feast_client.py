"""Feast's SDK against cartflow's feature API, as its users call it: a feature
repository (`cartflow features feast-repo`, then `feast apply`) whose remote
online store is cartflow, `FeatureStore.get_online_features(...).to_dict()`
with feature references, with the `cart_v1`/`cart_v2` feature services and
with full feature names; and an unknown entity asked of cartflow and of
Feast's own server (`feast serve`, SQLite online store, same definitions):
the same answer.
Usage: feast_client.py CARTFLOW_URL REPO FEAST_REPO CART_JSON, with the
token in FEAST_OIDC_TOKEN. Prints "ok" when all held."""
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request

from feast import FeatureStore

url, repo, feast_repo, cart_file = sys.argv[1:5]
token = os.environ["FEAST_OIDC_TOKEN"]
with open(cart_file) as f:
    cart = json.load(f)


def post(base, path, body, auth=True):
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12)
    return a == b


store = FeatureStore(repo_path=repo)
row = {k: cart[k] for k in ("user_id", "product_id", "user_session", "event_time", "price", "brand", "category_code") if cart.get(k) is not None}
expected = post(url, "/features", {**cart, "feature_service": "cart_v2"})["features"]

# The feature service, as Feast's users name it.
got = store.get_online_features(features=store.get_feature_service("cart_v2"), entity_rows=[row]).to_dict()
for name, value in expected.items():
    assert name in got, (name, sorted(got))
    assert same(got[name][0], value), (name, got[name], value)
v1 = store.get_online_features(features=store.get_feature_service("cart_v1"), entity_rows=[row]).to_dict()
features_v1 = set(v1) - {"user_id", "product_id", "user_session"}
assert features_v1 == {"price", "brand", "category_code_level1", "category_code_level2", "event_weekday", "activity_count"}, v1
# Feature references, two rows at once, full names.
refs = ["session_activity:activity_count", "user_history:user_prior_carts", "product_history:product_prior_carts"]
two = store.get_online_features(features=refs, entity_rows=[row, {**row, "user_id": 987654321}], full_feature_names=True).to_dict()
assert same(two["session_activity__activity_count"][0], expected["activity_count"]), two
assert same(two["user_history__user_prior_carts"][0], expected["user_prior_carts"]), two
assert two["user_history__user_prior_carts"][1] is None, two  # a shopper the store never saw

# An unknown entity: cartflow's answer and Feast's own server's, for the same request.
request = {
    "features": [
        "cart_event:price", "cart_event:brand", "cart_event:category_code_level1",
        "session_activity:activity_count", "session_activity:session_views",
        "user_history:user_prior_carts", "user_history:user_prior_sessions",
        "product_history:product_prior_carts", "product_history:product_conversion_rate",
    ],
    "entities": {"user_id": [987654321], "product_id": [987654321], "user_session": ["nobody-knows-this-session"]},
}
subprocess.run(["feast", "apply"], cwd=feast_repo, check=True, capture_output=True)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(
    ["feast", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
    cwd=feast_repo,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    start_new_session=True,
)
try:
    started = time.time()
    while True:
        try:
            theirs = post(f"http://127.0.0.1:{port}", "/get-online-features", request, auth=False)
            break
        except OSError:
            assert time.time() - started < 90, "feast serve did not start"
            time.sleep(0.5)
    ours = post(url, "/get-online-features", request)
    # Feast orders the features of a view as its sets happen to iterate: compare by name.
    by_name = lambda answer: dict(zip(answer["metadata"]["feature_names"], answer["results"]))
    ours, theirs = by_name(ours), by_name(theirs)
    assert sorted(ours) == sorted(theirs), (sorted(ours), sorted(theirs))
    assert list(ours)[:3] == list(theirs)[:3] == ["user_id", "product_id", "user_session"], (list(ours), list(theirs))
    for name in ours:
        for key in ("values", "statuses", "event_timestamps"):
            assert ours[name][key] == theirs[name][key], (name, key, ours[name][key], theirs[name][key])
finally:
    os.killpg(server.pid, 15)
    server.wait(timeout=30)
print("ok")
