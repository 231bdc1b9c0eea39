//! The profile of a run (`Classifier::profile`): where the time of one run goes, per node of the optimised plan and per
//! operator type, slowest first.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::aligned;
use crate::model::NodeTime;

/// Time spent in one node or one operator type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    /// Node name, or operator type.
    pub name: String,
    /// tract's operator (for nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// How many nodes (for operator types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// Mean milliseconds per image.
    pub ms: f64,
    /// Share of the whole run, 0..1.
    pub share: f64,
    /// For a node that multiplies and adds (a convolution, a product): its multiply-adds as the
    /// graph states them (a direct convolution's), times two, per second, in billions. An
    /// algorithm that does fewer multiplications (Winograd's) shows as more GFLOP/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
}

/// A profiled run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// Runs averaged (after one warm-up run).
    pub runs: usize,
    /// Images per run; every time is per image.
    pub batch: usize,
    /// Mean milliseconds of a whole run, per image.
    pub total_ms: f64,
    /// Sum of the nodes' milliseconds.
    pub nodes_ms: f64,
    /// Per operator type, slowest first.
    pub operators: Vec<Timing>,
    /// Per node, slowest first.
    pub layers: Vec<Timing>,
}

impl Profile {
    /// Gathers node times into the profile of a run of `total` on average over `runs`, each
    /// run of `batch` images, per image; `macs` gives the multiply-adds of one image in the
    /// nodes that have them, by name.
    pub(crate) fn new(
        nodes: &[NodeTime],
        total: Duration,
        runs: usize,
        batch: usize,
        macs: &HashMap<String, u64>,
    ) -> Profile {
        let ms = |duration: Duration| ms(duration) / batch.max(1) as f64;
        let total_ms = ms(total);
        let share = |t: f64| if total_ms > 0.0 { t / total_ms } else { 0.0 };
        let layers: Vec<Timing> = nodes
            .iter()
            .map(|n| Timing {
                name: n.name.clone(),
                op: Some(n.op.clone()),
                nodes: None,
                ms: ms(n.time),
                share: share(ms(n.time)),
                gflops: macs
                    .get(&n.name)
                    .filter(|&&m| m > 0 && !n.time.is_zero())
                    .map(|&m| 2.0 * m as f64 / ms(n.time) / 1e6),
            })
            .collect();
        let mut by_op: HashMap<&str, (f64, usize)> = HashMap::new();
        for node in nodes {
            let entry = by_op.entry(node.op.as_str()).or_default();
            entry.0 += ms(node.time);
            entry.1 += 1;
        }
        let mut operators: Vec<Timing> = by_op
            .into_iter()
            .map(|(op, (t, count))| Timing {
                name: op.to_owned(),
                op: None,
                nodes: Some(count),
                ms: t,
                share: share(t),
                gflops: None,
            })
            .collect();
        operators.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
        let nodes_ms = layers.iter().map(|l| l.ms).sum();
        Profile { runs, batch, total_ms, nodes_ms, operators, layers }
    }

    /// The profile as aligned text: operator types, then nodes.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "one image: {:.1} ms in runs of {} (mean of {} after a warm-up run); the nodes add up \
             to {:.1} ms\n\n",
            self.total_ms, self.batch, self.runs, self.nodes_ms
        );
        let row = |t: &Timing| {
            [
                t.name.clone(),
                t.op.clone().or_else(|| t.nodes.map(|n| n.to_string())).unwrap_or_default(),
                format!("{:.2}", t.ms),
                format!("{:.1}%", t.share * 100.0),
                t.gflops.map_or_else(String::new, |g| format!("{g:.1}")),
            ]
        };
        let none: [String; 5] = Default::default();
        let header = ["operator", "nodes", "ms", "share", ""].map(String::from);
        let rows: Vec<[String; 5]> = self.operators.iter().map(row).collect();
        text.push_str(&aligned(&header, &rows, &none, &[false, true, true, true, true]));
        let _ = writeln!(text);
        let header = ["layer", "op", "ms", "share", "GFLOP/s"].map(String::from);
        let rows: Vec<[String; 5]> = self.layers.iter().map(row).collect();
        text.push_str(&aligned(&header, &rows, &none, &[false, false, true, true, true]));
        text
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_summed_and_sorted() {
        let node = |name: &str, op: &str, ms: u64| NodeTime {
            name: name.into(),
            op: op.into(),
            time: Duration::from_millis(ms),
        };
        let nodes = [node("a", "Conv", 30), node("b", "Lrn", 40), node("c", "Conv", 20)];
        let macs = HashMap::from([("a".to_owned(), 1_500_000_000)]);
        let profile = Profile::new(&nodes, Duration::from_millis(100), 3, 1, &macs);
        assert_eq!(profile.operators[0].name, "Conv");
        assert_eq!(profile.operators[0].nodes, Some(2));
        assert!((profile.operators[0].ms - 50.0).abs() < 1e-9);
        assert!((profile.operators[1].share - 0.4).abs() < 1e-9);
        assert!((profile.nodes_ms - 90.0).abs() < 1e-9);
        assert!(profile.to_text().contains("Lrn"));
        // 1.5 G multiply-adds in 30 ms: 100 GFLOP/s; nodes without multiply-adds show none.
        let a = profile.layers.iter().find(|l| l.name == "a").unwrap();
        assert!((a.gflops.unwrap() - 100.0).abs() < 1e-6);
        assert!(profile.layers.iter().filter(|l| l.name != "a").all(|l| l.gflops.is_none()));
        // Runs of two images: every time halves, per image, and the rate stays.
        let pairs = Profile::new(&nodes, Duration::from_millis(100), 3, 2, &macs);
        assert!((pairs.total_ms - 50.0).abs() < 1e-9);
        assert!((pairs.operators[0].ms - 25.0).abs() < 1e-9);
        let a = pairs.layers.iter().find(|l| l.name == "a").unwrap();
        assert!((a.ms - 15.0).abs() < 1e-9);
        assert!((a.gflops.unwrap() - 200.0).abs() < 1e-6);
        assert!(pairs.to_text().starts_with("one image: 50.0 ms in runs of 2"));
    }
}
