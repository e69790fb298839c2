//! The frames nodes exchange, each the payload of one `network-protocol`
//! [`Packet`](network_protocol::Packet) (the crate's `PacketCodec` frames
//! them: magic, version, length).
//!
//! Layout: a tag byte, then fields in order — integers big-endian,
//! strings and byte strings as a `u32` length and the bytes. A batch's
//! messages are a `u32` count, then per message a key flag (0/1, then the
//! key) and the payload. Decoding slices the packet's buffer: payloads are
//! not copied again.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{ApiError, Code};
use crate::message::Message;

/// One frame between two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame of a connection: who dials.
    Hello {
        node: String,
    },
    /// Admit `messages` into the component `target` of the receiving node;
    /// answered by `Settled` once every delivery reached the end of its path.
    Deliver {
        id: u64,
        target: String,
        hops: u8,
        messages: Vec<Message>,
    },
    /// How the deliveries of `Deliver { id }` ended.
    Settled {
        id: u64,
        delivered: u64,
        failed: u64,
        error: Option<ApiError>,
    },
    /// Is a component named `name` registered on the receiving node?
    Lookup {
        id: u64,
        name: String,
    },
    /// The answer to `Lookup { id }`: its state, or `None` when absent.
    Found {
        id: u64,
        state: Option<String>,
    },
    /// Heartbeat and connection probe.
    Ping {
        id: u64,
    },
    Pong {
        id: u64,
    },
}

const HELLO: u8 = 1;
const DELIVER: u8 = 2;
const SETTLED: u8 = 3;
const LOOKUP: u8 = 4;
const FOUND: u8 = 5;
const PING: u8 = 6;
const PONG: u8 = 7;

/// A frame that cannot be decoded (the connection is then dropped).
#[derive(Debug, thiserror::Error)]
#[error("malformed cluster frame: {0}")]
pub struct Malformed(pub &'static str);

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(64);
        match self {
            Frame::Hello { node } => {
                out.put_u8(HELLO);
                put_bytes(&mut out, node.as_bytes());
            }
            Frame::Deliver {
                id,
                target,
                hops,
                messages,
            } => {
                let size: usize = messages
                    .iter()
                    .map(|m| 9 + m.payload.len() + m.key.as_ref().map_or(0, |k| k.len()))
                    .sum();
                out.reserve(size + target.len() + 20);
                out.put_u8(DELIVER);
                out.put_u64(*id);
                put_bytes(&mut out, target.as_bytes());
                out.put_u8(*hops);
                out.put_u32(messages.len() as u32);
                for m in messages {
                    match &m.key {
                        Some(k) => {
                            out.put_u8(1);
                            put_bytes(&mut out, k);
                        }
                        None => out.put_u8(0),
                    }
                    put_bytes(&mut out, &m.payload);
                }
            }
            Frame::Settled {
                id,
                delivered,
                failed,
                error,
            } => {
                out.put_u8(SETTLED);
                out.put_u64(*id);
                out.put_u64(*delivered);
                out.put_u64(*failed);
                match error {
                    Some(e) => {
                        out.put_u8(1);
                        put_bytes(&mut out, e.code.as_str().as_bytes());
                        put_bytes(&mut out, e.message.as_bytes());
                    }
                    None => out.put_u8(0),
                }
            }
            Frame::Lookup { id, name } => {
                out.put_u8(LOOKUP);
                out.put_u64(*id);
                put_bytes(&mut out, name.as_bytes());
            }
            Frame::Found { id, state } => {
                out.put_u8(FOUND);
                out.put_u64(*id);
                match state {
                    Some(s) => {
                        out.put_u8(1);
                        put_bytes(&mut out, s.as_bytes());
                    }
                    None => out.put_u8(0),
                }
            }
            Frame::Ping { id } => {
                out.put_u8(PING);
                out.put_u64(*id);
            }
            Frame::Pong { id } => {
                out.put_u8(PONG);
                out.put_u64(*id);
            }
        }
        out.to_vec()
    }

    pub fn decode(payload: Vec<u8>) -> Result<Frame, Malformed> {
        let mut b = Bytes::from(payload);
        let tag = get_u8(&mut b)?;
        Ok(match tag {
            HELLO => Frame::Hello {
                node: get_string(&mut b)?,
            },
            DELIVER => {
                let id = get_u64(&mut b)?;
                let target = get_string(&mut b)?;
                let hops = get_u8(&mut b)?;
                let n = get_u32(&mut b)? as usize;
                // Each message takes at least 5 bytes: a count larger than
                // the frame can hold is a lie, not an allocation.
                if n > b.remaining() / 5 + 1 {
                    return Err(Malformed("message count larger than the frame"));
                }
                let mut messages = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = match get_u8(&mut b)? {
                        0 => None,
                        1 => Some(get_bytes(&mut b)?),
                        _ => return Err(Malformed("key flag")),
                    };
                    let payload = get_bytes(&mut b)?;
                    messages.push(Message { key, payload });
                }
                Frame::Deliver {
                    id,
                    target,
                    hops,
                    messages,
                }
            }
            SETTLED => {
                let id = get_u64(&mut b)?;
                let delivered = get_u64(&mut b)?;
                let failed = get_u64(&mut b)?;
                let error = match get_u8(&mut b)? {
                    0 => None,
                    1 => {
                        let code = code_of(&get_string(&mut b)?);
                        Some(ApiError::new(code, get_string(&mut b)?))
                    }
                    _ => return Err(Malformed("error flag")),
                };
                Frame::Settled {
                    id,
                    delivered,
                    failed,
                    error,
                }
            }
            LOOKUP => Frame::Lookup {
                id: get_u64(&mut b)?,
                name: get_string(&mut b)?,
            },
            FOUND => {
                let id = get_u64(&mut b)?;
                let state = match get_u8(&mut b)? {
                    0 => None,
                    1 => Some(get_string(&mut b)?),
                    _ => return Err(Malformed("state flag")),
                };
                Frame::Found { id, state }
            }
            PING => Frame::Ping {
                id: get_u64(&mut b)?,
            },
            PONG => Frame::Pong {
                id: get_u64(&mut b)?,
            },
            _ => return Err(Malformed("unknown frame tag")),
        })
    }
}

/// The code of an error that crossed the wire (an unknown one from a newer
/// node is `unavailable`: the delivery did not happen as asked).
fn code_of(s: &str) -> Code {
    [
        Code::NotFound,
        Code::UnknownComponent,
        Code::InvalidRequest,
        Code::Capacity,
        Code::MailboxFull,
        Code::CapabilityDenied,
        Code::HandlerFailed,
        Code::Unavailable,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
    .unwrap_or(Code::Unavailable)
}

fn get_u8(b: &mut Bytes) -> Result<u8, Malformed> {
    if b.remaining() < 1 {
        return Err(Malformed("truncated"));
    }
    Ok(b.get_u8())
}

fn get_u32(b: &mut Bytes) -> Result<u32, Malformed> {
    if b.remaining() < 4 {
        return Err(Malformed("truncated"));
    }
    Ok(b.get_u32())
}

fn get_u64(b: &mut Bytes) -> Result<u64, Malformed> {
    if b.remaining() < 8 {
        return Err(Malformed("truncated"));
    }
    Ok(b.get_u64())
}

fn get_bytes(b: &mut Bytes) -> Result<Bytes, Malformed> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n {
        return Err(Malformed("truncated"));
    }
    Ok(b.split_to(n))
}

fn get_string(b: &mut Bytes) -> Result<String, Malformed> {
    String::from_utf8(get_bytes(b)?.to_vec()).map_err(|_| Malformed("string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        let frames = [
            Frame::Hello { node: "b".into() },
            Frame::Deliver {
                id: 7,
                target: "sink".into(),
                hops: 3,
                messages: vec![
                    Message::keyed("k", "{\"a\":1}"),
                    Message::new(vec![0u8; 300]),
                ],
            },
            Frame::Settled {
                id: 7,
                delivered: 4,
                failed: 1,
                error: Some(ApiError::new(Code::HandlerFailed, "boom")),
            },
            Frame::Settled {
                id: 8,
                delivered: 2,
                failed: 0,
                error: None,
            },
            Frame::Lookup {
                id: 9,
                name: "x".into(),
            },
            Frame::Found {
                id: 9,
                state: Some("running".into()),
            },
            Frame::Found {
                id: 10,
                state: None,
            },
            Frame::Ping { id: 11 },
            Frame::Pong { id: 11 },
        ];
        for f in frames {
            assert_eq!(Frame::decode(f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn truncated_and_lying_frames_are_errors() {
        let whole = Frame::Deliver {
            id: 1,
            target: "t".into(),
            hops: 0,
            messages: vec![Message::new("abc")],
        }
        .encode();
        for cut in 0..whole.len() {
            assert!(
                Frame::decode(whole[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
        let mut lying = whole.clone();
        // The message count (after tag, id, target and hops) claims a billion.
        let at = 1 + 8 + 4 + 1 + 1;
        lying[at..at + 4].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        assert!(Frame::decode(lying).is_err());
        assert!(Frame::decode(vec![99]).is_err());
    }
}
