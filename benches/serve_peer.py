"""The reference design's serving path, as a peer for `cartflow bench serve --python`:
FastAPI (uvicorn, one worker per core) answering the same POST /predict, features read from Redis
with redis-py, an XGBoost model scoring them.

To compare serving and not feature code, the peer gets the easy part: cartflow writes each sample
cart's finished, encoded feature vector (the values the online store computes at the cart's time),
and the peer only fetches it (one MGET per request) and scores it. Its model is XGBoost trained here
on the same encoded training rows: 100 trees of depth 6.

    python3 benches/serve_peer.py --redis redis://127.0.0.1:6379/0 --dir DIR --port 8100 --token T

DIR holds train.csv (inputs, label) and sample.csv (user_id, product_id, user_session, inputs).
Needs: pip install fastapi uvicorn redis xgboost numpy
"""

import argparse
import csv
import json
import math
import os
import sys

PREFIX = "cartflow-peer"


def key(user_id, product_id, session):
    return f"{PREFIX}:{user_id}:{product_id}:{session}"


def floats(cells):
    return [float(c) if c != "" else math.nan for c in cells]


def prepare(args):
    """Trains the booster and loads the sample's vectors into Redis, once, before the workers start."""
    import numpy as np
    import redis
    import xgboost as xgb

    with open(os.path.join(args.dir, "train.csv")) as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    x = np.array([floats(r[:-1]) for r in data])
    y = np.array([float(r[-1]) for r in data])
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist", "nthread": 1},
        xgb.DMatrix(x, label=y, missing=math.nan),
        num_boost_round=100,
    )
    booster.save_model(os.path.join(args.dir, "peer-model.json"))
    r = redis.Redis.from_url(args.redis)
    pipe = r.pipeline(transaction=False)
    with open(os.path.join(args.dir, "sample.csv")) as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            pipe.set(key(row[0], row[1], row[2]), json.dumps(floats(row[3:])), ex=3600)
    pipe.execute()
    return len(header) - 1


def make_app():
    """The app each uvicorn worker imports (configured by environment)."""
    import numpy as np
    import redis
    import xgboost as xgb
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    directory = os.environ["PEER_DIR"]
    token = os.environ["PEER_TOKEN"]
    inputs = int(os.environ["PEER_INPUTS"])
    booster = xgb.Booster()
    booster.load_model(os.path.join(directory, "peer-model.json"))
    booster.set_param({"nthread": 1})
    r = redis.Redis.from_url(os.environ["PEER_REDIS"])
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request):
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        items = await request.json()
        if not isinstance(items, list) or not items:
            raise HTTPException(status_code=400, detail="expected a list of cart events")
        found = r.mget([key(i["user_id"], i["product_id"], i.get("user_session")) for i in items])
        x = np.array([json.loads(v) if v is not None else [math.nan] * inputs for v in found])
        p = booster.inplace_predict(x, missing=math.nan)
        return {
            "predictions": [{"probability": float(v), "will_purchase": bool(v >= 0.5)} for v in p],
            "model": {"name": "peer", "version": "1", "alias": "champion"},
        }

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    inputs = prepare(args)
    os.environ.update(PEER_DIR=args.dir, PEER_TOKEN=args.token, PEER_INPUTS=str(inputs), PEER_REDIS=args.redis)
    import uvicorn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("serve_peer:make_app", factory=True, host="127.0.0.1", port=args.port, workers=args.workers,
                log_level="warning")
