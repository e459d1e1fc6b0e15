//! A configuration file kept in memory and read again when it changes:
//! the agency registry and the trust file. The file is looked at no more
//! often than every `interval`; it is read again when its modification
//! time or its size changed (a copy that keeps the old time, or a
//! filesystem with coarse times, still changes the size mostly). A file
//! that no longer loads is reported and what was in force stays, and it
//! is not tried again until it changes once more.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

/// `T` loaded from a file, reloaded when the file changes.
pub struct Reloaded<T> {
    path: PathBuf,
    interval: Duration,
    state: RwLock<State<T>>,
}

struct State<T> {
    value: T,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<T> Reloaded<T> {
    /// Loads `path` now; an error is the caller's to report.
    pub fn open<E>(
        path: &Path,
        interval: Duration,
        load: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<Self, E> {
        let stamp = stamp(path);
        let value = load(path)?;
        Ok(Reloaded {
            path: path.to_owned(),
            interval,
            state: RwLock::new(State {
                value,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// A value that no file backs: never reloaded.
    pub fn fixed(value: T) -> Self {
        Reloaded {
            path: PathBuf::new(),
            interval: Duration::MAX,
            state: RwLock::new(State {
                value,
                stamp: None,
                checked: Instant::now(),
            }),
        }
    }

    /// Reads the file again if `interval` passed and it changed; `loaded`
    /// is told the new value, or the error and the value that stays.
    /// Cheap to call often.
    pub fn maybe_reload<E>(
        &self,
        load: impl FnOnce(&Path) -> Result<T, E>,
        loaded: impl FnOnce(Result<&T, (&E, &T)>),
    ) {
        {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            if self.path.as_os_str().is_empty() || st.checked.elapsed() < self.interval {
                return;
            }
        }
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        st.checked = Instant::now();
        let now = stamp(&self.path);
        if now.is_some() && now == st.stamp {
            return;
        }
        // Not tried again until it changes, whatever the outcome.
        st.stamp = now;
        match load(&self.path) {
            Ok(value) => {
                loaded(Ok(&value));
                st.value = value;
            }
            Err(e) => loaded(Err((&e, &st.value))),
        }
    }

    /// Reads the value in force.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()).value)
    }
}
