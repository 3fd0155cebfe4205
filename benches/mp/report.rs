//! JSON lines in the schema of ../shared/bench/python/README.md.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// Rounds to 6 significant digits, like the Python harness.
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = 6 - 1 - x.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// How a workload's seconds turn into its unit.
#[derive(Clone, Copy)]
#[allow(dead_code)] // the other units arrive with their workloads
pub enum Unit {
    /// `n` items per second.
    PerSecond(f64, &'static str),
    /// Microseconds per one of `n`.
    MicrosPer(f64, &'static str),
    /// Decimal GB/s for this many bytes.
    GbPerSecond(f64),
    /// Milliseconds, as is.
    Millis,
    /// A speedup: this reference time over the measured time, in "x".
    Ratio(f64),
    /// Not a time: the samples are already in this unit (a size).
    Amount(&'static str),
}

impl Unit {
    fn convert(self, s: f64) -> f64 {
        match self {
            Unit::PerSecond(n, _) => n / s,
            Unit::MicrosPer(n, _) => s / n * 1e6,
            Unit::GbPerSecond(bytes) => bytes / s / 1e9,
            Unit::Millis => s * 1e3,
            Unit::Ratio(reference) => reference / s,
            Unit::Amount(_) => s,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::PerSecond(_, name) | Unit::MicrosPer(_, name) | Unit::Amount(name) => name,
            Unit::GbPerSecond(_) => "GB/s",
            Unit::Millis => "ms",
            Unit::Ratio(_) => "x",
        }
    }
}

/// Prints one measurement line and returns the median seconds.
pub fn emit(workload: &str, imp: &str, params: Value, samples: &[f64], unit: Unit, extra: Option<Value>) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    let (lo, hi) = (sorted[0], sorted[n - 1]);
    let mut rec = Map::new();
    rec.insert("workload".into(), json!(workload));
    rec.insert("impl".into(), json!(imp));
    rec.insert("params".into(), params);
    rec.insert("median_s".into(), json!(round(median)));
    rec.insert("unit_value".into(), json!(round(unit.convert(median))));
    rec.insert("unit".into(), json!(unit.name()));
    rec.insert("min_s".into(), json!(round(lo)));
    rec.insert("max_s".into(), json!(round(hi)));
    rec.insert("unit_value_at_min_s".into(), json!(round(unit.convert(lo))));
    rec.insert("unit_value_at_max_s".into(), json!(round(unit.convert(hi))));
    rec.insert("reps".into(), json!(n));
    rec.insert("samples_s".into(), json!(samples.iter().map(|&s| round(s)).collect::<Vec<_>>()));
    if let Some(extra) = extra {
        rec.insert("extra".into(), extra);
    }
    println!("{}", Value::Object(rec));
    median
}

/// Runs `f` `reps` times; `f` returns the duration of its own timed region.
pub fn repeat(reps: usize, mut f: impl FnMut() -> Duration) -> Vec<f64> {
    (0..reps).map(|_| f().as_secs_f64()).collect()
}

/// Times `f`.
pub fn time(f: impl FnOnce()) -> Duration {
    let t0 = Instant::now();
    f();
    t0.elapsed()
}

/// A progress note on stderr.
pub fn log(msg: &str) {
    eprintln!("{msg}");
}
