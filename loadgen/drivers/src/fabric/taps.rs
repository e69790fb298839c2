//! The fabric's history taps: what each checked request (append, enqueue,
//! reserve/receive, ack, KV put/delete) records in `history.jsonl`, with
//! the identifiers of its answer.

use gauntlet_checkers::history::DeliveredJob;
use gauntlet_checkers::{Acknowledged, Digest, Invocation};

use crate::history::{Answer, Tap};

impl Tap {
    /// An append is about to be sent with `body` to `path`.
    pub fn invoke_append(&self, path: &str, body: &[u8]) -> Option<u64> {
        let req: fabric_wire::AppendRequest = serde_json::from_slice(body).ok()?;
        self.invoke(Invocation::StreamAppend {
            stream: resource(path),
            payloads: req.events.iter().map(|e| digest_b64(&e.payload)).collect(),
        })
    }

    pub fn complete_append(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |b| {
            let r: fabric_wire::AppendResponse = serde_json::from_slice(b).ok()?;
            Some(Acknowledged {
                offsets: r.offsets,
                ..Default::default()
            })
        });
    }

    pub fn invoke_enqueue(&self, path: &str, body: &[u8]) -> Option<u64> {
        let req: fabric_wire::EnqueueRequest = serde_json::from_slice(body).ok()?;
        self.invoke(Invocation::QueueEnqueue {
            queue: resource(path),
            payload: digest_b64(&req.payload),
        })
    }

    pub fn complete_enqueue(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |b| {
            let r: fabric_wire::EnqueueResponse = serde_json::from_slice(b).ok()?;
            Some(Acknowledged {
                job_id: Some(r.job_id),
                ..Default::default()
            })
        });
    }

    pub fn invoke_receive(&self, path: &str) -> Option<u64> {
        self.invoke(Invocation::QueueReceive {
            queue: resource(path),
        })
    }

    /// `many`: a receive (a list of jobs), else a reserve (one or none).
    pub fn complete_receive(&self, id: Option<u64>, answer: Answer, many: bool) {
        self.complete(id, answer, |b| {
            let jobs = if many {
                serde_json::from_slice::<fabric_wire::JobsResponse>(b)
                    .ok()?
                    .jobs
            } else {
                serde_json::from_slice::<fabric_wire::ReserveResponse>(b)
                    .ok()?
                    .job
                    .into_iter()
                    .collect()
            };
            Some(Acknowledged {
                jobs: jobs.iter().map(delivered).collect(),
                ..Default::default()
            })
        });
    }

    pub fn invoke_ack(&self, jobs_path: &str, job_id: &str) -> Option<u64> {
        self.invoke(Invocation::QueueAck {
            queue: resource(jobs_path),
            job_id: job_id.to_owned(),
        })
    }

    pub fn invoke_put(&self, keys_path: &str, key: &str, body: &[u8]) -> Option<u64> {
        let req: fabric_wire::KvPutRequest = serde_json::from_slice(body).ok()?;
        self.invoke(Invocation::KvPut {
            store: resource(keys_path),
            key: key.to_owned(),
            value: digest_b64(&req.value),
        })
    }

    pub fn invoke_delete(&self, keys_path: &str, key: &str) -> Option<u64> {
        self.invoke(Invocation::KvDelete {
            store: resource(keys_path),
            key: key.to_owned(),
        })
    }
}
/// The resource (`tenant/namespace/name`) of an API path
/// (`/api/v1/KIND/t/ns/name/…`).
pub fn resource(path: &str) -> String {
    let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
    rest.split('/')
        .skip(1)
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
}

/// The digest of a base64 payload's bytes (of the text itself when it is
/// not base64, which the fabric would refuse anyway).
pub fn digest_b64(b64: &str) -> Digest {
    match fabric_wire::decode_payload(b64) {
        Some(bytes) => Digest::of(&bytes),
        None => Digest::of(b64.as_bytes()),
    }
}

pub fn delivered(job: &fabric_wire::Job) -> DeliveredJob {
    DeliveredJob {
        job_id: job.id.clone(),
        payload: digest_b64(&job.payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use gauntlet_checkers::{History, Outcome};
    use tokio::time::Instant;

    #[test]
    fn resources_are_read_from_api_paths() {
        assert_eq!(resource("/api/v1/streams/t/ns/s/events"), "t/ns/s");
        assert_eq!(resource("/api/v1/queues/t/ns/q/jobs/"), "t/ns/q");
        assert_eq!(resource("/api/v1/kv/t/ns/k/keys/"), "t/ns/k");
    }

    #[test]
    fn payloads_are_digested_decoded() {
        let b64 = fabric_wire::encode_payload(b"hello");
        assert_eq!(digest_b64(&b64), Digest::of(b"hello"));
    }

    #[test]
    fn answers_are_classified_ok_fail_or_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let tap = Tap::create(dir.path()).unwrap();
        tap.start(Instant::now());
        let body = Bytes::from(
            serde_json::to_vec(&fabric_wire::AppendRequest {
                events: vec![fabric_wire::EventIn {
                    payload: fabric_wire::encode_payload(b"e1"),
                    headers: Default::default(),
                }],
            })
            .unwrap(),
        );
        let path = "/api/v1/streams/t/ns/s/events";
        let answers: [Answer; 5] = [
            Ok((200, br#"{"status":"success","offsets":[7]}"#.as_slice())),
            Ok((400, b"".as_slice())),
            Ok((503, b"".as_slice())),
            Err("io"),
            Ok((200, b"not json".as_slice())),
        ];
        for answer in answers {
            let id = tap.invoke_append(path, &body);
            tap.complete_append(id, answer);
        }
        // Sent, never answered (the engine's timeout dropped it).
        let _ = tap.invoke_append(path, &body);
        tap.flush();
        let h = History::read(&dir.path().join("history.jsonl")).unwrap();
        let outcomes: Vec<&Outcome> = h.operations.iter().map(|o| &o.outcome).collect();
        assert_eq!(h.operations.len(), 6);
        assert!(matches!(outcomes[0], Outcome::Ok(a) if a.offsets == [7]));
        assert!(matches!(outcomes[1], Outcome::Fail(e) if e == "http_400"));
        assert!(matches!(outcomes[2], Outcome::Unknown(e) if e == "http_503"));
        assert!(matches!(outcomes[3], Outcome::Unknown(e) if e == "io"));
        assert!(outcomes[4].is_unknown());
        assert!(outcomes[5].is_unknown());
        assert_eq!(
            h.operations[0].invocation,
            Invocation::StreamAppend {
                stream: "t/ns/s".to_owned(),
                payloads: vec![Digest::of(b"e1")],
            }
        );
    }
}
