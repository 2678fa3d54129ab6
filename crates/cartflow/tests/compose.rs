//! The deployment as a team runs it: the image the Dockerfile builds and the distributed system of
//! deploy/compose/compose.yaml, under Debian's podman and podman-compose (PyPI), with nginx in front.
//!
//! No image registry is reachable here, so the test makes what one would serve: the base image from
//! Debian's packages (`debootstrap --variant=minbase bookworm`, then `podman import`, cached in
//! podman's storage), the third-party services from Debian's packages and the tools .ci/run installs
//! (tests/compose/services.Containerfile, replacing their official images through
//! tests/compose/compose.test.yaml). cartflow's image is built from the Dockerfile as it is, but for
//! its `builder` stage: a named build context of that name holds the binary this test run already
//! built, where a release build would take an hour here. Every service runs in one network namespace the
//! test makes (compose.host.yaml with `ns:`), on its loopback, so nothing meets the host's PostgreSQL
//! and Redis and nothing leaves the machine.

#[path = "compose/chaos.rs"]
mod chaos;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const BASE_IMAGE: &str = "localhost/debian:bookworm-slim";
const CARTFLOW_IMAGE: &str = "localhost/cartflow-test/cartflow:latest";
const SERVICES_IMAGE: &str = "localhost/cartflow-test/services:latest";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn test_files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose")
}

/// podman as this sandbox runs it: runc, cgroupfs and explicit ulimits (tests/compose/containers.conf).
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", test_files().join("containers.conf"));
    c
}

fn image_exists(name: &str) -> bool {
    podman().args(["image", "exists", name]).status().is_ok_and(|s| s.success())
}

fn image_id(name: &str) -> Option<String> {
    let out = podman().args(["image", "inspect", "--format", "{{.Id}}", name]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `podman build` of `tag`, removing the image the tag named before when it changed, so that
/// runs on one machine do not pile up old images (the binary's alone is hundreds of MB).
fn build(tag: &str, args: &mut Command) {
    let before = image_id(tag);
    ok(args.args(["-t", tag]));
    if let Some(old) = before.filter(|old| image_id(tag).as_ref() != Some(old)) {
        let _ = podman().args(["rmi", &old]).output();
    }
}

/// The Dockerfile's base image, from Debian's packages, once per machine.
fn base_image(tmp: &Path) {
    if image_exists(BASE_IMAGE) {
        return;
    }
    let root = tmp.join("rootfs");
    ok(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg("http://deb.debian.org/debian"));
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ok(podman().args(["import", "-", BASE_IMAGE]).stdin(tar.stdout.take().unwrap()));
    assert!(tar.wait().unwrap().success(), "tar of {} failed", root.display());
    std::fs::remove_dir_all(&root).unwrap();
}

/// cartflow's image from the Dockerfile, with the binary of this test run in the builder stage's
/// place (a named build context of the same name: the stage is skipped).
fn cartflow_image(tmp: &Path) {
    let built = tmp.join("builder/usr/local/bin");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_cartflow"), built.join("cartflow")).unwrap();
    build(
        CARTFLOW_IMAGE,
        podman()
            // Docker's image format: OCI's, podman's default, has no HEALTHCHECK.
            .args(["build", "--quiet", "--format", "docker", "--network", "host"])
            .args(["--build-arg", &format!("RUNTIME_IMAGE={BASE_IMAGE}")])
            .arg(format!("--build-context=builder={}", tmp.join("builder").display()))
            .arg(repo()),
    );
}

/// The third-party services' image; rebuilt only when its recipe or the tools change.
fn services_image(tmp: &Path, tools: &[PathBuf]) {
    let context = tmp.join("services");
    std::fs::create_dir_all(&context).unwrap();
    for f in ["services.Containerfile", "pg-entrypoint"] {
        std::fs::copy(test_files().join(f), context.join(f)).unwrap();
    }
    for t in tools {
        std::fs::copy(t, context.join(t.file_name().unwrap())).unwrap();
    }
    build(
        SERVICES_IMAGE,
        podman()
            .args(["build", "--quiet", "--network", "host", "-f", "services.Containerfile"])
            .args(["--build-arg", &format!("BASE={BASE_IMAGE}")])
            .current_dir(&context)
            .arg("."),
    );
}

/// A network namespace of the test's own, with its loopback up; deleted at the end.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("cartflow-compose-{}", std::process::id());
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        ok(&mut ns.exec(&["ip", "link", "set", "lo", "up"]));
        ns
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

/// One compose project: compose.yaml, compose.host.yaml and the test's override, from a copy of
/// deploy/ with its secrets; `down` with its volumes at the end.
struct Project {
    compose: PathBuf,
    dir: PathBuf,
    name: String,
    netns: String,
}

impl Project {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.compose);
        c.env("CONTAINERS_CONF", test_files().join("containers.conf"))
            .env("CARTFLOW_IMAGE", CARTFLOW_IMAGE)
            .env("SERVICES_IMAGE", SERVICES_IMAGE)
            .env("COMPOSE_NETWORK_MODE", format!("ns:/run/netns/{}", self.netns))
            .current_dir(&self.dir)
            .args(["-p", &self.name, "-f", "compose.yaml", "-f", "compose.host.yaml", "-f"])
            .arg(test_files().join("compose.test.yaml"));
        c
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.name)
    }

    /// `cartflow ARGS` inside a service's container: its environment, secrets and mounts.
    fn cartflow(&self, service: &str, args: &[&str]) -> String {
        let out = ok(podman().args(["exec", &self.container(service), "cartflow", "--quiet"]).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let out = ok(podman().args(["inspect", "--format", format, &self.container(service)]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// SIGKILLs the service's process, as the kernel's OOM killer or an abort would: a crash, which
    /// the restart policy answers (`podman kill` would count as a stop by the user, which it does not).
    fn crash(&self, service: &str) {
        let pid = self.inspect(service, "{{.State.Pid}}");
        assert_ne!(pid, "0", "{service} is not running");
        ok(Command::new("kill").args(["-KILL", &pid]));
    }

    /// Stops the service (SIGTERM, then SIGKILL after 10 s) and starts it again, as an operator's
    /// `restart` or an upgrade would.
    fn restart(&self, service: &str) {
        ok(podman().args(["restart", "--time", "10", &self.container(service)]));
    }

    /// Where a named volume's files are on this machine.
    fn volume(&self, name: &str) -> PathBuf {
        let out =
            ok(podman().args(["volume", "inspect", "--format", "{{.Mountpoint}}", &format!("{}_{name}", self.name)]));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// The last `lines` lines the service printed (stdout and stderr).
    fn logs(&self, service: &str, lines: u32) -> String {
        let out = podman().args(["logs", "--tail", &lines.to_string(), &self.container(service)]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// Waits until the image's own HEALTHCHECK (`cartflow health`) passes in the service's container.
    fn wait_healthy(&self, service: &str, within: Duration) {
        let started = Instant::now();
        loop {
            let check = podman().args(["healthcheck", "run", &self.container(service)]).output().unwrap();
            if check.status.success() {
                return;
            }
            if started.elapsed() > within {
                panic!(
                    "{service} not healthy after {within:?}: {}{}\nits log:\n{}",
                    String::from_utf8_lossy(&check.stdout),
                    String::from_utf8_lossy(&check.stderr),
                    self.logs(service, 30)
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // `down -v` removes the named volumes, not the anonymous ones of the image's VOLUME.
        let label = format!("label=io.podman.compose.project={}", self.name);
        let format = "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}";
        let containers =
            podman().args(["ps", "-aq", "--filter", &label]).output().map(|o| o.stdout).unwrap_or_default();
        let containers: Vec<String> =
            String::from_utf8_lossy(&containers).split_whitespace().map(str::to_owned).collect();
        let volumes = if containers.is_empty() {
            Vec::new()
        } else {
            podman()
                .args(["inspect", "--format", format])
                .args(&containers)
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        };
        let _ = self.command().args(["down", "-v", "-t", "5"]).output();
        let volumes = String::from_utf8_lossy(&volumes);
        let anonymous: Vec<&str> = volumes.split_whitespace().filter(|v| !v.starts_with(&self.name)).collect();
        if !anonymous.is_empty() {
            let _ = podman().args(["volume", "rm", "-f"]).args(anonymous).output();
        }
    }
}

impl Netns {
    /// Runs `f` on a thread of its own inside the namespace: the test's own clients (Kafka, Redis)
    /// then reach the services on its loopback, as the services reach each other.
    fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap();
                // SAFETY: changes this thread's network namespace only, to one whose file is open.
                let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
                assert_eq!(entered, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            });
            thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// `curl` inside the namespace; (status, body).
fn curl(ns: &Netns, args: &[&str]) -> (u16, String) {
    let mut argv = vec!["curl", "-s", "-w", "\n%{http_code}"];
    argv.extend_from_slice(args);
    let out = ns.exec(&argv).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_owned())
}

/// compose.yaml's services of cartflow's image.
const CARTFLOW_SERVICES: [&str; 11] = [
    "cdc",
    "validate-1",
    "validate-2",
    "lake-sink",
    "features-stream",
    "registry",
    "serve-1",
    "serve-2",
    "warehouse-build",
    "features-build",
    "train",
];

const CDC: &str = "tracking_postgres_cdc.public.events";

/// The system up, and what the test drives it with.
struct Deployed {
    project: Project,
    netns: Netns,
    secrets: PathBuf,
    tmp: PathBuf,
}

impl Deployed {
    fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.secrets.join(name)).unwrap().trim().to_owned()
    }

    /// The shop's database as the test reaches it: the same URL, at the namespace's loopback.
    fn shop_url(&self) -> String {
        self.secret("shop_url").replace("@postgres:", "@127.0.0.1:")
    }

    /// This test run's `cartflow`, inside the namespace, pointed at the broker.
    fn cartflow(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns.0, env!("CARGO_BIN_EXE_cartflow"), "--quiet", "--data-dir"])
            .arg(self.tmp.join("driver"))
            .args(args)
            .env("CARTFLOW_LOG", "kafka://127.0.0.1:9092");
        c
    }

    /// POST /predict over HTTPS through nginx, the certificate checked; (status, body).
    fn predict(&self, body: &str, token: &str) -> (u16, String) {
        let cacert = self.secrets.join("tls/cert.pem");
        let auth = format!("Authorization: Bearer {token}");
        let args = ["--cacert", cacert.to_str().unwrap(), "-H", &auth, "-H", "Content-Type: application/json"];
        curl(&self.netns, &[&args[..], &["--data", body, "https://localhost/predict"]].concat())
    }

    /// Every cartflow target of Prometheus up (it scrapes with the prometheus_token secret).
    fn assert_scraped(&self) {
        let waiting = Instant::now();
        loop {
            let (_, targets) = curl(&self.netns, &["http://127.0.0.1:9090/api/v1/targets"]);
            let targets: serde_json::Value = serde_json::from_str(&targets).unwrap_or_default();
            let active = targets["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
            let down: Vec<String> = active
                .iter()
                .filter(|t| t["health"] != "up")
                .map(|t| format!("{} {} {}", t["labels"]["instance"], t["health"], t["lastError"]))
                .collect();
            if active.len() == 11 && down.is_empty() {
                return;
            }
            assert!(waiting.elapsed() < Duration::from_secs(60), "{} targets, down: {down:?}", active.len());
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

#[test]
fn the_deployed_system_serves_through_nginx_and_rides_out_crashes() {
    let tools = [tool("nisshi", "NISSHI_BIN"), tool("s3s-fs", "S3S_FS_BIN")];
    let compose = tool("podman-compose", "PODMAN_COMPOSE_BIN");
    let commands =
        [("podman", "podman"), ("runc", "runc"), ("debootstrap", "debootstrap"), ("ip", "iproute2"), ("wrk", "wrk")];
    if tools.iter().any(Option::is_none) || compose.is_none() || !commands.iter().all(|(c, p)| command(c, p)) {
        return;
    }
    let tools: Vec<PathBuf> = tools.into_iter().flatten().collect();
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // The image: built from the Dockerfile, and what its users rely on.
    base_image(tmp.path());
    cartflow_image(tmp.path());
    services_image(tmp.path(), &tools);
    let built = started.elapsed();
    let inspect = ok(podman().args(["image", "inspect", CARTFLOW_IMAGE]));
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "10001:10001", "the image runs as a user, not root");
    assert_eq!(config["Entrypoint"], serde_json::json!(["cartflow"]));
    assert_eq!(config["Labels"]["org.opencontainers.image.title"], "cartflow");
    // podman reports the health check beside Config, not in it.
    let check = &inspect[0]["Healthcheck"]["Test"];
    assert_eq!(check, &serde_json::json!(["CMD", "cartflow", "health", "--timeout-ms", "2500"]), "{inspect}");
    let version = ok(podman().args(["run", "--rm", "--network", "none", CARTFLOW_IMAGE, "--version"]));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("cartflow "));

    // The whole system, from a copy of deploy/ with fresh secrets.
    let deploy = tmp.path().join("deploy");
    ok(Command::new("cp").arg("-r").arg(repo().join("deploy")).arg(&deploy));
    let dir = deploy.join("compose");
    ok(Command::new("bash").arg(dir.join("make-secrets.sh")));
    let netns = Netns::create();
    let project = Project {
        compose: compose.unwrap(),
        dir: dir.clone(),
        name: format!("cftest{}", std::process::id()),
        netns: netns.0.clone(),
    };
    // Grafana has no Debian package and no image here: everything but it.
    let others = ["kafka", "postgres", "redis", "s3", "prometheus", "alertmanager", "nginx"];
    ok(project.command().args(["up", "-d"]).args(others).args(CARTFLOW_SERVICES));
    for service in CARTFLOW_SERVICES {
        project.wait_healthy(service, Duration::from_secs(120));
    }
    let up_took = started.elapsed() - built;
    let system = Deployed { project, netns, secrets: dir.join("secrets"), tmp: tmp.path().to_owned() };

    // Events from both sources: the shop's table (captured by cdc) and the raw topic.
    let (seeded, produced) = (2_000, 50_000);
    let shop = system.shop_url();
    ok(&mut system.cartflow(&["cdc", "seed", "--postgres", &shop, "--events", &seeded.to_string(), "--seed", "3"]));
    ok(&mut system.cartflow(&[
        "produce",
        "--generate",
        &produced.to_string(),
        "--seed",
        "7",
        "--inject-invalid",
        "0.01",
    ]));

    // Every event lands in the lake on S3 once: the lake sink commits at most a minute after it read.
    let project = &system.project;
    let landed = || -> u64 {
        let sql = "SELECT (SELECT count(*) FROM bronze.events) + (SELECT count(*) FROM bronze.invalid) AS n";
        let out = project.cartflow("lake-sink", &["sql", "--format", "csv", sql]);
        out.lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0)
    };
    let waiting = Instant::now();
    let mut n = landed();
    while n < seeded + produced {
        assert!(waiting.elapsed() < Duration::from_secs(180), "{n} of {} events in the lake", seeded + produced);
        std::thread::sleep(Duration::from_secs(3));
        n = landed();
    }
    assert_eq!(n, seeded + produced, "every event once in the lake");

    // The batch jobs, run by hand in their services as their schedule runs them; then a champion.
    project.cartflow("warehouse-build", &["warehouse", "build"]);
    project.cartflow("features-build", &["features", "build"]);
    project.cartflow("train", &["train", "--trials", "2"]);

    // Predictions through nginx over TLS, with the shop's token (scope predict), from either replica.
    let carts = project.cartflow(
        "lake-sink",
        &[
            "sql",
            "--format",
            "json",
            "SELECT user_id, product_id, user_session, price FROM silver.events WHERE event_type = 'cart' LIMIT 1",
        ],
    );
    let cart: serde_json::Value = serde_json::from_str(carts.lines().next().expect("a cart")).unwrap();
    let body = serde_json::json!([cart]).to_string();
    let shop_token = system.secret("shop_token");
    // The replicas ask the registry for the champion every poll_secs, each in
    // its own time: ten answers in a row, which nginx takes turns for, mean
    // both have it before the load begins.
    let waiting = Instant::now();
    let (mut status, mut answer) = system.predict(&body, &shop_token);
    let mut in_a_row = 0;
    while in_a_row < 10 && waiting.elapsed() < Duration::from_secs(60) {
        in_a_row = if status == 200 { in_a_row + 1 } else { 0 };
        if status != 200 {
            std::thread::sleep(Duration::from_secs(1));
        }
        (status, answer) = system.predict(&body, &shop_token);
    }
    assert!(in_a_row >= 10 && status == 200 && answer.contains("\"probability\""), "{status} {answer}");
    assert_eq!(system.predict(&body, "not-the-token").0, 401);
    assert_eq!(curl(&system.netns, &["http://localhost/predict"]).0, 308, "plain HTTP is sent to HTTPS");
    system.assert_scraped();
    eprintln!(
        "compose: images built in {:.0} s, {} services healthy {:.0} s later, {} events landed once, /predict through nginx",
        built.as_secs_f64(),
        CARTFLOW_SERVICES.len() + others.len(),
        up_took.as_secs_f64(),
        seeded + produced
    );

    chaos::run(&system, &body, &shop_token);
}
