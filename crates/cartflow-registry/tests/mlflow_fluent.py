"""MLflow's fluent API as a data scientist uses it, against a tracking server:
an experiment, a parent run with nested child runs, params, metrics with
steps, artifacts in folders, a dataset input, a scikit-learn model and a
pyfunc model logged (MLflow 3's logged models), autolog, register_model,
aliases, models:/…@alias loading, search_runs with filters and orders,
search_registered_models, search_model_versions, stage transitions.
Usage: mlflow_fluent.py TRACKING_URI WORKDIR. Prints "ok" when all held.
The same script passes against `mlflow server` (tests/mlflow_client.rs)."""
import os
import sys
import warnings

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

warnings.filterwarnings("ignore")
uri, work = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
client = MlflowClient()
experiment = mlflow.set_experiment("ci-fluent")

rng = np.random.default_rng(7)
X = pd.DataFrame({"price": rng.uniform(1, 500, 400), "activity_count": rng.integers(1, 40, 400)})
y = (X["activity_count"] + rng.normal(0, 5, 400) > 20).astype(int)

reports = os.path.join(work, "reports")
os.makedirs(os.path.join(reports, "plots"), exist_ok=True)
with open(os.path.join(reports, "summary.md"), "w") as f:
    f.write("# cart model\n")
with open(os.path.join(reports, "plots", "roc.svg"), "w") as f:
    f.write("<svg xmlns='http://www.w3.org/2000/svg'/>")


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["price"] * 2


with mlflow.start_run(run_name="tuning") as parent:
    mlflow.log_param("features", "v2")
    mlflow.set_tags({"team": "cart", "stage": "ci"})
    for i, c in enumerate([0.01, 0.1, 1.0]):
        with mlflow.start_run(run_name=f"trial-{i}", nested=True):
            mlflow.log_params({"C": c, "max_iter": 200})
            for step in range(3):
                mlflow.log_metric("loss", 1.0 / (c * 10 + step + 1), step=step)
            mlflow.log_metric("auc", 0.6 + 0.1 * i)
    mlflow.log_artifacts(reports, artifact_path="reports")
    mlflow.log_text("trained on generated carts\n", "notes/readme.txt")
    mlflow.log_dict({"features": list(X.columns)}, "config/features.json")
    mlflow.log_input(mlflow.data.from_pandas(X.assign(label=y), name="carts", targets="label"), context="training")
    model = LogisticRegression(max_iter=200).fit(X, y)
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3))
    pyfunc_info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler(), input_example=X.head(2))

# The run and its children.
run = client.get_run(parent.info.run_id)
assert run.data.params == {"features": "v2"}, run.data.params
assert run.data.tags["team"] == "cart"
children = mlflow.search_runs(
    [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", order_by=["metrics.auc DESC"]
)
assert list(children["tags.mlflow.runName"]) == ["trial-2", "trial-1", "trial-0"], children
history = client.get_metric_history(children["run_id"][0], "loss")
assert [m.step for m in history] == [0, 1, 2], history
parents = mlflow.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId IS NULL", output_format="list")
assert [r.info.run_id for r in parents] == [parent.info.run_id], [r.info.run_name for r in parents]
children_only = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId IS NOT NULL")
assert len(children_only) == 3, len(children_only)
found = client.search_runs(
    [experiment.experiment_id], "params.C != '1.0' and metrics.auc >= 0.6", order_by=["attributes.start_time ASC"]
)
assert [r.info.run_name for r in found] == ["trial-0", "trial-1"], [r.info.run_name for r in found]
found = client.search_runs([experiment.experiment_id], "attributes.run_name ILIKE 'TRIAL-%'")
assert len(found) == 3, len(found)

# Artifacts in folders, listed and read back.
top = sorted(a.path for a in client.list_artifacts(parent.info.run_id))
assert {"reports", "notes", "config"} <= set(top), top
assert sorted(a.path for a in client.list_artifacts(parent.info.run_id, "reports")) == [
    "reports/plots",
    "reports/summary.md",
]
local = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="reports", dst_path=work)
assert open(os.path.join(local, "plots", "roc.svg")).read().startswith("<svg")
assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config/features.json") == {"features": ["price", "activity_count"]}
assert len(run.inputs.dataset_inputs) == 1 and run.inputs.dataset_inputs[0].dataset.name == "carts", run.inputs

# MLflow 3's logged models: the model is an entity with its own id and artifacts.
logged = mlflow.get_logged_model(info.model_id)
assert logged.name == "model" and logged.source_run_id == parent.info.run_id, logged
assert str(logged.status) in ("READY", "LoggedModelStatus.READY"), logged.status
models = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
assert {m.name for m in models} == {"model", "doubler"}, [m.name for m in models]
client.set_logged_model_tags(info.model_id, {"reviewed": "yes"})
assert mlflow.get_logged_model(info.model_id).tags["reviewed"] == "yes"
expected = model.predict_proba(X)[:, 1]
assert np.allclose(mlflow.sklearn.load_model(info.model_uri).predict_proba(X)[:, 1], expected)
assert np.allclose(mlflow.pyfunc.load_model(pyfunc_info.model_uri).predict(X.head(4)), X["price"].head(4) * 2)

# The registry: register from the run, aliases, loading by alias.
name = "ci_fluent_model"
mv = mlflow.register_model(f"runs:/{parent.info.run_id}/model", name)
assert mv.version == "1", mv.version
client.set_registered_model_alias(name, "champion", mv.version)
champion = mlflow.sklearn.load_model(f"models:/{name}@champion")
assert np.allclose(champion.predict_proba(X)[:, 1], expected)
mv2 = mlflow.register_model(pyfunc_info.model_uri, name, tags={"kind": "pyfunc"})
assert mv2.version == "2"
assert np.allclose(mlflow.pyfunc.load_model(f"models:/{name}/2").predict(X.head(3)), X["price"].head(3) * 2)
client.set_model_version_tag(name, "1", "validated", "true")

# Searching the registry as MLflow 3's client does (it always adds a prompt filter).
assert name in [m.name for m in client.search_registered_models()]
assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'ci_fl%'")] == [name]
assert client.search_registered_models(filter_string="name ILIKE 'CI_FLUENT%'")[0].aliases == {"champion": "1"}
assert client.search_registered_models(filter_string="name = 'nothing'") == []
versions = client.search_model_versions(f"name = '{name}' and tag.validated = 'true'")
assert [v.version for v in versions] == ["1"], [v.version for v in versions]
versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"])
assert [v.version for v in versions] == ["2", "1"], [v.version for v in versions]
# The pyfunc version came from a logged model alone: its run is the model's source run.
assert sorted(v.version for v in client.search_model_versions(f"run_id = '{parent.info.run_id}'")) == ["1", "2"]

# Stages, deprecated but still used.
client.transition_model_version_stage(name, "1", "Production")
client.transition_model_version_stage(name, "2", "Staging")
assert client.get_model_version(name, "1").current_stage == "Production"
assert [v.version for v in client.get_latest_versions(name, stages=["Production"])] == ["1"]
client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
assert client.get_model_version(name, "1").current_stage == "Archived"
assert np.allclose(mlflow.pyfunc.load_model(f"models:/{name}/Production").predict(X.head(2)), X["price"].head(2) * 2)

# Autolog: a fit inside a run logs its params, metrics and model.
mlflow.sklearn.autolog(log_input_examples=False, silent=True)
with mlflow.start_run(run_name="autolog") as auto:
    LogisticRegression(C=0.5, max_iter=100).fit(X, y)
mlflow.sklearn.autolog(disable=True)
auto_run = client.get_run(auto.info.run_id)
assert auto_run.data.params["C"] == "0.5", auto_run.data.params
assert "training_score" in auto_run.data.metrics, auto_run.data.metrics
auto_models = mlflow.search_logged_models(
    experiment_ids=[experiment.experiment_id], filter_string=f"source_run_id = '{auto.info.run_id}'", output_format="list"
)
assert len(auto_models) == 1, auto_models
assert mlflow.sklearn.load_model(f"models:/{auto_models[0].model_id}").get_params()["C"] == 0.5

# Errors the client understands.
try:
    client.get_registered_model("no_such_model")
    raise AssertionError("a missing model was found")
except MlflowException as e:
    assert e.error_code == "RESOURCE_DOES_NOT_EXIST", e.error_code
client.delete_logged_model_tag(info.model_id, "reviewed")
mlflow.delete_logged_model(pyfunc_info.model_id) if hasattr(mlflow, "delete_logged_model") else client.delete_logged_model(pyfunc_info.model_id)
left = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id], output_format="list")
assert pyfunc_info.model_id not in {m.model_id for m in left}
print("ok")
