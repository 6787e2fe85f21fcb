//! Summary statistics of a set of samples: median, p95, min, max.

use serde::{Deserialize, Serialize};

/// Summary of one metric over all its samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (mean of the two middle samples when `n` is even).
    pub median: f64,
    /// 95th percentile, linear interpolation between closest ranks (as numpy's default).
    pub p95: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or any is not finite).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            n: sorted.len(),
            median: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// The `p`th percentile of sorted, non-empty `sorted`, interpolating linearly between the
/// two closest ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let weight = rank - lower as f64;
    sorted[lower] + (sorted[upper] - sorted[lower]) * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(
            (s.n, s.median, s.min, s.max, s.mean),
            (3, 3.0, 1.0, 5.0, 3.0)
        );
        assert!((s.p95 - 4.8).abs() < 1e-9);
    }

    #[test]
    fn even_count_median_is_mean_of_middle_two() {
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn p95_of_one_to_hundred_and_one() {
        let samples: Vec<f64> = (1..=101).map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(s.median, 51.0);
        assert_eq!(s.p95, 96.0);
    }

    #[test]
    fn single_sample_is_every_statistic() {
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!((s.median, s.p95, s.min, s.max), (7.5, 7.5, 7.5, 7.5));
    }

    #[test]
    fn empty_or_nan_gives_none() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }
}
