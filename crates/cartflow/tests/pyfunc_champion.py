"""cartflow's champion as a data scientist loads it: MLflow's pyfunc, from
the registry, on a pandas DataFrame of the features that cartflow's feature
API gives for some carts; its probabilities must equal /predict's.
Usage: pyfunc_champion.py URL (serve's: registry and APIs on one address);
the token comes in MLFLOW_TRACKING_TOKEN. Prints "ok" when all held."""
import json
import os
import sys
import urllib.request

import mlflow
import numpy as np
import pandas as pd

url = sys.argv[1]
token = os.environ["MLFLOW_TRACKING_TOKEN"]
mlflow.set_tracking_uri(url)


def post(path, body):
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


carts = [
    {"user_id": 500 + i, "product_id": 1000 + i, "user_session": f"s-{i}", "event_time": "2019-10-03 12:00:00 UTC",
     "price": 20.0 + i, "brand": [None, "acme", "zeta"][i % 3], "category_code": "electronics.smartphone"}
    for i in range(12)
]
rows = [post("/features", cart)["features"] for cart in carts]
served = [p["probability"] for p in post("/predict", carts)["predictions"]]

model = mlflow.pyfunc.load_model("models:/purchase_prediction_model@champion")
frame = pd.DataFrame(rows)
scored = model.predict(frame)
assert np.allclose(scored, served, rtol=0, atol=1e-12), list(zip(scored, served))
decisions = model.predict(frame, params={"output": "decision"})
assert decisions.dtype == bool and len(decisions) == len(rows), decisions
# Columns the model does not read are ignored; a missing one counts as missing.
assert np.allclose(model.predict(frame.assign(unused=1)), scored, atol=1e-12)
info = mlflow.models.get_model_info("models:/purchase_prediction_model@champion")
assert "python_function" in info.flavors and info.signature is not None, info.flavors
print("ok")
