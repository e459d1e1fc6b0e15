//! Hashing and drawing: the keyed mix that makes record `i` a pure
//! function of `(seed, i)`, picks from cumulative shares, and the normal
//! and log-uniform draws.

use rand::rngs::SmallRng;
use rand::Rng;

pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn cumulate(weights: impl Iterator<Item = f64>, out: &mut [f64]) {
    let w: Vec<f64> = weights.collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    for (o, x) in out.iter_mut().zip(w) {
        acc += x / total;
        *o = acc;
    }
    if let Some(last) = out.last_mut() {
        *last = 1.0;
    }
}

pub(crate) fn pick_cum(cum: &[f64], u: f64) -> usize {
    cum.iter().position(|&c| u < c).unwrap_or(cum.len() - 1)
}

pub(crate) fn normal(rng: &mut SmallRng) -> f64 {
    let u1 = rng.random::<f64>().max(1e-12);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(crate) fn log_uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}
