//! Cost of decoding and validating one notice envelope, the first stage of
//! the pipeline and the one that sees every byte agencies send.
//!
//! Three encodings of a realistic ~1.2 KB notice: ASCII text, Persian text
//! as raw UTF-8, and the same Persian notice with every non-ASCII character
//! `\u`-escaped (what some agencies' JSON writers emit; it forces the
//! decoder to unescape into owned strings).
//!
//! `cargo bench --bench decode` (about 20 seconds).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use karpoosheh_schemas::{decode_notice, Limits};

const ASCII_BODY: &str = "Dear taxpayer,\n\
The assessment of your income tax for the fiscal year 1403 has been issued \
under article 97 of the Direct Taxes Act. The assessed amount, the basis of \
the calculation and the deadlines are set out in the attached document. \
You may pay the assessed amount through the national tax portal or at any \
branch of the banks listed in the attachment, quoting the payment ID below.\n\
If you disagree with the assessment you may object in writing within thirty \
days of service, either through the portal or at your local tax office; an \
objection filed in time suspends collection until it is decided.\n\
Payment ID: 1403-0000-4821-9377\n\
Tax office: Tehran West, unit 12\n\
This notice is served electronically under the executive instruction of the \
national e-inbox; it is legally effective once you have confirmed it twice.";

const PERSIAN_BODY: &str = "مودی گرامی،\n\
برگ تشخیص مالیات عملکرد سال ۱۴۰۳ شما بر اساس ماده ۹۷ قانون مالیات‌های \
مستقیم صادر شد. مبلغ مالیات، مبنای محاسبه و مهلت‌ها در سند پیوست آمده است. \
پرداخت از طریق درگاه ملی مالیات یا شعب بانک‌های طرف قرارداد با شناسه \
پرداخت زیر ممکن است.\n\
در صورت اعتراض، ظرف سی روز از تاریخ ابلاغ از طریق درگاه یا اداره امور \
مالیاتی محل اعتراض کنید؛ اعتراض در مهلت، وصول را تا رسیدگی متوقف می‌کند.\n\
شناسه پرداخت: ۱۴۰۳-۰۰۰۰-۴۸۲۱-۹۳۷۷\n\
اداره امور مالیاتی غرب تهران، واحد ۱۲";

/// A JSON string literal (the texts here need only these escapes).
fn lit(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

fn notice(title: &str, body: &str, recipient: &str, attachment: &str) -> String {
    format!(
        r#"{{"schema_version":1,"agency":"tax","reference":"TX-1404-000123","recipient":{},"kind":"service_notice","title":{},"body":{},"attachments":[{{"name":{},"media_type":"application/pdf","size":48213,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}],"min_access_level":2,"life_event":"tax","expires_at":"2031-01-01T00:00:00+03:30","sent_at":"2026-01-15T14:30:00+03:30","batch_id":"assessments-1403-w42"}}"#,
        lit(recipient),
        lit(title),
        lit(body),
        lit(attachment)
    )
}

fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 3);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn decode(c: &mut Criterion) {
    let limits = Limits::default();
    // A fixed clock (the type, chrono's DateTime<Utc>, is inferred).
    let now = "2026-01-15T12:00:00Z".parse().unwrap();
    let ascii = notice(
        "Tax assessment notice, fiscal year 1403",
        ASCII_BODY,
        "0499370899",
        "assessment-1403.pdf",
    );
    let persian = notice(
        "برگ تشخیص مالیات عملکرد سال ۱۴۰۳",
        PERSIAN_BODY,
        "۰۴۹۹۳۷۰۸۹۹@iran",
        "برگ-تشخیص-۱۴۰۳.pdf",
    );
    let escaped = escape_non_ascii(&persian);

    let cases = [
        ("ascii", ascii),
        ("persian_utf8", persian),
        ("persian_escaped", escaped),
    ];
    let mut group = c.benchmark_group("decode_notice");
    group.throughput(Throughput::Elements(1));
    for (name, json) in &cases {
        // A benchmark of the rejection path would measure something else.
        let n = decode_notice(json.as_bytes(), &limits, now)
            .unwrap_or_else(|r| panic!("{name}: {:?}", r.problems));
        assert_eq!(n.reference, "TX-1404-000123");
        eprintln!("decode_notice/{name}: {} bytes", json.len());
        group.bench_function(*name, |b| {
            b.iter(|| decode_notice(black_box(json.as_bytes()), &limits, now))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: enough for a stable median of a microsecond-scale function.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = decode
}
criterion_main!(benches);
