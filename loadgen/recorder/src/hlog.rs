//! `latency.hlog`: a standard HdrHistogram interval log (the Java
//! `HistogramLogWriter` format, V2 compressed histograms), one tag per
//! operation, appended and flushed every interval so a killed run leaves a
//! readable file. Values are microseconds; `MaxValueDivisor` 1000 makes the
//! `Interval_Max` column read in milliseconds, as the Java tools expect.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

/// Appends intervals to an interval log file.
pub struct HlogWriter {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    buf: Vec<u8>,
}

impl HlogWriter {
    /// Creates the file and writes the log's header; `base` is the run's start.
    pub fn create(path: &Path, base: SystemTime) -> io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = V2DeflateSerializer::new();
        let mut header = Vec::new();
        IntervalLogWriterBuilder::new()
            .add_comment("[Logged with Gauntlet; values in microseconds, one tag per operation]")
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(base)
            .with_base_time(base)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut header, &mut serializer)?;
        header.extend_from_slice(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        );
        out.write_all(&header)?;
        out.flush()?;
        Ok(Self {
            out,
            serializer,
            buf: Vec::new(),
        })
    }

    /// Writes one histogram per operation for the interval `[start, start+length)`.
    pub fn write_interval(
        &mut self,
        start: Duration,
        length: Duration,
        tagged: &[(&str, &Histogram<u64>)],
    ) -> io::Result<()> {
        self.buf.clear();
        {
            // A builder with no headers writes nothing before the intervals.
            let mut writer = IntervalLogWriterBuilder::new()
                .with_max_value_divisor(1000.0)
                .begin_log_with(&mut self.buf, &mut self.serializer)?;
            for (tag, h) in tagged {
                let tag = Tag::new(tag).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("`{tag}` cannot be an hlog tag"),
                    )
                })?;
                writer
                    .write_histogram(h, start, length, Some(tag))
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        // The builder re-announces the divisor; the file's header already did.
        let text = String::from_utf8_lossy(&self.buf);
        for line in text.lines().filter(|l| !l.starts_with("#[MaxValueDivisor")) {
            self.out.write_all(line.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// One interval read back from a log.
#[derive(Debug, Clone)]
pub struct LoggedInterval {
    pub tag: Option<String>,
    pub start: Duration,
    pub length: Duration,
    pub histogram: Histogram<u64>,
}

/// Reads every interval of a log (for reports, gates and tests). A torn last
/// line — the run was killed mid-write — ends the read instead of failing it.
pub fn read(bytes: &[u8]) -> Vec<LoggedInterval> {
    let mut out = Vec::new();
    visit(bytes, |i| out.push(i));
    out
}

/// Hands every interval of a log to `f`, one at a time, and returns how many
/// there were: a 30-minute log holds thousands of histograms, which a
/// reader that merges them need not keep all at once. Stops at a torn line
/// like [`read`].
pub fn visit(bytes: &[u8], mut f: impl FnMut(LoggedInterval)) -> usize {
    let mut deserializer = Deserializer::new();
    let mut n = 0;
    for entry in IntervalLogIterator::new(bytes) {
        let Ok(LogEntry::Interval(ilh)) = entry else {
            if entry.is_err() {
                break;
            }
            continue;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(ilh.encoded_histogram())
        else {
            break;
        };
        let Ok(histogram) = deserializer.deserialize::<u64, _>(&mut raw.as_slice()) else {
            break;
        };
        n += 1;
        f(LoggedInterval {
            tag: ilh.tag().map(|t| t.as_str().to_owned()),
            start: ilh.start_timestamp(),
            length: ilh.duration(),
            histogram,
        });
    }
    n
}
