//! `pss-guard serve`: the DaemonSet's main process. Follows the node's decision log (across
//! rotation and truncation), prints each record to stdout with the Kubernetes node name, so
//! `kubectl logs` and any log pipeline see every refusal, and serves Prometheus metrics:
//!
//! - `pss_guard_decisions_total{decision,namespace}`
//! - `pss_guard_violations_total{decision,check,namespace}` (enforced level; `audit` records
//!   count their audit-level violations)
//! - `pss_guard_hook_eval_seconds` histogram, from each record's `eval_us`
//! - `pss_guard_log_lines_total`, `pss_guard_log_unparsed_total`
//!
//! Plain `std::net`: one GET at a time, which is all a scraper needs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:9713";
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// A log line longer than this is not a record pss-guard wrote; it is counted and dropped.
const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {0}")]
    Listen(SocketAddr, #[source] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub log: PathBuf,
    pub listen: SocketAddr,
    /// The Kubernetes node name (downward API); replaces the host name in printed records.
    pub node: Option<String>,
    /// Print and count the records already in the log, not only new ones.
    pub from_start: bool,
    pub poll: Duration,
}

#[derive(Debug, Default)]
pub struct Metrics {
    decisions: BTreeMap<(String, String), u64>,
    violations: BTreeMap<(String, String, String), u64>,
    buckets: [u64; BUCKETS.len()],
    eval_count: u64,
    eval_sum: f64,
    lines: u64,
    unparsed: u64,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one record.
    pub fn observe(&mut self, rec: &Value) {
        self.lines += 1;
        let s = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let decision = s("decision");
        let ns = s("namespace");
        *self
            .decisions
            .entry((decision.clone(), ns.clone()))
            .or_insert(0) += 1;
        let list = if decision == "audit" {
            "audit_violations"
        } else {
            "violations"
        };
        if let Some(vs) = rec.get(list).and_then(Value::as_array) {
            for v in vs {
                let check = v.get("check").and_then(Value::as_str).unwrap_or("");
                *self
                    .violations
                    .entry((decision.clone(), check.to_owned(), ns.clone()))
                    .or_insert(0) += 1;
            }
        }
        if let Some(us) = rec.get("eval_us").and_then(Value::as_u64) {
            let secs = us as f64 / 1e6;
            self.eval_count += 1;
            self.eval_sum += secs;
            for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
                if secs <= le {
                    *b += 1;
                }
            }
        }
    }

    pub fn unparsed(&mut self) {
        self.lines += 1;
        self.unparsed += 1;
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str(
            "# HELP pss_guard_decisions_total Hook decisions read from the node's decision log.\n",
        );
        o.push_str("# TYPE pss_guard_decisions_total counter\n");
        for ((d, ns), n) in &self.decisions {
            o.push_str(&format!(
                "pss_guard_decisions_total{{decision=\"{}\",namespace=\"{}\"}} {n}\n",
                escape(d),
                escape(ns)
            ));
        }
        o.push_str("# HELP pss_guard_violations_total Violated checks, by decision, check ID and namespace.\n");
        o.push_str("# TYPE pss_guard_violations_total counter\n");
        for ((d, c, ns), n) in &self.violations {
            o.push_str(&format!(
                "pss_guard_violations_total{{decision=\"{}\",check=\"{}\",namespace=\"{}\"}} {n}\n",
                escape(d),
                escape(c),
                escape(ns)
            ));
        }
        o.push_str(
            "# HELP pss_guard_hook_eval_seconds Time the hook spent evaluating a container.\n",
        );
        o.push_str("# TYPE pss_guard_hook_eval_seconds histogram\n");
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            o.push_str(&format!(
                "pss_guard_hook_eval_seconds_bucket{{le=\"{le}\"}} {b}\n"
            ));
        }
        o.push_str(&format!(
            "pss_guard_hook_eval_seconds_bucket{{le=\"+Inf\"}} {}\n",
            self.eval_count
        ));
        o.push_str(&format!(
            "pss_guard_hook_eval_seconds_sum {}\npss_guard_hook_eval_seconds_count {}\n",
            self.eval_sum, self.eval_count
        ));
        o.push_str("# HELP pss_guard_log_lines_total Lines read from the decision log.\n");
        o.push_str("# TYPE pss_guard_log_lines_total counter\n");
        o.push_str(&format!("pss_guard_log_lines_total {}\n", self.lines));
        o.push_str(
            "# HELP pss_guard_log_unparsed_total Decision log lines that were not JSON objects.\n",
        );
        o.push_str("# TYPE pss_guard_log_unparsed_total counter\n");
        o.push_str(&format!("pss_guard_log_unparsed_total {}\n", self.unparsed));
        o
    }
}

/// Handles one complete log line: counts it and returns what to print.
pub fn process_line(line: &str, node: Option<&str>, metrics: &Mutex<Metrics>) -> Option<String> {
    let line = line.trim_end();
    if line.is_empty() {
        return None;
    }
    let mut m = metrics.lock().unwrap_or_else(|p| p.into_inner());
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(mut rec)) => {
            m.observe(&Value::Object(rec.clone()));
            if let Some(n) = node {
                rec.insert("node".into(), Value::String(n.to_owned()));
            }
            serde_json::to_string(&rec).ok()
        }
        _ => {
            m.unparsed();
            None
        }
    }
}

/// Follows the log forever: waits for it to appear, reads whole lines, reopens it from the
/// start when it is replaced (rotation) or shrinks (truncation).
fn follow(opts: &ServeOptions, metrics: &Mutex<Metrics>) {
    let mut first = true;
    loop {
        let Ok(f) = File::open(&opts.log) else {
            std::thread::sleep(opts.poll);
            first = false;
            continue;
        };
        let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
        let mut r = BufReader::new(f);
        let mut pos = 0u64;
        if first && !opts.from_start {
            pos = r.seek(SeekFrom::End(0)).unwrap_or(0);
        }
        first = false;
        let mut buf = Vec::new();
        loop {
            match (&mut r)
                .take((MAX_LINE + 1) as u64)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) => {
                    // At the end: has the file been replaced or truncated under us?
                    let moved = match std::fs::metadata(&opts.log) {
                        Ok(m) => m.ino() != ino || m.len() < pos,
                        Err(_) => true,
                    };
                    if moved {
                        break;
                    }
                    std::thread::sleep(opts.poll);
                }
                Ok(n) => {
                    pos += n as u64;
                    if buf.last() == Some(&b'\n') || buf.len() > MAX_LINE {
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if buf.len() > MAX_LINE {
                            metrics.lock().unwrap_or_else(|p| p.into_inner()).unparsed();
                        } else if let Some(out) = process_line(&line, opts.node.as_deref(), metrics)
                        {
                            let mut so = std::io::stdout().lock();
                            let _ = writeln!(so, "{out}");
                            let _ = so.flush();
                        }
                        buf.clear();
                    }
                }
                Err(_) => break,
            }
        }
    }
}

fn handle(mut s: TcpStream, metrics: &Mutex<Metrics>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.lock().unwrap_or_else(|p| p.into_inner()).render(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_owned(),
        ),
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub fn run(opts: ServeOptions) -> Result<(), ServeError> {
    let listener =
        TcpListener::bind(opts.listen).map_err(|e| ServeError::Listen(opts.listen, e))?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
    eprintln!(
        "pss-guard serve: following {} ; metrics on http://{addr}/metrics",
        opts.log.display()
    );
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let m = Arc::clone(&metrics);
    let o = opts.clone();
    std::thread::spawn(move || follow(&o, &m));
    for s in listener.incoming().flatten() {
        handle(s, &metrics);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_by_decision_check_and_namespace() {
        let m = Mutex::new(Metrics::default());
        let line = r#"{"decision":"refused","namespace":"default","violations":[{"check":"privileged","reason":"privileged","detail":"x"}],"eval_us":300,"node":"host"}"#;
        let out = process_line(line, Some("node-1"), &m).unwrap();
        assert!(out.contains("\"node\":\"node-1\""), "{out}");
        assert!(process_line("not json", None, &m).is_none());
        let text = m.lock().unwrap().render();
        assert!(
            text.contains(
                "pss_guard_decisions_total{decision=\"refused\",namespace=\"default\"} 1"
            )
        );
        assert!(text.contains(
            "pss_guard_violations_total{decision=\"refused\",check=\"privileged\",namespace=\"default\"} 1"
        ));
        assert!(text.contains("pss_guard_hook_eval_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("pss_guard_hook_eval_seconds_bucket{le=\"0.00025\"} 0"));
        assert!(text.contains("pss_guard_log_unparsed_total 1"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
