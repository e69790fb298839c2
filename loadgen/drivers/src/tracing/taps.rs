//! The tracing server's history taps: what each checked request records in
//! `history.jsonl` — a started trace (`tracing.start`), an event with its
//! id, trace, digest and the service it went through (`tracing.record`), a
//! subscriber's subscription, its notifications and its end — and how the
//! protocol's answers map to `ok` / `fail` / `unknown`: a success is `ok`;
//! `Error { InvalidRequest | SerializationError | NotFound | Unauthorized }`
//! is `fail` (definitely not stored); `StorageError` ("unavailable", a
//! commit whose outcome is unknown), `InternalError`, a transport error or
//! an unreadable answer is `unknown`.

use gauntlet_checkers::{Acknowledged, Invocation, Outcome};
use reflow_tracing_protocol::{ErrorCode, TracingResponse};

use super::error_kind;
use super::events::{Generated, digest};
use crate::history::Tap;

/// A non-success answer as the history records it.
fn not_ok(answer: &Result<TracingResponse, String>) -> Outcome {
    match answer {
        Ok(TracingResponse::Error { code, .. }) => match code {
            ErrorCode::StorageError | ErrorCode::InternalError => {
                Outcome::Unknown(error_kind(code))
            }
            _ => Outcome::Fail(error_kind(code)),
        },
        Ok(TracingResponse::EventRecorded { success: false, .. }) => {
            Outcome::Unknown("not_recorded".to_owned())
        }
        Ok(_) => Outcome::Unknown("bad_response".to_owned()),
        Err(kind) => Outcome::Unknown(kind.clone()),
    }
}

impl Tap {
    /// A trace of `flow` is about to be started.
    pub fn invoke_start(&self, flow: &str) -> Option<u64> {
        self.invoke(Invocation::TracingStart {
            flow: flow.to_owned(),
        })
    }

    /// `TraceStarted { trace_id }`: the trace id as the `ok`'s `job_id`.
    pub fn complete_start(&self, id: Option<u64>, answer: &Result<TracingResponse, String>) {
        let outcome = match answer {
            Ok(TracingResponse::TraceStarted { trace_id }) => Outcome::Ok(Acknowledged {
                job_id: Some(trace_id.0.to_string()),
                ..Acknowledged::default()
            }),
            other => not_ok(other),
        };
        self.complete_with(id, outcome);
    }

    /// Event `g` is about to be recorded into `trace_id` through `service`.
    pub fn invoke_record(&self, service: &str, trace_id: &str, g: &Generated) -> Option<u64> {
        self.invoke(Invocation::TracingRecord {
            event_id: g.event_id.to_string(),
            trace_id: trace_id.to_owned(),
            digest: digest(&g.event),
            actor_id: g.actor_id.clone(),
            service: service.to_owned(),
        })
    }

    /// `EventRecorded { success: true }` is the only `ok`.
    pub fn complete_record(&self, id: Option<u64>, answer: &Result<TracingResponse, String>) {
        let outcome = match answer {
            Ok(TracingResponse::EventRecorded { success: true, .. }) => {
                Outcome::Ok(Acknowledged::default())
            }
            other => not_ok(other),
        };
        self.complete_with(id, outcome);
    }

    /// Subscriber `subscriber` is about to subscribe on `service`.
    pub fn invoke_subscribe(&self, subscriber: &str, service: &str) -> Option<u64> {
        self.invoke(Invocation::TracingSubscribe {
            subscriber: subscriber.to_owned(),
            service: service.to_owned(),
        })
    }

    /// `Subscribe` is answered `Pong` (the protocol has no `Subscribed`).
    pub fn complete_subscribe(&self, id: Option<u64>, answer: &Result<TracingResponse, String>) {
        let outcome = match answer {
            Ok(TracingResponse::Pong) => Outcome::Ok(Acknowledged::default()),
            other => not_ok(other),
        };
        self.complete_with(id, outcome);
    }

    /// Notifications `events` reached `subscriber`.
    pub fn notified(&self, subscriber: &str, events: Vec<String>) {
        let id = self.invoke(Invocation::TracingNotified {
            subscriber: subscriber.to_owned(),
            events,
        });
        self.complete_with(id, Outcome::Ok(Acknowledged::default()));
    }

    /// `subscriber`'s subscription ended.
    pub fn subscription_ended(&self, subscriber: &str, reason: &str) {
        let id = self.invoke(Invocation::TracingSubscriptionEnded {
            subscriber: subscriber.to_owned(),
            reason: reason.to_owned(),
        });
        self.complete_with(id, Outcome::Ok(Acknowledged::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Counters;
    use crate::tracing::events::EventGen;
    use gauntlet_checkers::History;
    use tokio::time::Instant;

    #[test]
    fn events_record_their_digest_and_only_success_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let tap = Tap::create(dir.path()).unwrap();
        tap.start(Instant::now());
        let g = EventGen::new(&Default::default(), 1, 1, 1, &Counters::default()).generate(0);
        let answers: [Result<TracingResponse, String>; 4] = [
            Ok(TracingResponse::EventRecorded {
                success: true,
                error: None,
            }),
            Ok(TracingResponse::Error {
                message: "unavailable: db".into(),
                code: ErrorCode::StorageError,
            }),
            Ok(TracingResponse::Error {
                message: "event too large".into(),
                code: ErrorCode::InvalidRequest,
            }),
            Err("ws_dropped".into()),
        ];
        for a in &answers {
            let id = tap.invoke_record("ts1", "t", &g);
            tap.complete_record(id, a);
        }
        tap.flush();
        let h = History::read(&dir.path().join("history.jsonl")).unwrap();
        let Invocation::TracingRecord { digest: d, .. } = &h.operations[0].invocation else {
            panic!("a record");
        };
        assert_eq!(*d, digest(&g.event));
        assert!(h.operations[0].outcome.is_ok());
        assert!(h.operations[1].outcome.is_unknown());
        assert!(
            matches!(&h.operations[2].outcome, Outcome::Fail(e) if e == "tracing_invalid_request")
        );
        assert!(h.operations[3].outcome.is_unknown());
    }
}
