//! The engine's side of a latency run: its stage histograms, read from
//! its `/metrics` before and after the run, and summarised as quantiles
//! of what was recorded in between (issue 25).
//!
//! The histograms are `karpoosheh_receipt_latency_seconds` (a record's
//! arrival → its receipt acknowledged by the broker) and
//! `karpoosheh_pipeline_stage_seconds{stage}` (batch, commit_queue, seal,
//! settle; docs/operations.md). A quantile here is the upper bound of the
//! bucket it falls in: "p50 ≤ 5 ms", not an interpolated figure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use karpoosheh_engine::metric_names as m;

/// Cumulative bucket counts per series: `{series: {le: count}}`, the
/// series being `receipt` or `stage_<name>`.
pub type Buckets = BTreeMap<String, Vec<(f64, f64)>>;

/// One series' share of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Observations recorded during the run.
    pub count: u64,
    /// Bucket upper bounds of the quantiles, milliseconds; `None` when a
    /// quantile fell in the `+Inf` bucket.
    pub p50_ms_le: Option<f64>,
    pub p90_ms_le: Option<f64>,
    pub p99_ms_le: Option<f64>,
}

/// `GET /metrics` from `addr` (`host:port`, or an `http://` URL).
pub fn scrape(addr: &str) -> Result<Buckets> {
    let hostport = addr
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .trim_end_matches('/');
    let mut s =
        TcpStream::connect(hostport).with_context(|| format!("connecting to {hostport}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    let text = String::from_utf8_lossy(&body);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        bail!("{hostport}: not an HTTP answer");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "{hostport}/metrics answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(parse(&dechunk(rest)));
    }
    Ok(parse(rest))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The latency histograms' buckets in a Prometheus text exposition:
/// `receipt`, `durable` (a record's arrival → its write durable), `store_write`
/// (one write, fsync included) and `stage_<name>`.
pub fn parse(text: &str) -> Buckets {
    let stage = format!("{}_bucket{{", m::PIPELINE_STAGE_SECONDS);
    let whole = [
        (
            format!("{}_bucket{{", m::RECEIPT_LATENCY_SECONDS),
            "receipt",
        ),
        (format!("{}_bucket{{", m::INGEST_LATENCY_SECONDS), "durable"),
        (
            format!("{}_bucket{{", m::STORE_WRITE_SECONDS),
            "store_write",
        ),
    ];
    let mut out = Buckets::new();
    for line in text.lines() {
        let named = whole
            .iter()
            .find_map(|(prefix, name)| Some((line.strip_prefix(prefix.as_str())?, *name)));
        let (rest, name) = match named {
            Some((r, name)) => (r, Some(name)),
            None => match line.strip_prefix(&stage) {
                Some(r) => (r, None),
                None => continue,
            },
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let Some(le) = label("le") else { continue };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        let Ok(count) = value.trim().parse::<f64>() else {
            continue;
        };
        let series = match name {
            Some(name) => name.to_owned(),
            None => format!("stage_{}", label("stage").unwrap_or_default()),
        };
        out.entry(series).or_default().push((le, count));
    }
    for b in out.values_mut() {
        b.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Per series, the quantiles of what was recorded between `before` and
/// `after`. Series with nothing recorded are left out.
pub fn summarise(before: &Buckets, after: &Buckets) -> BTreeMap<String, Summary> {
    let mut out = BTreeMap::new();
    for (series, b) in after {
        let earlier = before.get(series);
        let diff: Vec<(f64, f64)> = b
            .iter()
            .map(|&(le, c)| {
                let c0 = earlier
                    .and_then(|e| e.iter().find(|x| x.0 == le))
                    .map_or(0.0, |x| x.1);
                (le, c - c0)
            })
            .collect();
        let total = diff.last().map_or(0.0, |x| x.1);
        if total <= 0.0 {
            continue;
        }
        let q = |q: f64| {
            diff.iter()
                .find(|x| x.1 >= q * total)
                .and_then(|x| x.0.is_finite().then(|| (x.0 * 1e6).round() / 1e3))
        };
        out.insert(
            series.clone(),
            Summary {
                count: total as u64,
                p50_ms_le: q(0.5),
                p90_ms_le: q(0.9),
                p99_ms_le: q(0.99),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE karpoosheh_receipt_latency_seconds histogram
karpoosheh_receipt_latency_seconds_bucket{le=\"0.005\"} 10
karpoosheh_receipt_latency_seconds_bucket{le=\"0.01\"} 10
karpoosheh_receipt_latency_seconds_bucket{le=\"+Inf\"} 10
karpoosheh_pipeline_stage_seconds_bucket{stage=\"seal\",le=\"0.001\"} 4
karpoosheh_pipeline_stage_seconds_bucket{stage=\"seal\",le=\"+Inf\"} 4
karpoosheh_decode_chunk_seconds_bucket{le=\"0.001\"} 99
";

    const AFTER: &str = "\
karpoosheh_receipt_latency_seconds_bucket{le=\"0.005\"} 60
karpoosheh_receipt_latency_seconds_bucket{le=\"0.01\"} 108
karpoosheh_receipt_latency_seconds_bucket{le=\"+Inf\"} 110
karpoosheh_receipt_latency_seconds_sum 1.5
karpoosheh_pipeline_stage_seconds_bucket{stage=\"seal\",le=\"0.001\"} 4
karpoosheh_pipeline_stage_seconds_bucket{stage=\"seal\",le=\"+Inf\"} 4
karpoosheh_pipeline_stage_seconds_bucket{stage=\"settle\",le=\"0.0025\"} 3
karpoosheh_pipeline_stage_seconds_bucket{stage=\"settle\",le=\"+Inf\"} 4
karpoosheh_ingest_latency_seconds_bucket{le=\"0.002\"} 7
karpoosheh_ingest_latency_seconds_bucket{le=\"+Inf\"} 8
karpoosheh_decode_chunk_seconds_bucket{le=\"0.001\"} 120
";

    #[test]
    fn quantiles_are_of_what_the_run_recorded_only() {
        let s = summarise(&parse(BEFORE), &parse(AFTER));
        // 100 receipts in the run: 50 at ≤ 5 ms, 48 at ≤ 10 ms, 2 above.
        assert_eq!(
            s["receipt"],
            Summary {
                count: 100,
                p50_ms_le: Some(5.0),
                p90_ms_le: Some(10.0),
                p99_ms_le: None,
            }
        );
        // Nothing sealed during the run; a series new in the run counts whole.
        assert!(!s.contains_key("stage_seal"));
        assert_eq!(s["stage_settle"].count, 4);
        assert_eq!(s["stage_settle"].p50_ms_le, Some(2.5));
        assert_eq!(s["stage_settle"].p99_ms_le, None);
        // Arrival → durable, as `durable`.
        assert_eq!(s["durable"].count, 8);
        assert_eq!(s["durable"].p50_ms_le, Some(2.0));
        assert_eq!(s["durable"].p99_ms_le, None);
        // Other histograms are not taken for these.
        assert_eq!(parse(AFTER).len(), 4);
        assert!(!parse(BEFORE).contains_key("decode_chunk"));
    }

    #[test]
    fn a_chunked_body_is_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
