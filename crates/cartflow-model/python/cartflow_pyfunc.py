"""cartflow's purchase model as an MLflow python_function model.

`mlflow.pyfunc.load_model("models:/purchase_prediction_model@champion")`
loads it; `.predict(df)` takes a pandas DataFrame with one column per
feature (the names of `cartflow features list`; missing columns and None
count as missing) and returns each row's purchase probability, the same
numbers `POST /predict` answers for the same features. Needs numpy only: it
applies the encodings and walks the trees that model.json holds, exactly as
cartflow's server does (cartflow-model's `Encoding` and `Ensemble`).
"""
import json

import numpy as np

# A node whose feature is this is a leaf (cartflow-model's trees::LEAF).
LEAF = 2**32 - 1


def _is_missing(value):
    return value is None or (isinstance(value, float) and value != value)


def _encode(encoding, value):
    """One feature value as the number the trees split on."""
    if _is_missing(value):
        return float("nan")
    if encoding["kind"] == "number":
        if isinstance(value, str):
            return float("nan")
        return float(value)
    # purchase_rate: a category's smoothed purchase rate, the prior when unseen.
    if isinstance(value, str):
        return encoding["rates"].get(value, encoding["prior"])
    return encoding["prior"]


def _column(model_input, name, rows):
    if hasattr(model_input, "columns"):
        if name not in model_input.columns:
            return [None] * rows
        return model_input[name].tolist()
    return [row.get(name) for row in model_input]


class CartflowModel:
    def __init__(self, model):
        if model.get("format") != 1:
            raise ValueError(f"model.json format {model.get('format')}: this loader reads format 1")
        self.inputs = model["inputs"]
        self.threshold = model["threshold"]
        ensemble = model["ensemble"]
        self.base_score = float(ensemble["base_score"])
        self.roots = np.asarray(ensemble["roots"], dtype=np.int64)
        nodes = ensemble["nodes"]
        self.feature = np.asarray([n["f"] for n in nodes], dtype=np.int64)
        self.value = np.asarray([n["v"] for n in nodes], dtype=np.float64)
        self.left = np.asarray([n["l"] for n in nodes], dtype=np.int64)
        self.right = np.asarray([n["r"] for n in nodes], dtype=np.int64)
        self.missing = np.asarray([n["m"] for n in nodes], dtype=np.int64)
        self.leaf = self.feature == LEAF
        self.split_on = np.where(self.leaf, 0, self.feature)

    def encode(self, model_input):
        """The encoded inputs of each row, in the model's order."""
        rows = len(model_input)
        columns = [
            [_encode(i["encoding"], v) for v in _column(model_input, i["name"], rows)] for i in self.inputs
        ]
        return np.asarray(columns, dtype=np.float64).T.reshape(rows, len(self.inputs))

    def raw(self, x):
        """Log-odds: the base score plus each tree's leaf, tree by tree, as cartflow sums them."""
        rows = np.arange(len(x))
        total = np.full(len(x), self.base_score)
        for root in self.roots:
            at = np.full(len(x), root)
            while not self.leaf[at].all():
                v = x[rows, self.split_on[at]]
                step = np.where(np.isnan(v), self.missing[at], np.where(v < self.value[at], self.left[at], self.right[at]))
                at = np.where(self.leaf[at], at, step)
            total = total + self.value[at]
        return total

    def predict(self, model_input, params=None):
        """Each row's purchase probability; with params={"output": "decision"}, whether it is
        called a purchase (probability at or above the model's threshold)."""
        p = 1.0 / (1.0 + np.exp(-self.raw(self.encode(model_input))))
        if (params or {}).get("output") == "decision":
            return p >= self.threshold
        return p


def _load_pyfunc(path):
    with open(path) as f:
        return CartflowModel(json.load(f))
