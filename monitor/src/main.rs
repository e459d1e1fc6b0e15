//! `karpoosheh-monitor` — the operators' dashboard. Until its own issue
//! lands this is a plain-text stand-in: it scrapes each engine's
//! `/metrics` once per interval and prints one summary line per node,
//! reading the metric names the engine itself defines.

use std::io::{Read, Write};
use std::time::Duration;

use karpoosheh_schemas::metric_names as m;

fn scrape(addr: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default())
}

/// Sum of every sample of a metric (all label sets).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: karpoosheh-monitor HOST:PORT [HOST:PORT ...]\n(plain-text stand-in for the dashboard; Ctrl-C to stop)");
        std::process::exit(if args.is_empty() { 2 } else { 0 });
    }
    loop {
        for node in &args {
            match scrape(node) {
                Ok(t) => println!(
                    "{node}: received {:.0} stored {:.0} duplicates {:.0} rejected {:.0} dead-lettered {:.0} ready {:.0}",
                    sum(&t, m::RECORDS_RECEIVED),
                    sum(&t, m::NOTICES_STORED),
                    sum(&t, m::NOTICES_DUPLICATE),
                    sum(&t, m::NOTICES_REJECTED),
                    sum(&t, m::DEAD_LETTERS),
                    sum(&t, m::READY)
                ),
                Err(e) => println!("{node}: down ({e})"),
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
