//! The actor node's history taps: what each checked send or publish
//! records in `history.jsonl` — the component, the counters its messages
//! are counted at, the messages per key — and how it ended (`handled`).

use std::collections::BTreeMap;

use gauntlet_checkers::{Acknowledged, Invocation};

use crate::history::{Answer, Tap};

impl Tap {
    /// A batch of messages is about to be sent to `component`.
    pub fn invoke_send(
        &self,
        component: &str,
        sinks: &[String],
        keys: BTreeMap<String, u64>,
    ) -> Option<u64> {
        self.invoke(Invocation::ActorSend {
            component: component.to_owned(),
            sinks: sinks.to_vec(),
            keys,
        })
    }

    /// A send's answer: `{"handled": n}` (or `{"queued": n}`).
    pub fn complete_send(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |b| {
            let v: serde_json::Value = serde_json::from_slice(b).ok()?;
            let handled = v.get("handled").or_else(|| v.get("queued"))?.as_u64()?;
            Some(Acknowledged {
                handled: Some(handled),
                ..Default::default()
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_checkers::{History, Outcome};
    use tokio::time::Instant;

    #[test]
    fn sends_record_their_sinks_keys_and_handled_count() {
        let dir = tempfile::tempdir().unwrap();
        let tap = Tap::create(dir.path()).unwrap();
        tap.start(Instant::now());
        let keys = BTreeMap::from([("k".to_owned(), 3)]);
        let sinks = ["p-3".to_owned()];
        let id = tap.invoke_send("p-1", &sinks, keys.clone());
        tap.complete_send(
            id,
            Ok((200, br#"{"status":"success","handled":3}"#.as_slice())),
        );
        let id = tap.invoke_send("p-1", &sinks, keys.clone());
        tap.complete_send(id, Ok((429, br#"{"status":"error"}"#.as_slice())));
        let id = tap.invoke_send("p-1", &sinks, keys.clone());
        tap.complete_send(id, Ok((500, b"".as_slice())));
        tap.flush();
        let h = History::read(&dir.path().join("history.jsonl")).unwrap();
        assert_eq!(
            h.operations[0].invocation,
            Invocation::ActorSend {
                component: "p-1".to_owned(),
                sinks: sinks.to_vec(),
                keys,
            }
        );
        assert!(matches!(&h.operations[0].outcome, Outcome::Ok(a) if a.handled == Some(3)));
        assert!(matches!(&h.operations[1].outcome, Outcome::Fail(e) if e == "http_429"));
        assert!(h.operations[2].outcome.is_unknown());
    }
}
