//! The run directory's CPU profiles: `profiles/<service>/<window>.pb.gz`
//! (gzipped `profile.proto`, as the service or loadgen produced it, merged
//! over the window's segments) next to `<window>.folded` — folded stacks,
//! one `root;…;leaf COUNT` line per distinct stack, the format of
//! Brendan Gregg's `flamegraph.pl` and inferno — and `profiles/index.json`
//! (what was collected, when, and what failed).
//!
//! Writers (loadgen's collector) and readers (reports, `loadgen profile`)
//! share these definitions; everything here is plain data.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory under a run directory.
pub const DIR: &str = "profiles";
/// The index of what was collected.
pub const INDEX: &str = "index.json";

/// One window's profile of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// A service of the scenario, or `loadgen`.
    pub service: String,
    /// The phase's or the fault window's name (also the file stem).
    pub window: String,
    /// `phase` or `fault`.
    pub kind: WindowKind,
    /// Seconds since the load started.
    pub start_s: f64,
    pub end_s: f64,
    /// Sampling frequency, Hz.
    pub frequency: u32,
    /// Samples in the profile (0 when every segment failed).
    pub samples: u64,
    /// Segments that could not be collected, with why (a service killed by
    /// a fault answers nothing for the time it is down).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Entry {
    /// `profiles/<service>/<window>.pb.gz`, relative to the run directory.
    pub fn proto_path(&self) -> PathBuf {
        Path::new(DIR)
            .join(&self.service)
            .join(format!("{}.pb.gz", self.window))
    }

    /// `profiles/<service>/<window>.folded`, relative to the run directory.
    pub fn folded_path(&self) -> PathBuf {
        Path::new(DIR)
            .join(&self.service)
            .join(format!("{}.folded", self.window))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    Phase,
    Fault,
}

/// `profiles/index.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub profiles: Vec<Entry>,
}

/// Reads `RUN_DIR/profiles/index.json`; `Ok(None)` when the run has none.
pub fn read_index(run_dir: &Path) -> std::io::Result<Option<Index>> {
    let path = run_dir.join(DIR).join(INDEX);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Folded stacks: each distinct stack (root first) and its sample count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    pub stacks: BTreeMap<Vec<String>, u64>,
}

/// One function's share of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTime {
    pub name: String,
    /// Samples with this function on top of the stack.
    pub self_samples: u64,
    /// Samples with this function anywhere in the stack (counted once per
    /// stack, so recursion does not count twice).
    pub total_samples: u64,
}

/// One function's change between two profiles, in shares of each
/// profile's samples (so profiles of different lengths compare).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionChange {
    pub name: String,
    pub self_before: f64,
    pub self_after: f64,
    pub total_before: f64,
    pub total_after: f64,
}

impl FunctionChange {
    /// Change of the self share, in percentage points.
    pub fn self_delta_pp(&self) -> f64 {
        (self.self_after - self.self_before) * 100.0
    }
}

impl Folded {
    /// Adds `count` samples of `stack` (root first).
    pub fn add(&mut self, stack: Vec<String>, count: u64) {
        if count > 0 {
            *self.stacks.entry(stack).or_default() += count;
        }
    }

    /// Adds every stack of `other`.
    pub fn merge(&mut self, other: &Folded) {
        for (s, c) in &other.stacks {
            self.add(s.clone(), *c);
        }
    }

    pub fn total(&self) -> u64 {
        self.stacks.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Parses folded text. Frames are split at `;`, the count is the last
    /// space-separated word; a line without a count is an error naming it.
    pub fn parse(text: &str) -> Result<Folded, String> {
        let mut f = Folded::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let (stack, count) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("line {}: no sample count", i + 1))?;
            let count: u64 = count
                .parse()
                .map_err(|_| format!("line {}: {count:?} is not a sample count", i + 1))?;
            f.add(stack.split(';').map(str::to_owned).collect(), count);
        }
        Ok(f)
    }

    /// Folded text, stacks sorted, one per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (stack, count) in &self.stacks {
            for (i, frame) in stack.iter().enumerate() {
                if i > 0 {
                    out.push(';');
                }
                // `;` separates frames and a newline ends the stack.
                out.extend(frame.chars().map(|c| match c {
                    ';' => ':',
                    '\n' | '\r' => ' ',
                    c => c,
                }));
            }
            out.push(' ');
            out.push_str(&count.to_string());
            out.push('\n');
        }
        out
    }

    /// Every function's self and total samples, by total then self,
    /// highest first.
    pub fn functions(&self) -> Vec<FunctionTime> {
        let mut by_name: HashMap<&str, (u64, u64)> = HashMap::new();
        for (stack, &count) in &self.stacks {
            if let Some(leaf) = stack.last() {
                by_name.entry(leaf).or_default().0 += count;
            }
            let mut seen: Vec<&str> = Vec::with_capacity(stack.len());
            for frame in stack {
                if !seen.contains(&frame.as_str()) {
                    seen.push(frame);
                    by_name.entry(frame).or_default().1 += count;
                }
            }
        }
        let mut v: Vec<FunctionTime> = by_name
            .into_iter()
            .map(|(name, (s, t))| FunctionTime {
                name: name.to_owned(),
                self_samples: s,
                total_samples: t,
            })
            .collect();
        v.sort_by(|a, b| {
            (b.total_samples, b.self_samples, &a.name).cmp(&(
                a.total_samples,
                a.self_samples,
                &b.name,
            ))
        });
        v
    }

    /// The `n` functions with the most self samples.
    pub fn top_self(&self, n: usize) -> Vec<FunctionTime> {
        let mut v = self.functions();
        v.sort_by(|a, b| (b.self_samples, &a.name).cmp(&(a.self_samples, &b.name)));
        v.truncate(n);
        v
    }

    /// The functions whose self share changed most from `self` to
    /// `after`, largest absolute change first, at most `n`.
    pub fn top_changes(&self, after: &Folded, n: usize) -> Vec<FunctionChange> {
        let share = |f: &Folded| -> HashMap<String, (f64, f64)> {
            let total = f.total().max(1) as f64;
            f.functions()
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        (
                            t.self_samples as f64 / total,
                            t.total_samples as f64 / total,
                        ),
                    )
                })
                .collect()
        };
        let before = share(self);
        let later = share(after);
        let mut names: Vec<&String> = before.keys().chain(later.keys()).collect();
        names.sort();
        names.dedup();
        let mut v: Vec<FunctionChange> = names
            .into_iter()
            .map(|name| {
                let (sb, tb) = before.get(name).copied().unwrap_or_default();
                let (sa, ta) = later.get(name).copied().unwrap_or_default();
                FunctionChange {
                    name: name.clone(),
                    self_before: sb,
                    self_after: sa,
                    total_before: tb,
                    total_after: ta,
                }
            })
            .filter(|c| c.self_before != c.self_after)
            .collect();
        v.sort_by(|a, b| {
            let (da, db) = (
                (a.self_after - a.self_before).abs(),
                (b.self_after - b.self_before).abs(),
            );
            db.total_cmp(&da).then_with(|| a.name.cmp(&b.name))
        });
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(text: &str) -> Folded {
        Folded::parse(text).unwrap()
    }

    #[test]
    fn parse_and_write_round_trip() {
        let f = folded("main;a;b 3\nmain;a 2\nmain;a;b 1\n\n");
        assert_eq!(f.total(), 6);
        assert_eq!(f.to_text(), "main;a 2\nmain;a;b 4\n");
        assert_eq!(Folded::parse(&f.to_text()).unwrap(), f);
        assert!(Folded::parse("main;a x").unwrap_err().contains("line 1"));
        assert!(
            Folded::parse("nocount")
                .unwrap_err()
                .contains("no sample count")
        );
    }

    #[test]
    fn self_and_total_time() {
        let f = folded("main;a;b 4\nmain;a 2\nmain;c 1\nmain;r;r 3\n");
        let fs = f.functions();
        let get = |n: &str| fs.iter().find(|t| t.name == n).unwrap().clone();
        assert_eq!(
            (get("main").self_samples, get("main").total_samples),
            (0, 10)
        );
        assert_eq!((get("a").self_samples, get("a").total_samples), (2, 6));
        assert_eq!((get("b").self_samples, get("b").total_samples), (4, 4));
        // Recursion counts a stack once.
        assert_eq!((get("r").self_samples, get("r").total_samples), (3, 3));
        assert_eq!(fs[0].name, "main");
        let top = f.top_self(2);
        assert_eq!(
            top.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["b", "r"]
        );
    }

    #[test]
    fn changes_compare_shares() {
        let before = folded("main;a 50\nmain;b 50\n");
        let after = folded("main;a 90\nmain;b 10\nmain;c 100\n");
        let ch = before.top_changes(&after, 10);
        // a: 50 % -> 45 %, b: 50 % -> 5 %, c: 0 -> 50 %.
        assert_eq!(ch[0].name, "c");
        assert!((ch[0].self_delta_pp() - 50.0).abs() < 1e-9);
        assert_eq!(ch[1].name, "b");
        assert!((ch[1].self_delta_pp() + 45.0).abs() < 1e-9);
        assert_eq!(ch[2].name, "a");
        assert_eq!(ch.len(), 3, "main's self share is 0 in both");
    }
}
