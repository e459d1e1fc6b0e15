//! Readiness: one shared flag with the reason shown when not ready, set by
//! the pipeline and the sources, read by `/health/ready` and the metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::internal_events::Readiness;

/// Shared readiness flag with the reason shown when not ready.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    ready: AtomicBool,
    why: Mutex<&'static str>,
}

impl Health {
    pub fn set(&self, ready: bool, why: &'static str) {
        let was = self.inner.ready.swap(ready, Ordering::SeqCst);
        *self.inner.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
        if was != ready {
            Readiness { ready, why }.emit();
        }
    }

    pub fn ready(&self) -> (bool, &'static str) {
        (
            self.inner.ready.load(Ordering::SeqCst),
            *self.inner.why.lock().unwrap_or_else(|p| p.into_inner()),
        )
    }
}
