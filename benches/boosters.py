"""LightGBM and XGBoost (PyPI) on the training windows `cartflow bench boosters
--out DIR` wrote, with the same work as cartflow's forust run: fixed trees,
depth 6, learning rate 0.1, histogram splits, all cores. Prints one line each."""
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import log_loss, roc_auc_score

directory, rounds = sys.argv[1], int(sys.argv[2])
train = pd.read_csv(f"{directory}/train.csv")
valid = pd.read_csv(f"{directory}/valid.csv")
x_train, y_train = train.drop(columns="label").to_numpy(np.float64), train["label"].to_numpy()
x_valid, y_valid = valid.drop(columns="label").to_numpy(np.float64), valid["label"].to_numpy()


def report(name, seconds, p):
    print(f"{name:<10} {seconds:8.2f} s  validation AUC {roc_auc_score(y_valid, p):.4f}  log loss {log_loss(y_valid, p):.4f}")


started = time.perf_counter()
model = lgb.train(
    {"objective": "binary", "learning_rate": 0.1, "max_depth": 6, "num_leaves": 63, "min_sum_hessian_in_leaf": 1.0,
     "lambda_l2": 1.0, "max_bin": 255, "verbose": -1},
    lgb.Dataset(x_train, y_train),
    num_boost_round=rounds,
)
report("lightgbm", time.perf_counter() - started, model.predict(x_valid))

started = time.perf_counter()
booster = xgb.train(
    {"objective": "binary:logistic", "eta": 0.1, "max_depth": 6, "min_child_weight": 1.0, "lambda": 1.0,
     "tree_method": "hist", "max_bin": 256},
    xgb.DMatrix(x_train, y_train),
    num_boost_round=rounds,
)
report("xgboost", time.perf_counter() - started, booster.predict(xgb.DMatrix(x_valid)))
