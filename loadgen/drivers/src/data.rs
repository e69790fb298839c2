//! Data generators: payloads and keys for the operations, from the
//! scenario's descriptions (`gauntlet_scenario::data`).
//!
//! Everything random is a pure function of `(seed, stream, seq)`: the
//! scenario's seed, a number naming the generator (the operation and its
//! field) and the request's sequence number (taken when the request is
//! sent). Two runs with the same seed send the same bytes as the *n*-th
//! request of an operation. Only the clock (`{{timestamp}}`) and run-wide counters
//! (`{{counter:NAME}}`, in the order requests take them) depend on the run.
//!
//! The random generator is SplitMix64, written here so the bytes never
//! change with a dependency's version.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gauntlet_scenario::data::{Field, Part, parse_template};
use gauntlet_scenario::{KeyDistribution, KeySpec, Payload, SizeDist};

/// SplitMix64: tiny, fast, and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of request `seq` of generator `stream` under `seed`.
    pub fn for_request(seed: u64, stream: u64, seq: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mixed = r.next_u64() ^ seq.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng(mixed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift; `0` for `n = 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

// ------------------------------------------------------------------ sizes

/// Draws sizes from a [`SizeDist`].
#[derive(Debug, Clone)]
pub struct SizeSampler {
    dist: SizeDist,
    cumulative: Vec<u64>,
}

impl SizeSampler {
    pub fn new(dist: &SizeDist) -> Self {
        let cumulative = match dist {
            SizeDist::OneOf { weights, .. } => weights
                .iter()
                .scan(0u64, |sum, w| {
                    *sum += u64::from(*w);
                    Some(*sum)
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            dist: dist.clone(),
            cumulative,
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        match &self.dist {
            SizeDist::Fixed(s) => s.0 as usize,
            SizeDist::Uniform { min, max } => (min.0 + rng.below(max.0 - min.0 + 1)) as usize,
            SizeDist::OneOf { sizes, .. } => {
                let total = self.cumulative.last().copied().unwrap_or(0);
                let x = rng.below(total.max(1));
                let i = self.cumulative.partition_point(|&c| c <= x);
                sizes[i.min(sizes.len() - 1)].0 as usize
            }
        }
    }

    pub fn max(&self) -> usize {
        self.dist.max() as usize
    }
}

// ------------------------------------------------------------------- Zipf

/// Zipf over ranks `0..n`: P(k) ∝ 1/(k+1)^s. Rejection-inversion sampling
/// (Hörmann & Derflinger 1996): O(1) per draw, no table, any `n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    threshold: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Self {
        let mut z = Zipf {
            n: n.max(1) as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            threshold: 0.0,
        };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(z.n + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let ln = x.ln();
        helper2((1.0 - self.s) * ln) * ln
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }

    /// A rank in `0..n`; 0 is the most frequent.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let mut k = 1.0;
        // Accepts with probability > 0.5 per round for any s > 0; bounded anyway.
        for _ in 0..64 {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.h_integral_inverse(u);
            k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.h_integral(k + 0.5) - self.h(k) {
                break;
            }
        }
        k as u64 - 1
    }
}

/// `ln(1+x)/x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x − 1)/x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

// -------------------------------------------------------------- templates

/// Run-wide named counters shared by every template that names them.
#[derive(Default)]
pub struct Counters {
    by_name: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Counters {
    fn get(&self, name: &str) -> Arc<AtomicU64> {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_owned()).or_default().clone()
    }
}

/// What a request's template may refer to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx<'a> {
    pub seq: u64,
    pub key: Option<&'a str>,
}

#[derive(Debug, Clone)]
enum Hole {
    Seq,
    Counter(Arc<AtomicU64>),
    Timestamp,
    TimestampMs,
    TimestampUs,
    Key,
    RandomInt { min: i64, span: u64 },
    RandomHex(usize),
    RandomString(usize),
    Uuid,
    Choice(Vec<String>),
}

impl Hole {
    fn new(f: &Field, counters: &Counters) -> Self {
        match f {
            Field::Seq => Hole::Seq,
            Field::Counter(name) => Hole::Counter(counters.get(name)),
            Field::Timestamp => Hole::Timestamp,
            Field::TimestampMs => Hole::TimestampMs,
            Field::TimestampUs => Hole::TimestampUs,
            Field::Key => Hole::Key,
            Field::RandomInt { min, max } => Hole::RandomInt {
                min: *min,
                span: max.abs_diff(*min).saturating_add(1),
            },
            Field::RandomHex(n) => Hole::RandomHex(*n),
            Field::RandomString(n) => Hole::RandomString(*n),
            Field::Uuid => Hole::Uuid,
            Field::Choice(words) => Hole::Choice(words.clone()),
        }
    }

    fn render(&self, out: &mut String, ctx: &Ctx, rng: &mut Rng) {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        const HEX: &[u8] = b"0123456789abcdef";
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        match self {
            Hole::Seq => {
                let _ = write!(out, "{}", ctx.seq);
            }
            Hole::Counter(c) => {
                let _ = write!(out, "{}", c.fetch_add(1, Ordering::Relaxed));
            }
            Hole::Timestamp => {
                let _ = write!(out, "{}", jiff::Timestamp::now());
            }
            Hole::TimestampMs => {
                let _ = write!(out, "{}", now().as_millis());
            }
            Hole::TimestampUs => {
                let _ = write!(out, "{}", now().as_micros());
            }
            Hole::Key => out.push_str(ctx.key.unwrap_or_default()),
            Hole::RandomInt { min, span } => {
                let v = if *span == 0 {
                    rng.next_u64() as i64
                } else {
                    min.wrapping_add(rng.below(*span) as i64)
                };
                let _ = write!(out, "{v}");
            }
            Hole::RandomHex(n) => {
                (0..*n).for_each(|_| out.push(HEX[rng.below(16) as usize] as char));
            }
            Hole::RandomString(n) => {
                (0..*n).for_each(|_| out.push(ALNUM[rng.below(62) as usize] as char));
            }
            Hole::Uuid => {
                let mut b = [0u8; 16];
                rng.fill(&mut b);
                b[6] = (b[6] & 0x0f) | 0x40;
                b[8] = (b[8] & 0x3f) | 0x80;
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push('-');
                    }
                    let _ = write!(out, "{byte:02x}");
                }
            }
            Hole::Choice(words) => {
                out.push_str(&words[rng.below(words.len() as u64) as usize]);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    /// A placeholder; `escape` when inside a JSON string.
    Hole {
        hole: Hole,
        escape: bool,
    },
}

/// A compiled template: literal text and placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Compiles a text template (already checked by the scenario's validation).
    pub fn text(text: &str, counters: &Counters) -> Self {
        let parts = parse_template(text).unwrap_or_else(|_| vec![Part::Lit(text.to_owned())]);
        Self {
            pieces: pieces(&parts, counters, false),
        }
    }

    /// Compiles a JSON template: every string may hold placeholders; a
    /// string that is exactly one numeric placeholder becomes a number.
    pub fn json(value: &serde_json::Value, counters: &Counters) -> Self {
        let mut out = Vec::new();
        json_pieces(value, counters, &mut out);
        // Merge adjacent literals.
        let mut pieces: Vec<Piece> = Vec::with_capacity(out.len());
        for p in out {
            match (pieces.last_mut(), p) {
                (Some(Piece::Lit(a)), Piece::Lit(b)) => a.push_str(&b),
                (_, p) => pieces.push(p),
            }
        }
        Self { pieces }
    }

    /// True when the template has no placeholder.
    pub fn is_constant(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Lit(_)))
    }

    pub fn render(&self, ctx: &Ctx, rng: &mut Rng) -> String {
        let mut out = String::new();
        self.render_into(&mut out, ctx, rng);
        out
    }

    pub fn render_into(&self, out: &mut String, ctx: &Ctx, rng: &mut Rng) {
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Hole {
                    hole,
                    escape: false,
                } => hole.render(out, ctx, rng),
                Piece::Hole { hole, escape: true } => {
                    let mut raw = String::new();
                    hole.render(&mut raw, ctx, rng);
                    escape_json_into(out, &raw);
                }
            }
        }
    }
}

fn pieces(parts: &[Part], counters: &Counters, escape: bool) -> Vec<Piece> {
    parts
        .iter()
        .map(|p| match p {
            Part::Lit(s) if escape => {
                let mut e = String::new();
                escape_json_into(&mut e, s);
                Piece::Lit(e)
            }
            Part::Lit(s) => Piece::Lit(s.clone()),
            Part::Field(f) => Piece::Hole {
                hole: Hole::new(f, counters),
                escape,
            },
        })
        .collect()
}

fn json_string(s: &str, counters: &Counters, out: &mut Vec<Piece>) {
    let parts = parse_template(s).unwrap_or_else(|_| vec![Part::Lit(s.to_owned())]);
    if let [Part::Field(f)] = parts.as_slice()
        && f.is_number()
    {
        out.push(Piece::Hole {
            hole: Hole::new(f, counters),
            escape: false,
        });
        return;
    }
    out.push(Piece::Lit("\"".to_owned()));
    out.extend(pieces(&parts, counters, true));
    out.push(Piece::Lit("\"".to_owned()));
}

fn json_pieces(value: &serde_json::Value, counters: &Counters, out: &mut Vec<Piece>) {
    use serde_json::Value as J;
    match value {
        J::String(s) => json_string(s, counters, out),
        J::Array(items) => {
            out.push(Piece::Lit("[".to_owned()));
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(Piece::Lit(",".to_owned()));
                }
                json_pieces(item, counters, out);
            }
            out.push(Piece::Lit("]".to_owned()));
        }
        J::Object(map) => {
            out.push(Piece::Lit("{".to_owned()));
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(Piece::Lit(",".to_owned()));
                }
                // Keys are always strings, even `{{seq}}`.
                let parts = parse_template(k).unwrap_or_else(|_| vec![Part::Lit(k.clone())]);
                out.push(Piece::Lit("\"".to_owned()));
                out.extend(pieces(&parts, counters, true));
                out.push(Piece::Lit("\":".to_owned()));
                json_pieces(v, counters, out);
            }
            out.push(Piece::Lit("}".to_owned()));
        }
        other => out.push(Piece::Lit(other.to_string())),
    }
}

fn escape_json_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

// --------------------------------------------------------------- payloads

/// Random bytes every random payload slices from: generated once from the seed.
const MIN_POOL: usize = 64 << 10;

/// Generates payloads of one operation field.
#[derive(Debug, Clone)]
pub enum PayloadGen {
    Random {
        sizes: SizeSampler,
        pool: Bytes,
        seed: u64,
        stream: u64,
    },
    Template {
        template: Template,
        seed: u64,
        stream: u64,
    },
}

impl PayloadGen {
    /// `stream` names this generator (operation and field) so that two
    /// generators of one scenario draw different bytes.
    pub fn new(payload: &Payload, seed: u64, stream: u64, counters: &Counters) -> Self {
        match payload {
            Payload::Random(dist) => {
                let sizes = SizeSampler::new(dist);
                let mut pool = vec![0u8; sizes.max().max(1) + MIN_POOL];
                Rng::for_request(seed, stream, u64::MAX).fill(&mut pool);
                PayloadGen::Random {
                    sizes,
                    pool: Bytes::from(pool),
                    seed,
                    stream,
                }
            }
            Payload::Json(v) => PayloadGen::Template {
                template: Template::json(v, counters),
                seed,
                stream,
            },
            Payload::Text(t) => PayloadGen::Template {
                template: Template::text(t, counters),
                seed,
                stream,
            },
        }
    }

    /// The payload of request `ctx.seq` (`index` tells apart several
    /// payloads of one request, e.g. the events of a batch).
    pub fn generate(&self, ctx: &Ctx, index: u64) -> Bytes {
        match self {
            PayloadGen::Random {
                sizes,
                pool,
                seed,
                stream,
            } => {
                let mut rng = Rng::for_request(*seed, stream.wrapping_add(index << 32), ctx.seq);
                let size = sizes.sample(&mut rng);
                let offset = rng.below((pool.len() - size + 1) as u64) as usize;
                pool.slice(offset..offset + size)
            }
            PayloadGen::Template {
                template,
                seed,
                stream,
            } => {
                let mut rng = Rng::for_request(*seed, stream.wrapping_add(index << 32), ctx.seq);
                Bytes::from(template.render(ctx, &mut rng))
            }
        }
    }

    /// A template producing JSON (for a content type).
    pub fn is_json(payload: &Payload) -> bool {
        matches!(payload, Payload::Json(_))
    }
}

// ------------------------------------------------------------------- keys

#[derive(Debug, Clone)]
enum KeyKind {
    Template(Template),
    Uniform,
    Sequential,
    Zipf(Zipf),
}

/// Generates the key of each request of a KV operation.
#[derive(Debug, Clone)]
pub struct KeyGen {
    kind: KeyKind,
    prefix: String,
    count: u64,
    seed: u64,
    stream: u64,
}

impl KeyGen {
    pub fn new(spec: &KeySpec, seed: u64, stream: u64, counters: &Counters) -> Self {
        let (kind, prefix, count) = match spec {
            KeySpec::Template(t) => (
                KeyKind::Template(Template::text(t, counters)),
                String::new(),
                1,
            ),
            KeySpec::Space {
                prefix,
                count,
                distribution,
            } => (
                match distribution {
                    KeyDistribution::Uniform => KeyKind::Uniform,
                    KeyDistribution::Sequential => KeyKind::Sequential,
                    KeyDistribution::Zipf(s) => KeyKind::Zipf(Zipf::new(*count, *s)),
                },
                prefix.clone(),
                *count,
            ),
        };
        Self {
            kind,
            prefix,
            count,
            seed,
            stream,
        }
    }

    /// The rank of request `seq`'s key in the key space (0 for a template).
    pub fn rank(&self, seq: u64) -> u64 {
        let mut rng = Rng::for_request(self.seed, self.stream, seq);
        match &self.kind {
            KeyKind::Template(_) => 0,
            KeyKind::Uniform => rng.below(self.count),
            KeyKind::Sequential => seq % self.count,
            KeyKind::Zipf(z) => z.sample(&mut rng),
        }
    }

    /// The key of request `seq`.
    pub fn key(&self, seq: u64) -> String {
        match &self.kind {
            KeyKind::Template(t) => {
                let mut rng = Rng::for_request(self.seed, self.stream, seq);
                t.render(&Ctx { seq, key: None }, &mut rng)
            }
            _ => format!("{}{}", self.prefix, self.rank(seq)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;
    use super::*;
    use gauntlet_scenario::Size;
    use proptest::prelude::*;

    fn random(dist: SizeDist, seed: u64, stream: u64) -> PayloadGen {
        PayloadGen::new(&Payload::Random(dist), seed, stream, &Counters::default())
    }

    fn any_dist() -> impl Strategy<Value = SizeDist> {
        prop_oneof![
            (1u64..5_000).prop_map(|s| SizeDist::Fixed(Size(s))),
            (1u64..3_000, 0u64..3_000).prop_map(|(a, b)| SizeDist::Uniform {
                min: Size(a),
                max: Size(a + b)
            }),
            proptest::collection::vec((1u64..5_000, 0u32..5), 1..5).prop_map(|v| {
                let mut weights: Vec<u32> = v.iter().map(|x| x.1).collect();
                if weights.iter().all(|w| *w == 0) {
                    weights[0] = 1;
                }
                SizeDist::OneOf {
                    sizes: v.iter().map(|x| Size(x.0)).collect(),
                    weights,
                }
            }),
        ]
    }

    proptest! {
        /// Same seed, same bytes; the sizes stay within the distribution.
        #[test]
        fn random_payloads_are_deterministic_and_sized(dist in any_dist(), seed: u64, stream in 0u64..1_000, seq in 0u64..1_000_000) {
            let a = random(dist.clone(), seed, stream);
            let b = random(dist.clone(), seed, stream);
            let ctx = Ctx { seq, key: None };
            let (x, y) = (a.generate(&ctx, 0), b.generate(&ctx, 0));
            prop_assert_eq!(&x, &y);
            let len = x.len() as u64;
            prop_assert!(len >= dist.min() && len <= dist.max(), "{len} not in {}..={}", dist.min(), dist.max());
            if let SizeDist::OneOf { sizes, weights } = &dist {
                let i = sizes.iter().position(|s| s.0 == len);
                prop_assert!(i.is_some());
                prop_assert!(sizes.iter().zip(weights).any(|(s, w)| s.0 == len && *w > 0));
            }
        }

        /// Key spaces: deterministic per seed, always inside the space.
        #[test]
        fn keys_are_deterministic_and_in_range(count in 1u64..100_000, s in 0.1f64..3.0, seed: u64, seq in 0u64..1_000_000, which in 0usize..3) {
            let distribution = [KeyDistribution::Uniform, KeyDistribution::Sequential, KeyDistribution::Zipf(s)][which];
            let spec = KeySpec::Space { prefix: "k-".into(), count, distribution };
            let a = KeyGen::new(&spec, seed, 7, &Counters::default());
            let b = KeyGen::new(&spec, seed, 7, &Counters::default());
            prop_assert_eq!(a.key(seq), b.key(seq));
            prop_assert!(a.rank(seq) < count);
            if which == 1 {
                prop_assert_eq!(a.rank(seq), seq % count);
            }
            prop_assert!(a.key(seq).starts_with("k-"));
        }

        /// JSON templates render valid JSON, numbers where a placeholder is alone.
        #[test]
        fn json_templates_render_valid_json(seed: u64, seq in 0u64..1_000_000) {
            let v = serde_json::json!({
                "id": "{{seq}}",
                "name": "user \"{{random:string:6}}\"\n",
                "n": "{{random:int:-5:5}}",
                "tags": ["{{random:choice:a|b|c}}", 1, null, true],
                "{{seq}}": { "u": "{{random:uuid}}", "h": "{{random:hex:8}}" }
            });
            let json = PayloadGen::new(&Payload::Json(v.clone()), seed, 1, &Counters::default());
            let again = PayloadGen::new(&Payload::Json(v), seed, 1, &Counters::default());
            let ctx = Ctx { seq, key: None };
            let bytes = json.generate(&ctx, 0);
            prop_assert_eq!(&bytes, &again.generate(&ctx, 0));
            let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(doc["id"].as_u64(), Some(seq));
            let n = doc["n"].as_i64().unwrap();
            prop_assert!((-5..=5).contains(&n));
            prop_assert_eq!(doc["name"].as_str().unwrap().len(), "user \"\"\n".len() + 6);
            prop_assert!(["a", "b", "c"].contains(&doc["tags"][0].as_str().unwrap()));
            let inner = &doc[seq.to_string().as_str()];
            prop_assert_eq!(inner["u"].as_str().unwrap().len(), 36);
            prop_assert_eq!(&inner["u"].as_str().unwrap()[14..15], "4");
            prop_assert_eq!(inner["h"].as_str().unwrap().len(), 8);
        }
    }

    #[test]
    fn different_seeds_give_different_bytes() {
        let dist = SizeDist::Fixed(Size(64));
        let ctx = Ctx { seq: 3, key: None };
        let a = random(dist.clone(), 1, 0).generate(&ctx, 0);
        let b = random(dist.clone(), 2, 0).generate(&ctx, 0);
        let c = random(dist, 1, 0).generate(&Ctx { seq: 4, key: None }, 0);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_sizes_cover_the_range() {
        let sizes = random(
            SizeDist::Uniform {
                min: Size(10),
                max: Size(13),
            },
            5,
            0,
        );
        let mut seen = [0u32; 4];
        for seq in 0..4_000 {
            seen[sizes.generate(&Ctx { seq, key: None }, 0).len() - 10] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1_200).contains(&n)), "{seen:?}");
    }

    /// Zipf's frequencies follow 1/(k+1)^s: the hottest keys against the
    /// analytic probabilities, and the skew grows with s.
    #[test]
    fn zipf_is_skewed_as_the_law_says() {
        for s in [0.8, 1.1, 1.5] {
            let n = 1_000u64;
            let z = Zipf::new(n, s);
            let draws = 200_000u64;
            let mut counts = vec![0u64; n as usize];
            let mut rng = Rng::new(42);
            for _ in 0..draws {
                counts[z.sample(&mut rng) as usize] += 1;
            }
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
            for k in [0usize, 1, 2, 9, 99] {
                let p = ((k + 1) as f64).powf(-s) / norm;
                let expected = p * draws as f64;
                let sd = (expected * (1.0 - p)).sqrt();
                let got = counts[k] as f64;
                assert!(
                    (got - expected).abs() < 5.0 * sd + 1.0,
                    "s={s} rank {k}: {got} vs {expected:.0}"
                );
            }
            assert!(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[99]);
        }
        // A uniform draw over the same space has no such head.
        let u = KeyGen::new(
            &KeySpec::Space {
                prefix: String::new(),
                count: 1_000,
                distribution: KeyDistribution::Uniform,
            },
            1,
            0,
            &Counters::default(),
        );
        let head = (0..100_000).filter(|&s| u.rank(s) == 0).count();
        assert!((50..150).contains(&head), "{head}");
    }

    #[test]
    fn templates_use_seq_key_and_counters() {
        let counters = Counters::default();
        let a = Template::text("{{key}}/{{seq}}/{{counter:orders}}", &counters);
        let b = Template::text("{{counter:orders}}", &counters);
        let mut rng = Rng::new(1);
        let ctx = Ctx {
            seq: 9,
            key: Some("k1"),
        };
        assert_eq!(a.render(&ctx, &mut rng), "k1/9/0");
        assert_eq!(b.render(&ctx, &mut rng), "1", "counters are shared by name");
        assert_eq!(a.render(&ctx, &mut rng), "k1/9/2");
        let t = Template::text("{{timestamp_ms}}", &counters);
        let ms: u128 = t.render(&ctx, &mut rng).parse().unwrap();
        assert!(ms > 1_600_000_000_000);
        let t = Template::text("{{timestamp}}", &counters);
        assert!(t.render(&ctx, &mut rng).parse::<jiff::Timestamp>().is_ok());
        assert!(Template::text("plain", &counters).is_constant());
    }

    #[test]
    fn key_templates_render_per_request() {
        let g = KeyGen::new(
            &KeySpec::Template("order-{{seq}}".into()),
            1,
            0,
            &Counters::default(),
        );
        assert_eq!(g.key(41), "order-41");
    }
}
