//! The record frame of the segment log: one frame per appended batch, so a
//! batch is on disk entirely or (after recovery) not at all.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! offset  size  field
//! 0       4     magic        0x464D_4652 ("RFMF" on disk)
//! 4       4     body_len     length of `body` in bytes (MIN_BODY..=MAX_BODY)
//! 8       4     crc          CRC32C over body_len (4 LE bytes) ++ body
//! 12      ..    body:
//!                 base_offset  u64   offset of the first entry
//!                 count        u32   number of entries (>= 1)
//!                 timestamp    i64   append time, microseconds since the Unix epoch (UTC)
//!                 count x entry:
//!                   n_headers  u32
//!                   n_headers x (key_len u32, key utf-8, value_len u32, value utf-8)
//!                   payload_len u32, payload bytes
//! ```
//!
//! The CRC covers the length too, so a corrupted length is caught either by
//! the bounds check, by running past the end of the file (a torn tail), or by
//! the checksum. A frame decodes only if its body is consumed exactly.

use std::collections::BTreeMap;

use thiserror::Error;

/// Frame magic number.
pub const MAGIC: u32 = 0x464D_4652;
/// Size of the fixed frame header (magic, body_len, crc).
pub const HEADER_LEN: usize = 12;
/// Smallest valid body: base_offset + count + timestamp.
pub const MIN_BODY: usize = 8 + 4 + 8;
/// Largest body the log writes or accepts when reading (128 MiB).
pub const MAX_BODY: usize = 128 * 1024 * 1024;

/// One entry of a batch: opaque payload plus string headers. Streams store
/// events as entries; queues and KV can encode their records the same way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Entry {
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            headers: BTreeMap::new(),
            payload: payload.into(),
        }
    }

    fn encoded_len(&self) -> usize {
        4 + self
            .headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
            + 4
            + self.payload.len()
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub base_offset: u64,
    pub timestamp_us: i64,
    pub entries: Vec<Entry>,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header or the declared body: a torn write.
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("body length {0} out of bounds")]
    BadLength(usize),
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    #[error("frame body of {0} bytes exceeds the maximum")]
    TooLarge(usize),
}

/// Length of the body a batch would encode to.
pub fn body_len(entries: &[Entry]) -> usize {
    MIN_BODY + entries.iter().map(Entry::encoded_len).sum::<usize>()
}

/// Encodes a batch into `out` (appending). Fails only if the batch is empty,
/// too large, or has a field longer than `u32::MAX`.
pub fn encode_into(
    out: &mut Vec<u8>,
    base_offset: u64,
    timestamp_us: i64,
    entries: &[Entry],
) -> Result<usize, FrameError> {
    if entries.is_empty() {
        return Err(FrameError::Malformed("empty batch"));
    }
    let body_len = body_len(entries);
    if body_len > MAX_BODY {
        return Err(FrameError::TooLarge(body_len));
    }
    let count = u32::try_from(entries.len()).map_err(|_| FrameError::TooLarge(body_len))?;
    let start = out.len();
    out.reserve(HEADER_LEN + body_len);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc placeholder
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&timestamp_us.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&(e.headers.len() as u32).to_le_bytes());
        for (k, v) in &e.headers {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.payload);
    }
    debug_assert_eq!(out.len() - start, HEADER_LEN + body_len);
    let crc = checksum(&out[start + 4..start + 8], &out[start + HEADER_LEN..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok(HEADER_LEN + body_len)
}

/// Encodes a batch into a fresh buffer.
pub fn encode(
    base_offset: u64,
    timestamp_us: i64,
    entries: &[Entry],
) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_into(&mut out, base_offset, timestamp_us, entries)?;
    Ok(out)
}

fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Checks a frame header (the first [`HEADER_LEN`] bytes) and returns the
/// total frame length it declares.
pub fn check_header(header: &[u8]) -> Result<usize, FrameError> {
    if header.len() < HEADER_LEN {
        return Err(FrameError::Truncated {
            need: HEADER_LEN,
            have: header.len(),
        });
    }
    let magic = u32_at(header, 0);
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let body_len = u32_at(header, 4) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&body_len) {
        return Err(FrameError::BadLength(body_len));
    }
    Ok(HEADER_LEN + body_len)
}

/// Decodes the frame at the start of `bytes`; returns it and its length.
pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
    let total = check_header(bytes)?;
    if bytes.len() < total {
        return Err(FrameError::Truncated {
            need: total,
            have: bytes.len(),
        });
    }
    let stored = u32_at(bytes, 8);
    let body = &bytes[HEADER_LEN..total];
    let computed = checksum(&bytes[4..8], body);
    if stored != computed {
        return Err(FrameError::BadChecksum { stored, computed });
    }
    Ok((decode_body(body)?, total))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(FrameError::Malformed("field runs past the body"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32_at(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Result<String, FrameError> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| FrameError::Malformed("header is not utf-8"))
    }
}

fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
    let mut c = Cursor { b: body, at: 0 };
    let base_offset = c.u64()?;
    let count = c.u32()? as usize;
    let timestamp_us = c.u64()? as i64;
    if count == 0 {
        return Err(FrameError::Malformed("zero entries"));
    }
    if base_offset.checked_add(count as u64).is_none() {
        return Err(FrameError::Malformed("offset overflow"));
    }
    // Each entry takes at least 8 bytes; bound the allocation by the body.
    let mut entries = Vec::with_capacity(count.min(body.len() / 8));
    for _ in 0..count {
        let n_headers = c.u32()? as usize;
        let mut headers = BTreeMap::new();
        for _ in 0..n_headers {
            let k = c.string()?;
            let v = c.string()?;
            headers.insert(k, v);
        }
        let plen = c.u32()? as usize;
        let payload = c.take(plen)?.to_vec();
        entries.push(Entry { headers, payload });
    }
    if c.at != body.len() {
        return Err(FrameError::Malformed("trailing bytes in body"));
    }
    Ok(Frame {
        base_offset,
        timestamp_us,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry_strategy() -> impl Strategy<Value = Entry> {
        (
            proptest::collection::btree_map("[a-z]{0,6}", "[ -~]{0,8}", 0..3),
            proptest::collection::vec(any::<u8>(), 1..64),
        )
            .prop_map(|(headers, payload)| Entry { headers, payload })
    }

    proptest! {
        #[test]
        fn round_trip(base in 0u64..1 << 40, ts in any::<i64>(),
                      entries in proptest::collection::vec(entry_strategy(), 1..8)) {
            let bytes = encode(base, ts, &entries).unwrap();
            let (frame, len) = decode(&bytes).unwrap();
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(frame, Frame { base_offset: base, timestamp_us: ts, entries });
        }

        #[test]
        fn any_truncation_is_detected(entries in proptest::collection::vec(entry_strategy(), 1..4),
                                      cut in any::<prop::sample::Index>()) {
            let bytes = encode(7, 1, &entries).unwrap();
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn any_single_byte_corruption_is_detected(entries in proptest::collection::vec(entry_strategy(), 1..4),
                                                  at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = encode(7, 1, &entries).unwrap();
            let at = at.index(bytes.len());
            bytes[at] ^= flip;
            // A corrupted length field may still describe a frame inside the
            // buffer; the checksum then covers different bytes and fails.
            prop_assert!(decode(&bytes).is_err());
        }
    }

    #[test]
    fn empty_batch_is_refused() {
        assert!(encode(0, 0, &[]).is_err());
    }
}
