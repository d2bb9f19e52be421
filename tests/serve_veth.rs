//! `serve` with real kernel clients: the appliance runs on `net_af_packet`
//! over one end of a veth pair in its own network namespace; curl and wrk run
//! in another namespace. Everything a 2xx acknowledged must come back from
//! `dump`; every refusal has its status and JSON body.
//!
//! Needs root (namespaces), curl, wrk and ethtool (scripts/setup.sh).

mod common;

use common::*;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A client namespace and an appliance namespace joined by a veth pair;
/// removed on drop. Names carry the test's PID so parallel runs do not clash.
struct Veth {
    app_ns: String,
    cli_ns: String,
    app_if: String,
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let v =
            Veth { app_ns: format!("msa-{tag}-{id}"), cli_ns: format!("msc-{tag}-{id}"), app_if: format!("vsa{id}") };
        let cli_if = format!("vsc{id}");
        let sh = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip (iproute2)");
            assert!(st.success(), "ip {args:?} failed (are we root?)");
        };
        sh(&["netns", "add", &v.app_ns]);
        sh(&["netns", "add", &v.cli_ns]);
        sh(&["link", "add", &v.app_if, "type", "veth", "peer", "name", &cli_if]);
        sh(&["link", "set", &v.app_if, "netns", &v.app_ns]);
        sh(&["link", "set", &cli_if, "netns", &v.cli_ns]);
        sh(&["-n", &v.app_ns, "link", "set", &v.app_if, "up"]);
        sh(&["-n", &v.cli_ns, "link", "set", &cli_if, "up"]);
        sh(&["-n", &v.cli_ns, "link", "set", "lo", "up"]);
        sh(&["-n", &v.cli_ns, "addr", "add", "198.18.0.2/24", "dev", &cli_if]);
        // veth leaves TCP/UDP checksums to "offload": fill them on the client side.
        let st = Command::new("ip")
            .args(["netns", "exec", &v.cli_ns, "ethtool", "-K", &cli_if, "tx", "off"])
            .stdout(Stdio::null())
            .status()
            .expect("ethtool");
        assert!(st.success());
        v
    }

    fn client(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.cli_ns, program]);
        c
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for ns in [&self.app_ns, &self.cli_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Appliance {
    child: ChildGuard,
    report: std::path::PathBuf,
}

fn start(veth: &Veth, config: &std::path::Path, report: &std::path::Path) -> Appliance {
    let child = Command::new("ip")
        .args(["netns", "exec", &veth.app_ns, BIN, "serve", "--config", config.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap(), "--duration", "120", "--stats-interval", "0", "--"])
        .args(["--no-huge", "-m", "512", "--no-shconf", "--no-pci", "-l", "0-1", "--log-level", "*:warning"])
        .arg("--vdev")
        .arg(format!("net_af_packet0,iface={}", veth.app_if))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let app = Appliance { child: ChildGuard(Some(child)), report: report.to_path_buf() };
    // Ready when /ping answers.
    let start = Instant::now();
    loop {
        let out = veth
            .client("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "1", "http://198.18.0.1:8080/ping"])
            .output()
            .unwrap();
        if text(&out.stdout) == "204" {
            return app;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "appliance did not answer /ping");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Appliance {
    /// SIGTERM, wait for the clean exit, return the report.
    fn stop(mut self) -> serde_json::Value {
        let child = self.child.0.as_mut().unwrap();
        // `ip netns exec` execs the binary, so this PID is the appliance.
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        use std::io::Read;
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        self.child.0 = None;
        assert!(status.success(), "serve failed: {err}");
        read_json(&self.report)
    }
}

/// curl: returns (status, body).
fn curl(veth: &Veth, args: &[&str]) -> (u16, String) {
    let out =
        veth.client("curl").args(["-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}"]).args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    let s = text(&out.stdout);
    let (body, code) = s.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn dump(data: &std::path::Path) -> Vec<String> {
    let out = run(&["dump", "--data-dir", data.to_str().unwrap()], Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn kernel_clients_write_over_tcp_and_every_2xx_is_in_the_log() {
    let dir = TempDir::new("serve");
    let data = dir.path("data");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[writer]\ndata_dir = \"{}\"\n[http]\nmax_body_bytes = 262144\n\
             [auth]\ntokens = [{{ token = \"t-a\", client = \"svc-a\" }}, {{ token = \"t-b\", client = \"svc-b\" }}]\n\
             [[limits.client]]\nid = \"svc-b\"\nrate = 1\nburst = 2\n",
            data.display()
        ),
    )
    .unwrap();
    let _dpdk = dpdk_lock();
    let veth = Veth::new("w");
    let app = start(&veth, &config, &dir.path("report.json"));
    let auth = ["-H", "Authorization: Token t-a"];
    let url = "http://198.18.0.1:8080";

    // Line protocol, v1: 204, records unchanged in the log.
    let lp = "cpu,host=web-01,region=eu usage_user=12.5,usage_idle=80i,ok=true 1700000000000000000\n\
              http,path=/api status=\"ok\",count=3u 1700000000000000001\n";
    let (code, body) = curl(&veth, &[&auth[..], &["--data-binary", lp, &format!("{url}/write?db=m")]].concat());
    assert_eq!(code, 204, "{body}");
    // v2 with ms precision.
    let (code, _) = curl(
        &veth,
        &[
            &auth[..],
            &[
                "--data-binary",
                "disk used=1i 1700000000000",
                &format!("{url}/api/v2/write?org=o&bucket=b&precision=ms"),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 204);
    // The MetricsStream JSON API.
    let json = r#"{"metrics":[{"name":"queue_depth","value":7,"timestamp":1700000000000,"tags":{"q":"orders"}},{"name":"no_ts","value":1.5}]}"#;
    let (code, body) = curl(
        &veth,
        &[
            &auth[..],
            &["-H", "Content-Type: application/json", "--data-binary", json, &format!("{url}/api/v1/metrics")],
        ]
        .concat(),
    );
    assert_eq!((code, body.as_str()), (202, r#"{"accepted":2}"#));
    // gzip body.
    let gz_path = dir.path("body.gz");
    let mut gz = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    gz.stdin.take().unwrap().write_all(b"gz,src=curl v=1i 1700000000000000002\n").unwrap();
    std::fs::write(&gz_path, gz.wait_with_output().unwrap().stdout).unwrap();
    let (code, body) = curl(
        &veth,
        &[
            &auth[..],
            &[
                "-H",
                "Content-Encoding: gzip",
                "--data-binary",
                &format!("@{}", gz_path.display()),
                &format!("{url}/write"),
            ],
        ]
        .concat(),
    );
    assert_eq!(code, 204, "{body}");
    // A body large enough for curl's `Expect: 100-continue` (> 1 KiB): 2,000 lines.
    let big: String = (0..2000).map(|i| format!("big,n={} v={i}i 17000000000{i:08}\n", i % 7)).collect();
    let big_path = dir.path("big.lp");
    std::fs::write(&big_path, &big).unwrap();
    let (code, body) = curl(
        &veth,
        &[&auth[..], &["--data-binary", &format!("@{}", big_path.display()), &format!("{url}/write")]].concat(),
    );
    assert_eq!(code, 204, "{body}");

    // The real InfluxDB v2 Python client (influxdb-client from PyPI) writes a
    // Point and a raw line through its write API.
    let py = dir.path("client.py");
    std::fs::write(
        &py,
        "from influxdb_client import InfluxDBClient, Point, WritePrecision\n\
         from influxdb_client.client.write_api import SYNCHRONOUS\n\
         with InfluxDBClient(url='http://198.18.0.1:8080', token='t-a', org='o') as c:\n\
         \x20   w = c.write_api(write_options=SYNCHRONOUS)\n\
         \x20   w.write(bucket='b', record=Point('py').tag('lib', 'influxdb-client').field('v', 1.5).field('n', 3)\
         .time(1700000000000000000, WritePrecision.NS))\n\
         \x20   w.write(bucket='b', record='py_raw,src=raw x=1i 1700000000000000001')\n",
    )
    .unwrap();
    let out = veth.client("python3").arg(&py).output().unwrap();
    assert!(out.status.success(), "influxdb-client: {} {}", text(&out.stdout), text(&out.stderr));

    // Refusals, each with a JSON error body.
    let (code, body) = curl(&veth, &["--data-binary", lp, &format!("{url}/write")]);
    assert_eq!(code, 401, "{body}");
    let (code, body) =
        curl(&veth, &[&auth[..], &["--data-binary", "ok v=1 1\nbroken line\n", &format!("{url}/write")]].concat());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 2") && body.contains("\"code\""), "{body}");
    let huge_path = dir.path("huge.lp");
    std::fs::write(&huge_path, "x v=1i 1\n".repeat(40_000)).unwrap();
    let (code, body) = curl(
        &veth,
        &[&auth[..], &["--data-binary", &format!("@{}", huge_path.display()), &format!("{url}/write")]].concat(),
    );
    assert_eq!(code, 413, "{body}");
    let (code, _) = curl(&veth, &[&format!("{url}/nope")]);
    assert_eq!(code, 404);
    let (code, _) = curl(&veth, &["-X", "DELETE", &format!("{url}/write")]);
    assert_eq!(code, 405);
    // svc-b may write 2 records at once, then 1 per second.
    let b = ["-H", "Authorization: Token t-b"];
    let (code, _) =
        curl(&veth, &[&b[..], &["--data-binary", "l v=1i 1\nl v=2i 2\n", &format!("{url}/write")]].concat());
    assert_eq!(code, 204);
    let out = veth
        .client("curl")
        .args([
            "-sS",
            "-m",
            "10",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Authorization: Token t-b",
            "--data-binary",
            "l v=3i 3\nl v=4i 4\n",
        ])
        .arg(format!("{url}/write"))
        .output()
        .unwrap();
    let headers = text(&out.stdout);
    assert!(headers.starts_with("HTTP/1.1 429"), "{headers}");
    assert!(headers.contains("Retry-After:") && headers.contains("RateLimit-Policy:"), "{headers}");
    // SIGHUP reloads [limits]: svc-b gets a large burst and is admitted again.
    let raised =
        std::fs::read_to_string(&config).unwrap().replace("rate = 1\nburst = 2", "rate = 1000\nburst = 100000");
    std::fs::write(&config, raised).unwrap();
    let pid = app.child.0.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let start = Instant::now();
    loop {
        let (code, _) =
            curl(&veth, &[&b[..], &["--data-binary", "l v=5i 5\nl v=6i 6\n", &format!("{url}/write")]].concat());
        if code == 204 {
            break;
        }
        assert_eq!(code, 429);
        assert!(start.elapsed() < Duration::from_secs(10), "SIGHUP did not raise the limit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = curl(&veth, &[&format!("{url}/metrics")]);
    assert_eq!(code, 200);
    assert!(body.contains("metricsstream_http_records_accepted"), "{body}");

    let report = app.stop();
    let lines = dump(&data);
    let expected = 2 + 1 + 2 + 1 + 2000 + 2 + 2 + 2;
    assert_eq!(lines.len(), expected, "report {report:#}");
    assert_eq!(report["records_written"], expected as u64, "{report:#}");
    assert!(lines
        .contains(&"cpu,host=web-01,region=eu usage_user=12.5,usage_idle=80i,ok=true 1700000000000000000".to_string()));
    assert!(lines.contains(&"http,path=/api status=\"ok\",count=3u 1700000000000000001".to_string()));
    assert!(lines.contains(&"disk used=1i 1700000000000000000".to_string()), "{lines:?}");
    assert!(lines.contains(&"gz,src=curl v=1i 1700000000000000002".to_string()));
    assert!(lines.iter().any(|l| l.starts_with("queue_depth,q=orders value=7")), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("big,")).count(), 2000);
    let py_point = lines.iter().find(|l| l.starts_with("py,lib=influxdb-client ")).expect("the client's Point");
    assert!(
        py_point.contains("v=1.5") && py_point.contains("n=3i") && py_point.ends_with(" 1700000000000000000"),
        "{py_point}"
    );
    assert!(lines.contains(&"py_raw,src=raw x=1i 1700000000000000001".to_string()));
    // A metric without a timestamp is stamped with the wall clock, not process uptime.
    let stamped: u64 =
        lines.iter().find(|l| l.starts_with("no_ts ")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert!(now - stamped < 600_000_000_000, "stamped {stamped}, now {now}");
    let net = &report["net"];
    assert_eq!(
        net["connections_opened"].as_u64().unwrap(),
        net["connections_closed"].as_u64().unwrap() + net["connections_open"].as_u64().unwrap()
    );
    assert_http_pools_idle(&report);
}

/// Buffer lifecycle after a run: every pool balances and no connection
/// buffer is lent once the clients are done (batches may still be on their
/// way through the writer when the report is taken); no body memory stays
/// reserved.
fn assert_http_pools_idle(report: &serde_json::Value) {
    let http = &report["http"];
    let n = |k: &str| http[k].as_u64().unwrap_or_else(|| panic!("report.http.{k} missing: {http:#}"));
    for pool in ["body_buffers", "response_buffers", "inflaters", "batches"] {
        let (in_use, free, allocated) =
            (n(&format!("{pool}_in_use")), n(&format!("{pool}_free")), n(&format!("{pool}_allocated")));
        assert_eq!(allocated, in_use + free, "{pool}: {http:#}");
        if pool != "batches" {
            assert_eq!(in_use, 0, "{pool} still lent after the run: {http:#}");
        }
    }
    assert!(n("body_buffers_high_water") > 0, "{http:#}");
    assert_eq!(n("body_budget_reserved_bytes"), 0, "{http:#}");
}

#[test]
fn wrk_keep_alive_load_has_no_socket_errors_and_every_2xx_is_written() {
    let dir = TempDir::new("wrk");
    let data = dir.path("data");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[writer]\ndata_dir = \"{}\"\n[limits]\ndefault_rate = 100000000\ndefault_burst = 100000000\n",
            data.display()
        ),
    )
    .unwrap();
    let body: String = (0..100)
        .map(|i| format!("cpu,host=h{},cpu=c{} usage={i}.5,idle={i}i 1700000000{i:09}\n", i % 10, i % 4))
        .collect();
    let script = dir.path("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {:?}\nwrk.headers[\"Content-Type\"] = \"text/plain\"\n\
             done = function(summary, latency, requests)\n  io.write(string.format(\"RESULT requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\\n\", \
             summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))\nend\n",
            body
        ),
    )
    .unwrap();
    let _dpdk = dpdk_lock();
    let veth = Veth::new("k");
    let app = start(&veth, &config, &dir.path("report.json"));
    let out = veth
        .client("wrk")
        .args([
            "-t",
            "1",
            "-c",
            "100",
            "-d",
            "4s",
            "--timeout",
            "5s",
            "-s",
            script.to_str().unwrap(),
            "http://198.18.0.1:8080/write",
        ])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "wrk: {stdout} {}", text(&out.stderr));
    let result = stdout.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| panic!("{stdout}"));
    let field = |k: &str| -> u64 {
        result.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{k}="))).unwrap().parse().unwrap()
    };
    assert_eq!((field("connect"), field("read"), field("write"), field("timeout")), (0, 0, 0, 0), "{stdout}");
    assert_eq!(field("non2xx"), 0, "{stdout}");
    let report = app.stop();
    // Every 2xx but the readiness /ping answered a 100-line write.
    assert_http_pools_idle(&report);
    let ok = report["http"]["responses_2xx"].as_u64().unwrap() - 1;
    assert!(ok >= field("requests"), "{report:#}");
    // Every acknowledged batch (and nothing else) is in the log.
    assert_eq!(report["records_written"].as_u64().unwrap(), ok * 100, "{report:#}");
    eprintln!("wrk over veth: {stdout}");
}

/// The global body-memory budget with kernel clients: a slow upload holds
/// most of it, so a concurrent upload is refused 503 + Retry-After (before
/// its body is sent: `Expect: 100-continue`), and is accepted once the slow
/// one finished. The refusal is counted and nothing stays reserved.
#[test]
fn uploads_beyond_the_body_budget_get_503_until_memory_is_free() {
    let dir = TempDir::new("budget");
    let data = dir.path("data");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[writer]\ndata_dir = \"{}\"\nack = \"enqueued\"\n[http]\nmax_body_bytes = 262144\n\
             body_memory_budget_bytes = 262144\n[limits]\ndefault_rate = 100000000\ndefault_burst = 100000000\n",
            data.display()
        ),
    )
    .unwrap();
    let body = |name: &str, lines: usize| {
        let path = dir.path(name);
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..lines {
            writeln!(f, "{name},seq={i:06} value={i}i {}", 1_700_000_000_000_000_000u64 + i as u64).unwrap();
        }
        path
    };
    let (slow, quick) = (body("slow", 5000), body("quick", 2000)); // ~240 KB and ~95 KB
    let url = "http://198.18.0.1:8080/write";
    let _dpdk = dpdk_lock();
    let veth = Veth::new("b");
    let app = start(&veth, &config, &dir.path("report.json"));
    // ~240 KB at 60 KB/s: its reservation is held for ~4 s.
    let slow_arg = format!("@{}", slow.display());
    let uploader = veth
        .client("curl")
        .args(["-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:"])
        .args(["--limit-rate", "60k", "--data-binary", &slow_arg, url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let quick_arg = format!("@{}", quick.display());
    let out = veth
        .client("curl")
        .args(["-sS", "-m", "10", "-i", "-H", "Expect: 100-continue", "--data-binary", &quick_arg, url])
        .output()
        .unwrap();
    let refused = text(&out.stdout);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused} {}", text(&out.stderr));
    assert!(refused.contains("Retry-After: 1") && refused.contains(r#""code":"unavailable""#), "{refused}");
    let slow_out = uploader.wait_with_output().unwrap();
    assert_eq!(text(&slow_out.stdout), "204", "slow upload: {}", text(&slow_out.stderr));
    let (code, answer) = curl(&veth, &["--data-binary", &quick_arg, url]);
    assert_eq!(code, 204, "{answer}");
    let report = app.stop();
    assert_eq!(report["http"]["body_budget_refused"], 1, "{report:#}");
    assert_http_pools_idle(&report);
    assert_eq!(report["records_written"], 7000, "{report:#}");
}
