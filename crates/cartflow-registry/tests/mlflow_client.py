"""MLflow's own Python client against a tracking server: experiments, runs,
params, metrics, tags, artifacts, the model registry and aliases, search.
Usage: mlflow_client.py TRACKING_URI WORKDIR. Prints "ok" when all held."""
import os
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

uri, work = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
client = MlflowClient()

experiment = mlflow.set_experiment("ci-mlflow-client")
assert client.get_experiment_by_name("ci-mlflow-client").experiment_id == experiment.experiment_id

notes = os.path.join(work, "notes.txt")
with open(notes, "w") as f:
    f.write("cart to purchase\n")

with mlflow.start_run(run_name="first") as first:
    mlflow.log_param("max_depth", 6)
    mlflow.log_params({"learning_rate": 0.1, "booster": "forust"})
    mlflow.log_metric("roc_auc", 0.81, step=1)
    mlflow.log_metrics({"roc_auc": 0.83, "log_loss": 0.42}, step=2)
    mlflow.set_tag("team", "cart")
    mlflow.log_artifact(notes)
    mlflow.log_artifact(notes, artifact_path="docs")
with mlflow.start_run(run_name="second"):
    mlflow.log_param("max_depth", 3)
    mlflow.log_metric("roc_auc", 0.71)

run = client.get_run(first.info.run_id)
assert run.info.status == "FINISHED", run.info.status
assert run.data.params == {"max_depth": "6", "learning_rate": "0.1", "booster": "forust"}, run.data.params
assert run.data.metrics == {"roc_auc": 0.83, "log_loss": 0.42}, run.data.metrics
assert run.data.tags["team"] == "cart"
history = client.get_metric_history(run.info.run_id, "roc_auc")
assert [(m.step, m.value) for m in history] == [(1, 0.81), (2, 0.83)], history

# A param cannot change.
try:
    client.log_param(run.info.run_id, "max_depth", 7)
    raise AssertionError("changing a param was accepted")
except MlflowException as e:
    assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code

# Artifacts: listed and read back.
names = sorted(a.path for a in client.list_artifacts(run.info.run_id))
assert names == ["docs", "notes.txt"], names
assert [a.path for a in client.list_artifacts(run.info.run_id, "docs")] == ["docs/notes.txt"]
local = client.download_artifacts(run.info.run_id, "docs/notes.txt", work)
assert open(local).read() == "cart to purchase\n"

# Search with a filter and an order.
found = client.search_runs([experiment.experiment_id], "metrics.roc_auc > 0.7", order_by=["metrics.roc_auc DESC"])
assert [r.info.run_name for r in found] == ["first", "second"], [r.info.run_name for r in found]
found = client.search_runs([experiment.experiment_id], "params.max_depth = '3' and tags.`mlflow.runName` LIKE 'sec%'")
assert [r.info.run_name for r in found] == ["second"]
page = client.search_runs([experiment.experiment_id], max_results=1)
assert len(page) == 1 and page.token, "paging"

# The model registry and aliases.
name = "ci_purchase_prediction_model"
client.create_registered_model(name, description="from the mlflow client test")
v1 = client.create_model_version(name, f"{run.info.artifact_uri}/docs", run.info.run_id)
v2 = client.create_model_version(name, f"{run.info.artifact_uri}/docs", run.info.run_id)
assert (v1.version, v2.version) == ("1", "2"), (v1.version, v2.version)
client.set_registered_model_alias(name, "champion", v1.version)
assert client.get_model_version_by_alias(name, "champion").version == "1"
client.set_registered_model_alias(name, "champion", v2.version)
assert client.get_model_version_by_alias(name, "champion").version == "2"
model = client.get_registered_model(name)
assert model.aliases == {"champion": "2"}, model.aliases
versions = client.search_model_versions(f"name = '{name}'")
assert sorted(v.version for v in versions) == ["1", "2"]
client.delete_registered_model_alias(name, "champion")
try:
    client.get_model_version_by_alias(name, "champion")
    raise AssertionError("a deleted alias still resolved")
except MlflowException:
    pass
try:
    client.create_registered_model(name)
    raise AssertionError("a duplicate model was accepted")
except MlflowException as e:
    assert e.error_code == "RESOURCE_ALREADY_EXISTS", e.error_code

# Without its token, or with one that may only read, the client says why in MLflow's words.
token = os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
if token is not None:
    try:
        client.search_experiments()
        raise AssertionError("a call without a token was answered")
    except MlflowException as e:
        assert e.error_code == "UNAUTHENTICATED", e.error_code
    os.environ["MLFLOW_TRACKING_TOKEN"] = os.environ["CARTFLOW_TEST_READ_TOKEN"]
    assert client.get_registered_model(name).name == name
    try:
        client.delete_registered_model(name)
        raise AssertionError("a read-only token deleted a model")
    except MlflowException as e:
        assert e.error_code == "PERMISSION_DENIED", e.error_code
    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    assert client.get_registered_model(name).name == name
print("ok")
