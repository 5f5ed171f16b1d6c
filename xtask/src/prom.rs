//! The `prom` tier of `cargo xtask test`: the fleet files of
//! `uacce-trace/dist/` (the Grafana dashboard, the Prometheus recording and
//! alerting rules) checked with the real Prometheus programs (Debian's, from
//! the tool cache: `toolchain::prometheus`):
//!
//! 1. `promtool check rules` of both rule files (lint errors fatal);
//! 2. `promtool test rules` of their unit tests (`rules_test.yml`: each alert
//!    firing and not firing, the recording rules dropping `pid`);
//! 3. a Prometheus server, rules loaded, scraping `uacce-trace serve --replay
//!    --realtime` of the shipped demo recording every second (the recorded
//!    pace, so counters grow between scrapes as they do live). Over the
//!    replay's time range, as a Grafana panel asks for it (`query_range`,
//!    1 s step): every template variable (`label_values`), every panel query
//!    (variables substituted as Grafana does with "All" selected) and every
//!    recording rule must return data with at least one value that is not
//!    NaN; every rule must be healthy and every rule of the files loaded; and
//!    the alerts must say what the recording holds (faults inside pinned
//!    ranges: firing; losses: none);
//! 4. beside it a second `serve --replay --realtime` of the same recording
//!    with `--labels comm,device` (job `uacce-trace-fleet`): once both are
//!    complete, its IOPF buckets and counts, pin counts and pages must equal
//!    Prometheus' `sum by` over the first one's `pid` series, series by
//!    series, and carry no `pid` label.
//!
//! Pure parts (dashboard parsing, variable substitution) are unit-tested
//! below, together with a check that every metric the dashboard and rules
//! name is one `serve` exports.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::base::process::describe;
use crate::toolchain::prometheus::PromTools;

/// The dashboard, from the workspace root.
pub const DASHBOARD: &str = "uacce-trace/dist/grafana/uacce-trace.json";
/// The folder of the rules and their unit tests, from the workspace root.
pub const RULES_DIR: &str = "uacce-trace/dist/prometheus";
/// The rule files, in [`RULES_DIR`].
pub const RULE_FILES: &[&str] = &["uacce-trace.rules.yml", "uacce-trace.alerts.yml"];
/// The rules' unit tests, in [`RULES_DIR`].
pub const RULES_TEST: &str = "rules_test.yml";
/// The recording replayed, from the workspace root (made in the demo VM:
/// three faulting processes on three mock devices, one pinning process
/// whose faults partly hit its pinned range, one pinning through io_uring).
pub const RECORDING: &str = "uacce-trace/tests/data/demo.utrace";

/// Scrape and rule evaluation interval of the test server, and the step of
/// the range queries.
const SCRAPE_S: u64 = 1;
/// What Grafana makes `$__rate_interval` of a 1 s scrape interval and a 1 s
/// step: max(4 × scrape interval, step + scrape interval).
const RATE_INTERVAL: &str = "4s";
/// How long the realtime replay (≈ 20 s of events) may take to be scraped
/// complete.
const REPLAY_DEADLINE: Duration = Duration::from_secs(180);

/// One check: its name and what came of it (`Ok`: a detail to print).
pub struct Check {
    pub name: String,
    pub result: Result<String>,
}

impl Check {
    fn new(name: impl Into<String>, result: Result<String>) -> Self {
        Check {
            name: name.into(),
            result,
        }
    }
}

// ---------------------------------------------------------------------------
// promtool

/// `promtool check rules` and `promtool test rules`, one check each.
pub fn promtool_checks(root: &Path, tools: &PromTools) -> Vec<Check> {
    let dir = root.join(RULES_DIR);
    let mut check = Command::new(&tools.promtool);
    check
        .current_dir(&dir)
        .args(["check", "rules", "--lint=all", "--lint-fatal"])
        .args(RULE_FILES);
    let mut test = Command::new(&tools.promtool);
    test.current_dir(&dir).args(["test", "rules", RULES_TEST]);
    vec![
        Check::new("promtool check rules", run_promtool(&mut check)),
        Check::new("promtool test rules", run_promtool(&mut test)),
    ]
}

/// Runs promtool; its output is the error when it fails, and its
/// `SUCCESS` lines the detail when it passes.
fn run_promtool(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", describe(cmd)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            text.trim_end()
        );
    }
    let success: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("SUCCESS"))
        .collect();
    Ok(success.join("; "))
}

// ---------------------------------------------------------------------------
// The dashboard

/// A template variable of the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    /// `datasource`, `query`, ...
    pub kind: String,
    /// The query of a `query` variable (`label_values(...)`).
    pub query: Option<String>,
    /// What "All" stands for in queries (`.*`).
    pub all_value: Option<String>,
}

/// One query of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    /// An instant query (stat and table panels), else a range query.
    pub instant: bool,
}

/// What the checks read from the dashboard JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub variables: Vec<Variable>,
    pub targets: Vec<Target>,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Parses a Grafana dashboard: its template variables and the query of
/// every panel (rows' nested panels included). A panel target without an
/// `expr` is an error: every query of this dashboard is PromQL.
pub fn parse_dashboard(text: &str) -> Result<Dashboard> {
    let json: Value = serde_json::from_str(text).context("the dashboard is not JSON")?;
    let mut variables = Vec::new();
    for v in json
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .context("the dashboard has no templating.list")?
    {
        let name = str_at(v, "name").context("a template variable without a name")?;
        let query = match v.get("query") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(q) => str_at(q, "query").map(str::to_owned),
            None => None,
        };
        variables.push(Variable {
            name: name.to_owned(),
            kind: str_at(v, "type").unwrap_or_default().to_owned(),
            query,
            all_value: str_at(v, "allValue").map(str::to_owned),
        });
    }
    let mut targets = Vec::new();
    let panels = json
        .get("panels")
        .and_then(Value::as_array)
        .context("the dashboard has no panels")?;
    collect_targets(panels, &mut targets)?;
    Ok(Dashboard { variables, targets })
}

fn collect_targets(panels: &[Value], out: &mut Vec<Target>) -> Result<()> {
    for p in panels {
        let title = str_at(p, "title").unwrap_or("(untitled)");
        if let Some(nested) = p.get("panels").and_then(Value::as_array) {
            collect_targets(nested, out)?;
        }
        for t in p
            .get("targets")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let ref_id = str_at(t, "refId").unwrap_or("?");
            let expr = str_at(t, "expr")
                .filter(|e| !e.trim().is_empty())
                .with_context(|| format!("panel `{title}` query {ref_id} has no expr"))?;
            let flag = |k: &str| t.get(k).and_then(Value::as_bool) == Some(true);
            out.push(Target {
                panel: title.to_owned(),
                ref_id: ref_id.to_owned(),
                expr: expr.to_owned(),
                instant: flag("instant") && !flag("range"),
            });
        }
    }
    Ok(())
}

/// Replaces Grafana's variables in `expr` (`$name`, `${name}`,
/// `${name:format}`, `[[name]]`) by their values in `values`; a variable
/// not there is an error (the check would otherwise send a `$` to
/// Prometheus and call the parse error a failure of the query).
pub fn substitute(expr: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let ident = |s: &str| -> usize {
        s.char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map_or(s.len(), |(i, _)| i)
    };
    let lookup = |name: &str| {
        values
            .get(name)
            .cloned()
            .with_context(|| format!("unknown variable `{name}` in {expr}"))
    };
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(braced) = tail.strip_prefix("${") {
            let end = braced
                .find('}')
                .with_context(|| format!("unclosed ${{ in {expr}"))?;
            let name = braced[..end].split(':').next().unwrap_or_default();
            out.push_str(&lookup(name)?);
            rest = &braced[end + 1..];
        } else if let Some(bracketed) = tail.strip_prefix("[[") {
            let end = bracketed
                .find("]]")
                .with_context(|| format!("unclosed [[ in {expr}"))?;
            out.push_str(&lookup(&bracketed[..end])?);
            rest = &bracketed[end + 2..];
        } else if let Some(plain) = tail.strip_prefix('$') {
            let n = ident(plain);
            if n == 0 {
                bail!("a `$` without a variable name in {expr}");
            }
            out.push_str(&lookup(&plain[..n])?);
            rest = &plain[n..];
        } else {
            // A `[` of a range selector.
            out.push('[');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The values the checks give the variables: Grafana's built-ins for a
/// 1 s step over `range_s` seconds, and every variable with "All" selected.
pub fn variable_values(dash: &Dashboard, range_s: u64) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = [
        ("__rate_interval", RATE_INTERVAL.to_owned()),
        ("__interval", format!("{SCRAPE_S}s")),
        ("__interval_ms", (SCRAPE_S * 1000).to_string()),
        ("__range", format!("{range_s}s")),
        ("__range_s", range_s.to_string()),
        ("__range_ms", (range_s * 1000).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for v in &dash.variables {
        if let Some(all) = &v.all_value {
            values.insert(v.name.clone(), all.clone());
        }
    }
    values
}

/// `label_values(SELECTOR, LABEL)` or `label_values(LABEL)`: the selector
/// (if any) and the label.
pub fn parse_label_values(query: &str) -> Result<(Option<String>, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .with_context(|| format!("not a label_values(...) query: {query}"))?;
    Ok(match inner.rsplit_once(',') {
        Some((selector, label)) => (Some(selector.trim().to_owned()), label.trim().to_owned()),
        None => (None, inner.trim().to_owned()),
    })
}

// ---------------------------------------------------------------------------
// Prometheus's HTTP API

/// `%`-encodes a query parameter.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server's HTTP API on loopback.
struct Api {
    addr: SocketAddr,
}

impl Api {
    /// `GET path?params` (HTTP/1.0: the server closes after the body).
    fn get_raw(&self, path: &str, params: &[(&str, &str)]) -> Result<(u16, String)> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        let target = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to Prometheus at {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "GET {target} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
            self.addr
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .with_context(|| format!("reading the answer to GET {path}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("no HTTP head in the answer to GET {path}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no HTTP status in the answer to GET {path}"))?;
        Ok((status, body.to_owned()))
    }

    /// An API call: its `data`, or the error Prometheus gave.
    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let (status, body) = self.get_raw(path, params)?;
        let json: Value = serde_json::from_str(&body)
            .with_context(|| format!("GET {path}: HTTP {status}, not JSON: {body}"))?;
        if str_at(&json, "status") != Some("success") {
            bail!(
                "GET {path}: HTTP {status}: {} {}",
                str_at(&json, "errorType").unwrap_or_default(),
                str_at(&json, "error").unwrap_or(&body)
            );
        }
        Ok(json.get("data").cloned().unwrap_or(Value::Null))
    }

    /// The value of the first sample of an instant query, if any.
    fn scalar(&self, promql: &str) -> Result<Option<f64>> {
        let data = self.get("/api/v1/query", &[("query", promql)])?;
        Ok(data
            .pointer("/result/0/value/1")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok()))
    }
}

/// The job of the second serve (`--labels` [`FLEET_LABELS`]).
const FLEET_JOB: &str = "uacce-trace-fleet";
/// The labels of the second serve: what the recording rules keep.
const FLEET_LABELS: &str = "comm,device";

/// An instant vector as (labels without instance and job, value), sorted.
fn vector(data: &Value) -> Result<Vec<(String, String)>> {
    let result = data
        .get("result")
        .and_then(Value::as_array)
        .context("no result in the answer")?;
    let mut out: Vec<(String, String)> = result
        .iter()
        .map(|s| {
            let labels = s
                .get("metric")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k != "instance" && *k != "job")
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let value = s
                .pointer("/value/1")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (labels, value)
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Series and values of a query's `data` (vector or matrix): the number of
/// series, and of values that are not NaN. An empty answer, or one of NaN
/// only (a quantile of no events), is an error.
fn has_data(data: &Value) -> Result<String> {
    let result = data
        .get("result")
        .and_then(Value::as_array)
        .context("no result in the answer")?;
    let values = result.iter().flat_map(|series| {
        let one = series.get("value").into_iter();
        let many = series
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        one.chain(many)
            .filter_map(|v| v.get(1).and_then(Value::as_str))
            .filter_map(|v| v.parse::<f64>().ok())
            .collect::<Vec<_>>()
    });
    let numbers = values.filter(|v| !v.is_nan()).count();
    if result.is_empty() {
        bail!("no series");
    }
    if numbers == 0 {
        bail!("{} series, every value NaN", result.len());
    }
    Ok(format!("{} series, {numbers} values", result.len()))
}

// ---------------------------------------------------------------------------
// The live check

/// A child process stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Running {
    child: Child,
    name: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: SIGTERM to our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "{} did not stop on SIGTERM within 5 s; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// An error when the process has ended.
    fn alive(&mut self, log: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} ended ({status}); {}", self.name, tail(log));
        }
        Ok(())
    }
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "the end of {}:\n{}",
        path.display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Counts the `- record:` and `- alert:` entries of the rule files.
fn rules_in_files(root: &Path) -> Result<usize> {
    let mut n = 0;
    for f in RULE_FILES {
        let path = root.join(RULES_DIR).join(f);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        n += text
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("- record:") || l.starts_with("- alert:"))
            .count();
    }
    Ok(n)
}

/// Runs Prometheus against `serve --replay --realtime` of [`RECORDING`]
/// (with `tool`, the release binary) in `scratch`, and checks every
/// variable, panel query and rule (see the module docs); a second serve of
/// the same recording with `--labels` [`FLEET_LABELS`] (job [`FLEET_JOB`])
/// must export exactly Prometheus' sum over `pid` of the first. `Err` when the
/// check could not run at all (Prometheus or serve did not start, the
/// replay was never scraped).
pub fn live_checks(
    root: &Path,
    tools: &PromTools,
    tool: &Path,
    scratch: &Path,
) -> Result<Vec<Check>> {
    let dash_path = root.join(DASHBOARD);
    let dash = parse_dashboard(
        &fs::read_to_string(&dash_path)
            .with_context(|| format!("reading {}", dash_path.display()))?,
    )
    .with_context(|| format!("parsing {}", dash_path.display()))?;
    crate::base::fs::remove_if_exists(scratch)?;
    fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;

    let serve_port = free_port()?;
    // A second serve of the same recording with the fleet labels
    // (`--labels comm,device`): its aggregated series must equal what
    // Prometheus sums from the per-process ones.
    let fleet_port = free_port()?;
    let prom_port = free_port()?;
    let rule_files: Vec<String> = RULE_FILES
        .iter()
        .map(|f| format!("  - {}\n", root.join(RULES_DIR).join(f).display()))
        .collect();
    let config = scratch.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: uacce-trace\n    static_configs:\n      \
             - targets: ['127.0.0.1:{serve_port}']\n  - job_name: {FLEET_JOB}\n    \
             static_configs:\n      - targets: ['127.0.0.1:{fleet_port}']\n",
            rule_files.concat()
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;

    // Prometheus first, so that it scrapes the replay from its start.
    let prom_log = scratch.join("prometheus.log");
    let mut prom = Command::new(&tools.prometheus);
    prom.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            scratch.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&prom_log)?);
    let mut prom = Running {
        child: prom
            .spawn()
            .with_context(|| format!("starting {}", describe(&prom)))?,
        name: "prometheus",
    };
    let api = Api {
        addr: SocketAddr::from(([127, 0, 0, 1], prom_port)),
    };
    let t = Instant::now();
    loop {
        if matches!(api.get_raw("/-/ready", &[]), Ok((200, _))) {
            break;
        }
        prom.alive(&prom_log)?;
        if t.elapsed() > Duration::from_secs(60) {
            bail!("Prometheus not ready after 60 s; {}", tail(&prom_log));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "prometheus ready on 127.0.0.1:{prom_port} in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let serve_log = scratch.join("serve.log");
    let mut serve = Command::new(tool);
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{serve_port}")])
        .arg("--replay")
        .arg(root.join(RECORDING))
        .arg("--realtime")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&serve_log)?);
    let fleet_log = scratch.join("serve-fleet.log");
    let mut fleet = Command::new(tool);
    fleet
        .args(["serve", "--listen", &format!("127.0.0.1:{fleet_port}")])
        .args(["--labels", FLEET_LABELS])
        .arg("--replay")
        .arg(root.join(RECORDING))
        .arg("--realtime")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&fleet_log)?);
    let start = unix_now();
    println!("$ {}", describe(&serve));
    let mut serve = Running {
        child: serve
            .spawn()
            .with_context(|| format!("starting {}", describe(&serve)))?,
        name: "uacce-trace serve",
    };
    println!("$ {}", describe(&fleet));
    let mut fleet = Running {
        child: fleet
            .spawn()
            .with_context(|| format!("starting {}", describe(&fleet)))?,
        name: "uacce-trace serve --labels",
    };
    let t = Instant::now();
    loop {
        // Both replays complete.
        if api.scalar("count(uacce_trace_replay_complete == 1)")? == Some(2.0) {
            break;
        }
        serve.alive(&serve_log)?;
        fleet.alive(&fleet_log)?;
        prom.alive(&prom_log)?;
        if t.elapsed() > REPLAY_DEADLINE {
            bail!(
                "Prometheus did not scrape the complete replay within {} s; {}\n{}",
                REPLAY_DEADLINE.as_secs(),
                tail(&serve_log),
                tail(&prom_log)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // A few more scrapes and rule evaluations on the final state.
    std::thread::sleep(Duration::from_secs(3 * SCRAPE_S));
    let end = unix_now();
    println!(
        "replay scraped complete after {:.1} s; querying [{start:.0}, {end:.0}]",
        t.elapsed().as_secs_f64()
    );
    let (start_s, end_s) = (format!("{start:.3}"), format!("{end:.3}"));
    let range = [
        ("start", start_s.as_str()),
        ("end", end_s.as_str()),
        ("step", "1"),
    ];
    let values = variable_values(&dash, (end - start).ceil() as u64);
    let mut checks = Vec::new();

    checks.push(Check::new(
        "scrape target up",
        api.scalar("up{job=\"uacce-trace\"}").and_then(|v| match v {
            Some(1.0) => Ok("up == 1".to_owned()),
            other => bail!("up is {other:?}"),
        }),
    ));

    // The fleet serve's own aggregation (`--labels comm,device`) equals
    // Prometheus' sum over pid of the per-process serve, series by series
    // (final state: both replays are complete).
    for (what, by) in [
        (
            "uacce_trace_iopf_latency_seconds_bucket",
            "comm, device, le",
        ),
        ("uacce_trace_iopf_latency_seconds_count", "comm, device"),
        ("uacce_trace_pin_latency_seconds_count", "comm"),
        ("uacce_trace_pin_pages_total", "comm"),
        ("uacce_trace_pinned_pages", "comm"),
    ] {
        let q = |job: &str| format!("sum by ({by}) ({what}{{job=\"{job}\"}})");
        let result = (|| {
            let per_process = vector(&api.get("/api/v1/query", &[("query", &q("uacce-trace"))])?)?;
            let fleet = vector(&api.get("/api/v1/query", &[("query", &q(FLEET_JOB))])?)?;
            if per_process.is_empty() {
                bail!("no {what} from the per-process serve");
            }
            if per_process != fleet {
                bail!("sum by ({by}) differs: per-process {per_process:?}, --labels {FLEET_LABELS} {fleet:?}");
            }
            let with_pid =
                api.scalar(&format!("count({what}{{job=\"{FLEET_JOB}\", pid!=\"\"}})"))?;
            if with_pid.is_some() {
                bail!("--labels {FLEET_LABELS} still exports a pid label on {what}");
            }
            Ok(format!("{} series equal", per_process.len()))
        })();
        checks.push(Check::new(
            format!("serve --labels {FLEET_LABELS}: {what} by ({by}) equals the sum over pid"),
            result,
        ));
    }

    // Template variables, as Grafana lists their values.
    for v in dash.variables.iter().filter(|v| v.kind == "query") {
        let result = (|| {
            let query = v.query.as_deref().context("no query")?;
            let (selector, label) = parse_label_values(query)?;
            let selector = selector.map(|s| substitute(&s, &values)).transpose()?;
            let mut params = vec![("start", start_s.as_str()), ("end", end_s.as_str())];
            if let Some(s) = &selector {
                params.push(("match[]", s));
            }
            let data = api.get(&format!("/api/v1/label/{label}/values"), &params)?;
            let list: Vec<&str> = data
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if list.is_empty() {
                bail!("no values for {query}");
            }
            Ok(list.join(", "))
        })();
        checks.push(Check::new(
            format!("dashboard variable ${}", v.name),
            result,
        ));
    }

    // Every panel query.
    for target in &dash.targets {
        let name = format!("dashboard panel `{}` query {}", target.panel, target.ref_id);
        let result = substitute(&target.expr, &values).and_then(|promql| {
            let data = if target.instant {
                api.get("/api/v1/query", &[("query", &promql), ("time", &end_s)])
            } else {
                let mut params = vec![("query", promql.as_str())];
                params.extend(range);
                api.get("/api/v1/query_range", &params)
            };
            data.and_then(|d| has_data(&d))
                .with_context(|| format!("query: {promql}"))
        });
        checks.push(Check::new(name, result));
    }

    // The rules Prometheus loaded: every one of the files, healthy; every
    // recorded series with data.
    let groups = api.get("/api/v1/rules", &[])?;
    let rules: Vec<&Value> = groups
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("rules").and_then(Value::as_array))
        .flatten()
        .collect();
    checks.push(Check::new(
        "every rule of the rule files loaded",
        rules_in_files(root).and_then(|n| {
            if n == rules.len() && n > 0 {
                Ok(format!("{n} rules"))
            } else {
                bail!(
                    "the files hold {n} rules, Prometheus loaded {}",
                    rules.len()
                )
            }
        }),
    ));
    for rule in rules {
        let name = str_at(rule, "name").unwrap_or("?");
        let kind = str_at(rule, "type").unwrap_or("?");
        let health = str_at(rule, "health").unwrap_or("?");
        let result = if health != "ok" {
            Err(anyhow::anyhow!(
                "health {health}: {}",
                str_at(rule, "lastError").unwrap_or_default()
            ))
        } else if kind == "recording" {
            let mut params = vec![("query", name)];
            params.extend(range);
            api.get("/api/v1/query_range", &params)
                .and_then(|d| has_data(&d))
        } else {
            Ok(format!(
                "health ok, {}",
                str_at(rule, "state").unwrap_or("?")
            ))
        };
        let what = if kind == "recording" {
            "recording rule"
        } else {
            "alerting rule"
        };
        checks.push(Check::new(format!("{what} {name}"), result));
    }

    // The alerts on what the recording holds: ml-infer's faults inside its
    // pinned range (42 of them); no loss of any reason.
    checks.push(Check::new(
        "alerts on the demo recording",
        api.get("/api/v1/alerts", &[]).and_then(|d| {
            let alerts: Vec<(String, String, String)> = d
                .get("alerts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|a| {
                    let label = |k: &str| {
                        a.pointer(&format!("/labels/{k}"))
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (
                        label("alertname"),
                        label("comm"),
                        str_at(a, "state").unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let pinned = alerts.iter().any(|(n, c, s)| {
                n == "UacceTraceIopfInPinnedRange" && c == "ml-infer" && s == "firing"
            });
            if !pinned {
                bail!("UacceTraceIopfInPinnedRange is not firing for ml-infer: {alerts:?}");
            }
            if alerts.iter().any(|(n, _, _)| n == "UacceTraceEventsLost") {
                bail!("UacceTraceEventsLost is active on a recording without losses: {alerts:?}");
            }
            Ok(alerts
                .iter()
                .map(|(n, c, s)| format!("{n}{{comm={c:?}}} {s}"))
                .collect::<Vec<_>>()
                .join(", "))
        }),
    ));

    serve.alive(&serve_log)?;
    drop(serve);
    drop(prom);
    // The logs stay for a failure; the TSDB goes.
    let _ = fs::remove_dir_all(scratch.join("data"));
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn root() -> PathBuf {
        crate::base::workspace_root().expect("workspace root")
    }

    fn shipped() -> Dashboard {
        let text = fs::read_to_string(root().join(DASHBOARD)).expect("read the dashboard");
        parse_dashboard(&text).expect("parse the dashboard")
    }

    #[test]
    fn substitutes_every_form() {
        let values: BTreeMap<String, String> = [
            ("host", ".*"),
            ("__rate_interval", "4s"),
            ("__range", "30s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            substitute(
                r#"rate(x{instance=~"$host",a=~"${host}",b=~"${host:regex}",c=~"[[host]]"}[$__rate_interval]) + y[$__range]"#,
                &values
            )
            .expect("substitute"),
            r#"rate(x{instance=~".*",a=~".*",b=~".*",c=~".*"}[4s]) + y[30s]"#
        );
        assert!(substitute("x{a=~\"$nope\"}", &values).is_err());
        assert!(substitute("x{a=~\"${host\"}", &values).is_err());
        assert!(substitute("x $ y", &values).is_err());
        assert_eq!(
            substitute("x[5m] offset 1m", &values).expect("no variables"),
            "x[5m] offset 1m"
        );
    }

    #[test]
    fn label_values_forms() {
        assert_eq!(
            parse_label_values("label_values(up{job=\"a,b\"}, instance)").expect("parse"),
            (Some("up{job=\"a,b\"}".to_owned()), "instance".to_owned())
        );
        assert_eq!(
            parse_label_values("label_values(comm)").expect("parse"),
            (None, "comm".to_owned())
        );
        assert!(parse_label_values("query_result(up)").is_err());
    }

    #[test]
    fn has_data_wants_a_number() {
        let v = |s: &str| serde_json::from_str::<Value>(s).expect("json");
        assert!(has_data(&v(r#"{"resultType":"matrix","result":[]}"#)).is_err());
        assert!(has_data(&v(
            r#"{"result":[{"metric":{},"values":[[1,"NaN"],[2,"NaN"]]}]}"#
        ))
        .is_err());
        assert_eq!(
            has_data(&v(
                r#"{"result":[{"metric":{},"values":[[1,"NaN"],[2,"0"]]}]}"#
            ))
            .expect("data"),
            "1 series, 1 values"
        );
        assert_eq!(
            has_data(&v(r#"{"result":[{"metric":{},"value":[1,"3"]}]}"#)).expect("data"),
            "1 series, 1 values"
        );
    }

    /// The shipped dashboard: a datasource variable every panel and query
    /// uses, every other variable with an "All" value, unique panel ids and
    /// every query's variables known.
    #[test]
    fn shipped_dashboard_is_consistent() {
        let text = fs::read_to_string(root().join(DASHBOARD)).expect("read the dashboard");
        let json: Value = serde_json::from_str(&text).expect("JSON");
        let dash = shipped();
        assert!(dash
            .variables
            .iter()
            .any(|v| v.name == "datasource" && v.kind == "datasource"));
        for name in ["host", "comm", "device"] {
            let v = dash
                .variables
                .iter()
                .find(|v| v.name == name)
                .unwrap_or_else(|| panic!("no variable {name}"));
            assert_eq!(v.all_value.as_deref(), Some(".*"), "{name}");
            assert!(v
                .query
                .as_deref()
                .is_some_and(|q| parse_label_values(q).is_ok()));
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut stack: Vec<&Value> = json["panels"].as_array().expect("panels").iter().collect();
        let mut n = 0;
        while let Some(p) = stack.pop() {
            n += 1;
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "duplicate id"
            );
            if let Some(nested) = p.get("panels").and_then(Value::as_array) {
                stack.extend(nested);
            }
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
                for t in p["targets"].as_array().expect("targets") {
                    assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
                }
            }
        }
        assert!(n >= 10, "{n} panels");
        let values = variable_values(&dash, 60);
        for t in &dash.targets {
            let q = substitute(&t.expr, &values).expect("every variable known");
            assert!(!q.contains('$'), "{q}");
        }
    }

    /// Every metric family the dashboard and the rules read is one that
    /// `serve` writes (its exposition module names them all), so a renamed
    /// metric fails here, before the live check.
    #[test]
    fn dashboard_and_rules_read_metrics_serve_exports() {
        let root = root();
        let exporter = fs::read_to_string(root.join("uacce-trace/src/commands/serve/metrics.rs"))
            .expect("read metrics.rs");
        let mut texts = vec![fs::read_to_string(root.join(DASHBOARD)).expect("dashboard")];
        for f in RULE_FILES.iter().chain([&RULES_TEST]) {
            texts.push(fs::read_to_string(root.join(RULES_DIR).join(f)).expect("rules"));
        }
        let mut names = std::collections::BTreeSet::new();
        for text in &texts {
            for (i, _) in text.match_indices("uacce_trace_") {
                // Recorded names (`level:metric:op`, checked live) are left
                // out; a metric name ends at a non-name character.
                if text[..i].ends_with(':') {
                    continue;
                }
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
        let suffixes = ["_bucket", "_count", "_sum"];
        let mut missing = Vec::new();
        for name in &names {
            let family = suffixes
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            let quoted = |n: &str| exporter.contains(&format!("\"{n}\""));
            if !(quoted(name) || quoted(family)) {
                missing.push(name.clone());
            }
        }
        assert!(names.len() > 10, "{names:?}");
        assert!(
            missing.is_empty(),
            "not exported by serve (uacce-trace/src/commands/serve/metrics.rs): {missing:?}"
        );
    }
}
