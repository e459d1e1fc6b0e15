//! Data collection, apart from the screen: one thread per node scrapes its
//! `/metrics` on the interval (a slow or dead node blocks only its own
//! thread, for at most the scrape timeout), and one collector thread owns
//! the [`Fleet`], computes a [`State`] and publishes it on a [`Watch`] —
//! when something changed, at most once per `refresh`, and at least once
//! per interval (so silence shows as silence).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};

use crate::config::{Config, Target};
use crate::fleet::Fleet;
use crate::state::{Params, State};

/// The latest value and its generation; readers wait for a newer one.
/// (tokio's `watch`, for threads.)
pub(crate) struct Watch<T> {
    inner: Arc<(Mutex<Slot<T>>, Condvar)>,
}

/// The generation and the latest value.
type Slot<T> = (u64, Option<Arc<T>>);

impl<T> Clone for Watch<T> {
    fn clone(&self) -> Self {
        Watch {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Watch<T> {
    pub fn new() -> Watch<T> {
        Watch {
            inner: Arc::new((Mutex::new((0, None)), Condvar::new())),
        }
    }

    pub fn publish(&self, value: T) {
        let (lock, cv) = &*self.inner;
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        g.1 = Some(Arc::new(value));
        cv.notify_all();
    }

    /// The generation of the latest value (0 before the first).
    #[cfg(test)]
    pub fn generation(&self) -> u64 {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    pub fn latest(&self) -> Option<(u64, Arc<T>)> {
        let g = self.inner.0.lock().unwrap_or_else(|p| p.into_inner());
        g.1.clone().map(|v| (g.0, v))
    }

    /// Waits up to `timeout` for a value newer than generation `seen`.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> Option<(u64, Arc<T>)> {
        let (lock, cv) = &*self.inner;
        let g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |g| g.0 <= seen)
            .unwrap_or_else(|p| p.into_inner());
        if g.0 > seen {
            g.1.clone().map(|v| (g.0, v))
        } else {
            None
        }
    }
}

struct Scraped {
    node: usize,
    t: f64,
    wall: SystemTime,
    body: Result<String, String>,
}

/// The running collection: states to read, parameters to change.
pub(crate) struct Collector {
    pub states: Watch<State>,
    control: Sender<Params>,
    stop: Arc<AtomicBool>,
}

impl Collector {
    /// Starts one scraper thread per target and the collector thread.
    pub fn start(cfg: &Config, targets: Vec<Target>, params: Params) -> std::io::Result<Collector> {
        let states = Watch::new();
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Instant::now();
        // Bounded: a collector that stalls must not let scrapes pile up.
        let (tx, rx) = crossbeam_channel::bounded::<Scraped>(targets.len() * 4 + 4);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let interval = cfg.scrape_interval.0;
        for (node, target) in targets.iter().enumerate() {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(cfg.timeout()))
                .user_agent(concat!("karpoosheh-monitor/", env!("CARGO_PKG_VERSION")))
                .build()
                .into();
            let (url, tx, stop) = (target.url.clone(), tx.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("scrape-{node}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let tick = Instant::now();
                        let body = scrape(&agent, &url);
                        let msg = Scraped {
                            node,
                            t: clock.elapsed().as_secs_f64(),
                            wall: SystemTime::now(),
                            body,
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                        sleep_until(tick + interval, &stop);
                    }
                })?;
        }
        drop(tx);
        let fleet = Fleet::new(cfg, targets);
        let (w, s) = (states.clone(), stop.clone());
        let (refresh, interval) = (cfg.refresh.0, cfg.scrape_interval.0);
        std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                collect(
                    fleet, params, rx, control_rx, w, s, clock, refresh, interval,
                )
            })?;
        Ok(Collector {
            states,
            control,
            stop,
        })
    }

    /// Asks for a new scope, window or pause point; a state for it follows
    /// at once.
    pub fn request(&self, params: Params) {
        let _ = self.control.send(params);
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Scrapers blocked on a dead node finish within the scrape timeout
        // and then exit; nobody waits for them.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
fn collect(
    mut fleet: Fleet,
    mut params: Params,
    scrapes: Receiver<Scraped>,
    control: Receiver<Params>,
    states: Watch<State>,
    stop: Arc<AtomicBool>,
    clock: Instant,
    refresh: Duration,
    interval: Duration,
) {
    let mut dirty = true;
    let mut last: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let since = last.map_or(Duration::MAX, |l| l.elapsed());
        let mut now_please = false;
        if (dirty && since >= refresh) || since >= interval {
            states.publish(fleet.snapshot(
                params,
                clock.elapsed().as_secs_f64(),
                SystemTime::now(),
            ));
            last = Some(Instant::now());
            dirty = false;
            continue;
        }
        let wait = if dirty {
            refresh - since
        } else {
            interval - since
        };
        select! {
            recv(scrapes) -> msg => match msg {
                Ok(s) => {
                    fleet.record(s.node, s.t, s.wall, s.body);
                    dirty = true;
                }
                Err(_) => return,
            },
            recv(control) -> p => match p {
                Ok(p) => {
                    params = p;
                    now_please = true;
                }
                Err(_) => return,
            },
            default(wait.min(Duration::from_millis(200))) => {}
        }
        if now_please {
            // A key was pressed: answer it now, whatever the throttle says.
            while let Ok(p) = control.try_recv() {
                params = p;
            }
            states.publish(fleet.snapshot(
                params,
                clock.elapsed().as_secs_f64(),
                SystemTime::now(),
            ));
            last = Some(Instant::now());
            dirty = false;
        }
    }
}

fn sleep_until(when: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= when {
            return;
        }
        std::thread::sleep((when - now).min(Duration::from_millis(100)));
    }
}

/// One GET of a node's metrics; the error as one short line.
fn scrape(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut res = agent.get(url).call().map_err(describe)?;
    res.body_mut()
        .with_config()
        // The engine's /metrics is tens of kB; anything huge is not it.
        .limit(32 * 1024 * 1024)
        .read_to_string()
        .map_err(describe)
}

fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("HTTP {code}"),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "timed out".into(),
            _ => io.to_string(),
        },
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_hands_out_the_newest_and_wakes_waiters() {
        let w: Watch<u32> = Watch::new();
        assert!(w.latest().is_none());
        assert!(w.wait_newer(0, Duration::from_millis(10)).is_none());
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wait_newer(0, Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        w.publish(7);
        w.publish(8);
        let got = t.join().unwrap().unwrap();
        assert!(*got.1 == 7 || *got.1 == 8);
        assert_eq!(w.latest().map(|x| *x.1), Some(8));
        assert_eq!(w.generation(), 2);
    }

    /// A node that accepts connections and never answers must not hold up
    /// the others: their states keep coming, and it is reported late/down.
    #[test]
    fn a_hanging_node_never_stalls_the_others() {
        use std::io::{Read, Write};
        let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (ga, ha) = (good.local_addr().unwrap(), hang.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in good.incoming() {
                let mut s = s.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let body = "# TYPE karpoosheh_ready gauge\nkarpoosheh_ready 1\n";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let held = Arc::new(Mutex::new(Vec::new()));
        let h2 = held.clone();
        std::thread::spawn(move || {
            for s in hang.incoming() {
                h2.lock().unwrap().push(s.unwrap()); // accept, read nothing, never answer
            }
        });
        use karpoosheh_schemas::HumanDuration as D;
        let mut cfg = Config {
            scrape_interval: D(Duration::from_millis(200)),
            scrape_timeout: Some(D(Duration::from_millis(200))),
            refresh: D(Duration::from_millis(50)),
            rate_window: D(Duration::from_secs(1)),
            ..Config::default()
        };
        cfg.alerts.node_down_after = D(Duration::from_millis(500));
        let targets = vec![
            Target::parse(&ha.to_string()).unwrap(),
            Target::parse(&ga.to_string()).unwrap(),
        ];
        let params = Params {
            window: Duration::from_secs(60),
            scope: None,
            as_of: None,
        };
        let c = Collector::start(&cfg, targets, params).unwrap();
        let start = Instant::now();
        let mut gen = 0;
        let mut good_scrapes = 0;
        let mut last = None;
        while start.elapsed() < Duration::from_secs(3) {
            if let Some((g, s)) = c.states.wait_newer(gen, Duration::from_millis(500)) {
                gen = g;
                if s.nodes[1].health == crate::state::Health::Up {
                    good_scrapes += 1;
                }
                last = Some(s);
            }
        }
        let last = last.expect("states were published");
        assert!(
            good_scrapes >= 5,
            "the good node kept being shown up: {good_scrapes}"
        );
        assert!(
            matches!(last.nodes[0].health, crate::state::Health::Down { .. }),
            "{:?}",
            last.nodes[0].health
        );
        assert!(
            last.alerts.iter().any(|a| a.key == format!("down {ha}")),
            "{:?}",
            last.alerts
        );
    }
}
