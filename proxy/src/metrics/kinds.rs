//! The metric and label types behind [`super::Metrics`]: closed label sets, the
//! SQLSTATE class cache key, a lock-free histogram, and a counter the analyzer keeps.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::RejectReason;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ResultLabel(pub(super) &'static str);

impl EncodeLabelSet for ResultLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("result", self.0)].encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct QuotaLabel(pub(super) &'static str);

impl EncodeLabelSet for QuotaLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("quota", self.0)].encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LimitLabel(pub(super) &'static str);

impl EncodeLabelSet for LimitLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("limit", self.0)].encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CheckLabel(pub(super) &'static str);

impl EncodeLabelSet for CheckLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("check", self.0)].encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct WouldLabel(pub(super) &'static str);

impl EncodeLabelSet for WouldLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("would", self.0)].encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ReasonLabel(pub(super) RejectReason);

impl EncodeLabelSet for ReasonLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("reason", self.0.as_str())].encode(encoder)
    }
}

/// Number of symbols a SQLSTATE character can take: `0-9` and `A-Z`.
pub(super) const SQLSTATE_RADIX: usize = 36;
/// Slot for SQLSTATEs that are too short or use other characters.
pub(super) const INVALID_CLASS_SLOT: usize = SQLSTATE_RADIX * SQLSTATE_RADIX;

/// Two-character SQLSTATE class; `None` stands for malformed input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ClassLabel(pub(super) Option<[u8; 2]>);

impl ClassLabel {
    pub(super) fn as_str(&self) -> &str {
        match &self.0 {
            // Only [0-9A-Z] bytes are ever stored, so this is always valid UTF-8.
            Some(class) => std::str::from_utf8(class).unwrap_or("invalid"),
            None => "invalid",
        }
    }
}

impl EncodeLabelSet for ClassLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        [("sqlstate_class", self.as_str())].encode(encoder)
    }
}

pub(super) fn sqlstate_digit(b: u8) -> Option<usize> {
    match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'A'..=b'Z' => Some(usize::from(b - b'A') + 10),
        _ => None,
    }
}

/// Maps a SQLSTATE to its cache slot and label.
pub(super) fn sqlstate_class(sqlstate: &[u8]) -> (usize, ClassLabel) {
    if let [a, b, ..] = *sqlstate {
        if let (Some(hi), Some(lo)) = (sqlstate_digit(a), sqlstate_digit(b)) {
            return (hi * SQLSTATE_RADIX + lo, ClassLabel(Some([a, b])));
        }
    }
    (INVALID_CLASS_SLOT, ClassLabel(None))
}

/// Upper bounds of the statement latency buckets in microseconds:
/// 20 exponential steps (factor ≈ 1.94) from 100 µs to 30 s, each rounded to
/// two significant digits so the `le` labels stay readable.
pub(super) fn latency_bounds_micros() -> Vec<u64> {
    const MIN_US: f64 = 100.0;
    const MAX_US: f64 = 30_000_000.0;
    const STEPS: i32 = 20;
    let factor = (MAX_US / MIN_US).powf(1.0 / f64::from(STEPS - 1));
    (0..STEPS)
        .map(|i| {
            let exact = MIN_US * factor.powi(i);
            let unit = 10f64.powi(exact.log10().floor() as i32 - 1);
            ((exact / unit).round() * unit).round() as u64
        })
        .collect()
}

/// Classic histogram kept in plain atomics: prometheus-client's own
/// `Histogram` takes a mutex on every observation.
#[derive(Debug)]
pub(super) struct AtomicHistogram {
    /// Upper bounds in nanoseconds, ascending.
    bounds_ns: Box<[u64]>,
    /// Upper bounds in seconds, for the `le` labels.
    bounds_s: Box<[f64]>,
    /// Non-cumulative counts; one extra slot for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in nanoseconds (584 years before it wraps).
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    pub(super) fn new(bounds_micros: &[u64]) -> Self {
        AtomicHistogram {
            bounds_ns: bounds_micros.iter().map(|us| us * 1_000).collect(),
            bounds_s: bounds_micros.iter().map(|&us| us as f64 / 1e6).collect(),
            counts: (0..=bounds_micros.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let slot = self.bounds_ns.partition_point(|&bound| bound < ns);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// The analyzer's own count of printer mismatches, read at scrape time: the check
/// runs inside the analyzer, which has no metrics registry.
#[derive(Debug)]
pub(super) struct PrinterMismatches;

impl TypedMetric for PrinterMismatches {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for PrinterMismatches {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&maskgate_sql::printer_mismatches(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds_s
            .iter()
            .zip(self.counts.iter())
            .map(|(&le, n)| (le, n.load(Ordering::Relaxed)))
            .collect();
        let overflow = self.counts[self.bounds_s.len()].load(Ordering::Relaxed);
        // The count is derived from the same bucket snapshot so `+Inf` and
        // `_count` agree even while observations race with the scrape.
        let count = buckets.iter().map(|(_, n)| n).sum::<u64>() + overflow;
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Shared handle for a histogram registered in the registry; the registry
/// wants an owned metric, the hot path a cheap reference.
#[derive(Debug, Clone)]
pub(super) struct SharedHistogram(pub(super) std::sync::Arc<AtomicHistogram>);

impl EncodeMetric for SharedHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        AtomicHistogram::TYPE
    }
}
