//! `cartflow-bench` as `benches/*.sh` run it: every subcommand has help, and
//! `--json` prints positive rates a script can compare.

use std::process::Command;

use serde_json::Value;

fn bench(data_dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cartflow-bench"));
    c.arg("--data-dir").arg(data_dir).arg("--quiet").env_remove("CARTFLOW_CONFIG").env_remove("CARTFLOW_LOG");
    c
}

fn ok(c: &mut Command) -> std::process::Output {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [vec![], vec!["validate"], vec!["pipeline"], vec!["features"], vec!["boosters"], vec!["serve"]] {
        let out = ok(bench(dir.path()).args(&cmd).arg("--help"));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: cartflow-bench"), "{cmd:?}");
    }
}

#[test]
fn json_reports_rates() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["validate", "--events", "20000", "--json"],
        ["pipeline", "--events", "20000", "--json"],
        ["features", "--events", "20000", "--json"],
    ] {
        let v: Value = serde_json::from_slice(&ok(bench(dir.path()).args(args)).stdout).unwrap();
        let obj = v.as_object().unwrap();
        for (k, v) in obj {
            if v.is_number() {
                assert!(k.ends_with("_per_sec") && v.as_f64().unwrap() > 0.0, "{k}: {v}");
            }
        }
        assert!(obj.keys().any(|k| k.ends_with("_per_sec")), "{args:?}: {v}");
    }
}

#[test]
fn serve_without_a_champion_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path()).args(["serve", "--seconds", "1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cartflow run --once"), "{err}");
}
