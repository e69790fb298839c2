//! The peers' rows (actix, ractor, kameo), filled in from the peer
//! benchmark work.

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

pub fn spawn(_g: &mut BenchmarkGroup<'_, WallTime>) {}
pub fn lifecycle(_g: &mut BenchmarkGroup<'_, WallTime>) {}
pub fn routing(_g: &mut BenchmarkGroup<'_, WallTime>) {}
pub fn request_response(_g: &mut BenchmarkGroup<'_, WallTime>) {}
pub fn fanout_100(_g: &mut BenchmarkGroup<'_, WallTime>) {}
pub fn throughput(_g: &mut BenchmarkGroup<'_, WallTime>) {}
pub fn registry_lookup(_g: &mut BenchmarkGroup<'_, WallTime>) {}
