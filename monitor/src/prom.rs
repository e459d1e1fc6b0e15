//! The Prometheus text format, read with `prom_text_format_parser`.
//!
//! Why that crate: it is the one we found that reads the engine's output
//! correctly. `prometheus-parse` splits label values on `,` and `=` and
//! does not unescape (`reason="a,b"` becomes two labels);
//! `openmetrics-parser` refuses a family whose samples carry different
//! label sets, which the engine emits on purpose (a zero-initialised
//! unlabelled series beside per-agency ones); `nom-openmetrics` refuses the
//! blank line the exporter writes between families. This one groups
//! histograms (`_bucket`/`le`, `_sum`, `_count`), keeps `# TYPE`/`# HELP`,
//! accepts any label set, and reports a broken family without losing the
//! others. It leaves label values escaped; [`unescape`] finishes the job.

use prom_text_format_parser::{parse_scrape, ScrapeParseError, Type, ValueType};

/// One metric family of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name (a histogram's without `_bucket`/`_sum`/`_count`).
    pub name: String,
    /// The declared `# TYPE` (`counter`, `gauge`, `histogram`, `summary`,
    /// `untyped`).
    pub kind: &'static str,
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `""`, `"_bucket"`, `"_sum"` or `"_count"`.
    pub suffix: &'static str,
    /// Label names and unescaped values, as written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of one label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed exposition: the families read, and how many could not be.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
    /// Families (or lines) that could not be read; the rest still count.
    pub errors: usize,
    pub first_error: Option<String>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}

/// Parses Prometheus text format. A line that cannot be tokenised fails
/// the whole text (the engine never writes one); a family that cannot be
/// assembled is counted in `errors` and skipped.
pub fn parse(text: &str) -> Result<Exposition, crate::Error> {
    if text.trim().is_empty() {
        return Ok(Exposition::default());
    }
    // The line parser needs a final newline, which some exporters omit.
    let owned;
    let text = if text.is_empty() || text.ends_with('\n') {
        text
    } else {
        owned = format!("{text}\n");
        &owned
    };
    let (metrics, error) = parse_scrape(text);
    let (errors, first_error) = match error {
        None => (0, None),
        Some(ScrapeParseError::Parse(e)) => return Err(crate::Error::Parse(e)),
        Some(ScrapeParseError::Collect(errs)) => (
            errs.len(),
            errs.first()
                .map(|e| format!("lines {:?}: {}", e.line_no, e.error)),
        ),
    };
    let mut families = Vec::with_capacity(metrics.len());
    for metric in metrics {
        let kind = match metric.kind {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
            Type::Summary => "summary",
            Type::Untyped => "untyped",
        };
        // Without a `# TYPE` line a histogram's parts arrive as untyped
        // families named with their suffix; name them as their family.
        let (name, untyped_suffix) = if metric.kind == Type::Untyped {
            split_suffix(&metric.name)
        } else {
            (metric.name.as_str(), "")
        };
        let samples = metric
            .samples
            .iter()
            .filter_map(|s| {
                let suffix = match (metric.kind, s.value.value_type) {
                    (Type::Histogram, ValueType::Sample) => "_bucket",
                    (_, ValueType::Sum) => "_sum",
                    (_, ValueType::Count) => "_count",
                    _ => untyped_suffix,
                };
                Some(Sample {
                    suffix,
                    labels: s
                        .labels
                        .iter()
                        .map(|l| (l.key.clone(), unescape(&l.value)))
                        .collect(),
                    value: parse_value(s.value.value.as_str())?,
                })
            })
            .collect();
        families.push(Family {
            name: name.to_owned(),
            kind,
            samples,
        });
    }
    Ok(Exposition {
        families,
        errors,
        first_error,
    })
}

fn split_suffix(name: &str) -> (&str, &'static str) {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return (base, suffix);
        }
    }
    (name, "")
}

/// A sample value as Go's `ParseFloat` writes it (`+Inf`, `-Inf`, `NaN`).
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Undoes the text format's label-value escapes: `\\`, `\"`, `\n`.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE_LIKE: &str = "\
# HELP karpoosheh_notices_served_total Notices served.
# TYPE karpoosheh_notices_served_total counter
karpoosheh_notices_served_total 0
karpoosheh_notices_served_total{agency=\"tax\"} 5

# TYPE karpoosheh_notices_rejected_total counter
karpoosheh_notices_rejected_total{agency=\"tax\",reason=\"a \\\"b\\\", c=d\\\\e\\nf\"} 3

# HELP karpoosheh_store_write_seconds Time of one durable write.
# TYPE karpoosheh_store_write_seconds histogram
karpoosheh_store_write_seconds_bucket{le=\"0.001\"} 1
karpoosheh_store_write_seconds_bucket{le=\"0.01\"} 4
karpoosheh_store_write_seconds_bucket{le=\"+Inf\"} 5
karpoosheh_store_write_seconds_sum 0.5
karpoosheh_store_write_seconds_count 5

# TYPE karpoosheh_ready gauge
karpoosheh_ready 1

";

    #[test]
    fn reads_the_engine_layout_with_differing_label_sets_and_blank_lines() {
        let e = parse(ENGINE_LIKE).unwrap();
        assert_eq!(e.errors, 0);
        let served = e.family("karpoosheh_notices_served_total").unwrap();
        assert_eq!(served.kind, "counter");
        assert_eq!(served.samples.len(), 2);
        assert_eq!(served.samples[1].label("agency"), Some("tax"));
        assert_eq!(served.samples[1].value, 5.0);
        assert_eq!(e.family("karpoosheh_ready").unwrap().samples[0].value, 1.0);
    }

    #[test]
    fn label_values_are_unescaped_and_never_split() {
        let e = parse(ENGINE_LIKE).unwrap();
        let s = &e
            .family("karpoosheh_notices_rejected_total")
            .unwrap()
            .samples[0];
        assert_eq!(s.labels.len(), 2, "{:?}", s.labels);
        assert_eq!(s.label("reason"), Some("a \"b\", c=d\\e\nf"));
    }

    #[test]
    fn histograms_keep_buckets_sum_and_count() {
        let e = parse(ENGINE_LIKE).unwrap();
        let h = e.family("karpoosheh_store_write_seconds").unwrap();
        assert_eq!(h.kind, "histogram");
        let buckets: Vec<(f64, f64)> = h
            .samples
            .iter()
            .filter(|s| s.suffix == "_bucket")
            .map(|s| (parse_value(s.label("le").unwrap()).unwrap(), s.value))
            .collect();
        assert_eq!(
            buckets,
            vec![(0.001, 1.0), (0.01, 4.0), (f64::INFINITY, 5.0)]
        );
        assert!(h
            .samples
            .iter()
            .any(|s| s.suffix == "_count" && s.value == 5.0));
        assert!(h
            .samples
            .iter()
            .any(|s| s.suffix == "_sum" && s.value == 0.5));
    }

    #[test]
    fn untyped_histogram_parts_are_named_as_their_family() {
        let e = parse("x_seconds_bucket{le=\"1\"} 2\nx_seconds_count 2\n").unwrap();
        assert!(
            e.families.iter().all(|f| f.name == "x_seconds"),
            "{:?}",
            e.families
        );
        assert_eq!(e.families[0].samples[0].suffix, "_bucket");
    }

    #[test]
    fn go_float_spellings() {
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("1.5e3"), Some(1500.0));
        assert_eq!(parse_value("12"), Some(12.0));
    }

    #[test]
    fn a_missing_final_newline_is_tolerated() {
        let e = parse("# TYPE a counter\na 1").unwrap();
        assert_eq!(e.family("a").unwrap().samples[0].value, 1.0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("<html>502 Bad Gateway</html>\n").is_err());
    }

    #[test]
    fn empty_text_has_no_families() {
        assert!(parse("").unwrap().families.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panicking(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn any_label_value_round_trips(v in "\\PC{0,40}") {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let text = format!("# TYPE a counter\na{{l=\"{escaped}\"}} 1\n");
            let e = parse(&text).unwrap();
            proptest::prop_assert_eq!(e.family("a").unwrap().samples[0].label("l"), Some(v.as_str()));
        }
    }
}
