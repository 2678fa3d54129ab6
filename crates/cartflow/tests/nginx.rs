//! The shipped nginx configuration (deploy/nginx/cartflow.conf) on Debian's
//! real nginx, in front of two real `cartflow serve` replicas and a registry,
//! as compose runs them: HTTPS answers, and a replica killed under load costs
//! no request.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The shipped configuration with compose's addresses, ports and paths
/// replaced by this test's; each must be found, so a change to the file
/// cannot leave the test checking something else.
fn configure_nginx(d: &Path, replicas: [u16; 2], registry: u16, https: u16, http: u16) -> std::path::PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/cartflow.conf");
    let mut conf = std::fs::read_to_string(shipped).unwrap();
    let tls = format!("{}/", d.join("tls").display());
    let logs = format!("{}/", d.display());
    for (from, to) in [
        ("serve-1:8000", format!("127.0.0.1:{}", replicas[0])),
        ("serve-2:8001", format!("127.0.0.1:{}", replicas[1])),
        ("registry:5001", format!("127.0.0.1:{registry}")),
        ("listen 443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
        ("listen [::]:443 ssl;", String::new()),
        ("listen 80;", format!("listen 127.0.0.1:{http};")),
        ("listen [::]:80;", String::new()),
        ("/etc/nginx/tls/", tls),
        ("/var/log/nginx/", logs),
    ] {
        assert!(conf.contains(from), "deploy/nginx/cartflow.conf no longer has {from}");
        conf = conf.replace(from, &to);
    }
    std::fs::write(d.join("cartflow.conf"), conf).unwrap();
    let temp = d.join("nginx-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let main = d.join("nginx.conf");
    std::fs::write(
        &main,
        format!(
            "daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
             fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  \
             include {d}/cartflow.conf;\n}}\n",
            d = d.display(),
            t = temp.display()
        ),
    )
    .unwrap();
    main
}

/// `curl` over HTTPS, checking the server's certificate: (status, body).
fn curl(cert: &Path, url: &str, token: &str, body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-w", "\n%{http_code}", "--cacert"]).arg(cert);
    c.args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        c.args(["--data", b]);
    }
    let out = c.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_owned())
}

#[test]
fn nginx_terminates_tls_and_a_replica_killed_under_load_costs_no_request() {
    if !(command("nginx", "nginx") && command("wrk", "wrk")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A champion in the data directory's registry, features in Redis.
    ok(cartflow(d).args(["run", "--once", "--events", "40000"]));
    let keys = RedisPrefix::new("nginx");
    let with_redis = |c: &mut Command| {
        c.env("CARTFLOW_FEATURES__REDIS_PREFIX", &keys.prefix).env("CARTFLOW_FEATURES__ONLINE", &keys.url);
    };
    let mut stream = cartflow(d);
    with_redis(&mut stream);
    ok(stream.args(["features", "stream", "--drain"]));
    let token = std::fs::read_to_string(d.join("data/auth/token")).unwrap().trim().to_owned();

    // The registry, and two replicas following its champion.
    let registry_port = free_port();
    let mut cmd = cartflow(d);
    cmd.args(["registry", "serve", "--addr", &format!("127.0.0.1:{registry_port}")]);
    let _registry = Server::start(cmd, registry_port, "/health", Duration::from_secs(60), &d.join("registry.log"));
    let replica_ports = [free_port(), free_port()];
    let mut replicas: Vec<Server> = replica_ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut cmd = cartflow(d);
            with_redis(&mut cmd);
            cmd.env("CARTFLOW_REGISTRY__URL", format!("http://127.0.0.1:{registry_port}"))
                .env("MLFLOW_TRACKING_TOKEN", &token)
                .args(["serve", "--addr", &format!("127.0.0.1:{port}")]);
            Server::start(cmd, *port, "/health", Duration::from_secs(60), &d.join(format!("serve-{i}.log")))
        })
        .collect();
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    for r in &replicas {
        let started = Instant::now();
        while agent
            .get(format!("{}/ready", r.url))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap()
            .status()
            != 200
        {
            assert!(started.elapsed() < Duration::from_secs(60), "{} never loaded the champion", r.url);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let (cert, _) = self_signed(&d.join("tls"));
    let (https, http) = (free_port(), free_port());
    let main = configure_nginx(d, replica_ports, registry_port, https, http);
    let check = Command::new("nginx").arg("-t").arg("-c").arg(&main).output().unwrap();
    assert!(check.status.success(), "nginx -t: {}", String::from_utf8_lossy(&check.stderr));
    let log = std::fs::File::create(d.join("nginx.out")).unwrap();
    let nginx = Command::new("nginx").arg("-c").arg(&main).stdout(log.try_clone().unwrap()).stderr(log).spawn();
    // Stopped however the test ends (a Server kills its process tree when dropped).
    let _nginx = Server { child: nginx.unwrap(), url: String::new() };
    let origin = format!("https://127.0.0.1:{https}");
    let started = Instant::now();
    while curl(&cert, &format!("{origin}/health"), "", None).0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "nginx did not answer over HTTPS");
        std::thread::sleep(Duration::from_millis(100));
    }

    // One origin: predictions, the registry's API and UI; plain HTTP is sent to HTTPS.
    let cart = read_topic(d, VALIDATED)
        .into_iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.value).ok())
        .find(|e| e["event_type"] == "cart")
        .unwrap();
    let body = serde_json::json!([{ "user_id": cart["user_id"], "product_id": cart["product_id"],
        "user_session": cart["user_session"], "price": cart["price"] }])
    .to_string();
    let (status, answer) = curl(&cert, &format!("{origin}/predict"), &token, Some(&body));
    assert!(status == 200 && answer.contains("\"probability\""), "{status} {answer}");
    let models = format!("{origin}/api/2.0/mlflow/registered-models/get?name=purchase_prediction_model");
    let (status, answer) = curl(&cert, &models, &token, None);
    assert!(status == 200 && answer.contains("champion"), "{status} {answer}");
    assert_eq!(curl(&cert, &format!("{origin}/ui/models"), &token, None).0, 200);
    assert_eq!(curl(&cert, &format!("{origin}/predict"), "not-a-token", Some(&body)).0, 401);
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .arg(format!("http://127.0.0.1:{http}/predict"))
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    assert!(plain.starts_with("308 https://"), "{plain}");

    // wrk over HTTPS for 12 s, eight connections; one replica SIGKILLed 4 s in.
    let script = d.join("predict.lua");
    wrk_post_script(&script, &body, &token);
    let load = Command::new("wrk")
        .args(["-t", "2", "-c", "8", "-d", "12s", "--latency", "--timeout", "5s", "-s"])
        .arg(&script)
        .arg(format!("{origin}/predict"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let killed = &mut replicas[0];
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let out = load.wait_with_output().unwrap();
    let report = WrkReport::parse(&String::from_utf8_lossy(&out.stdout));
    println!("{}", report.text);
    assert!(report.requests > 500, "{}", report.text);
    let log = std::fs::read_to_string(d.join("cartflow.access.log")).unwrap();
    let failed: Vec<&str> = log.lines().filter(|l| !l.contains("\" 200 ")).collect();
    assert!(
        report.failed == 0,
        "requests failed: {}\n{}",
        report.text,
        failed[failed.len().saturating_sub(5)..].join("\n")
    );
    let requests = report.requests;

    // The access log names the request id and the replica that answered, both before the kill.
    let predicted: Vec<&str> = log.lines().filter(|l| l.contains("POST /predict")).collect();
    assert!(predicted.len() as u64 >= requests, "{} logged of {requests}", predicted.len());
    for port in replica_ports {
        assert!(predicted.iter().any(|l| l.contains(&format!("upstream=127.0.0.1:{port}"))), "no answer from {port}");
    }
    // The requests the killed replica could not answer went to the other one.
    let retried = format!("upstream=127.0.0.1:{}, 127.0.0.1:{}", replica_ports[0], replica_ports[1]);
    assert!(predicted.iter().any(|l| l.contains(&retried) && l.contains("\" 200 ")), "no request retried");
    let rid = predicted[0].rsplit("rid=").next().unwrap();
    assert!(rid.len() == 32 && rid.chars().all(|c| c.is_ascii_hexdigit()), "{}", predicted[0]);
}

/// The report reader the load tests rely on (common::WrkReport).
#[test]
fn wrk_reports_read_back() {
    let r = WrkReport::parse(
        "  Latency Distribution\n     50%    2.30ms\n     99%    1.20s\n  38400 requests in 12.00s, 10.00MB read\n  \
         Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 12\n",
    );
    assert_eq!((r.requests, r.failed, r.p99_ms), (38_400, 15, 1200.0));
}
