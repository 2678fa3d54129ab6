//! The model as an MLflow model directory: `MLmodel` with a
//! `python_function` flavor whose loader (`code/cartflow_pyfunc.py`, numpy
//! only) applies the stored encodings and walks the stored trees, so
//! `mlflow.pyfunc.load_model("models:/…@champion").predict(df)` gives the
//! probabilities `/predict` gives for the same features. No I/O: the files
//! come back as bytes for the caller to upload.

use cartflow_features::spec::FeatureType;

use crate::Model;

/// The loader, shipped inside every model directory.
pub const LOADER: &str = include_str!("../python/cartflow_pyfunc.py");

/// Where the model is, for the `MLmodel` file.
pub struct Origin<'a> {
    /// The model's artifact location (`mlflow-artifacts:/…`).
    pub artifact_uri: &'a str,
    pub run_id: &'a str,
    /// MLflow 3's logged model id.
    pub model_id: &'a str,
    /// When it was made (RFC 3339, UTC).
    pub created: &'a str,
}

fn quoted(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("strings serialize")
}

/// MLflow's column spec of the model's inputs, typed as the catalogue types
/// them (MLflow refuses to widen an integer column to double): every one
/// optional, since missing is a value the trees learned.
fn input_schema(model: &Model) -> String {
    let columns: Vec<serde_json::Value> = model
        .inputs
        .iter()
        .map(|input| {
            let kind = match cartflow_features::spec::feature(&input.name).map(|d| d.dtype) {
                Some(FeatureType::String) => "string",
                Some(FeatureType::Int64) => "long",
                _ => "double",
            };
            serde_json::json!({ "type": kind, "name": input.name, "required": false })
        })
        .collect();
    serde_json::to_string(&columns).expect("JSON values serialize")
}

/// The `MLmodel` file.
pub fn mlmodel(model: &Model, origin: &Origin<'_>) -> String {
    let outputs = r#"[{"type": "double", "name": "probability", "required": true}]"#;
    let params = r#"[{"name": "output", "type": "string", "default": "probability", "shape": null}]"#;
    format!(
        "artifact_path: {uri}
flavors:
  python_function:
    code: code
    data: model.json
    env:
      virtualenv: python_env.yaml
    loader_module: cartflow_pyfunc
    python_version: '3.11'
  cartflow:
    feature_set: {set}
    format: {format}
    model_file: model.json
model_id: {id}
model_uuid: {id}
run_id: {run}
signature:
  inputs: {inputs}
  outputs: {outputs}
  params: {params}
utc_time_created: {created}
",
        uri = quoted(origin.artifact_uri),
        set = model.feature_set.service_name(),
        format = model.format,
        id = quoted(origin.model_id),
        run = quoted(origin.run_id),
        inputs = quoted(&input_schema(model)),
        outputs = quoted(outputs),
        params = quoted(params),
        created = quoted(origin.created),
    )
}

/// Every file of the model directory: (path inside it, bytes).
pub fn files(model: &Model, origin: &Origin<'_>) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("MLmodel", mlmodel(model, origin).into_bytes()),
        ("model.json", model.to_json()),
        ("code/cartflow_pyfunc.py", LOADER.as_bytes().to_vec()),
        ("requirements.txt", b"mlflow\nnumpy\n".to_vec()),
        (
            "python_env.yaml",
            b"python: '3.11'\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n".to_vec(),
        ),
    ]
}
