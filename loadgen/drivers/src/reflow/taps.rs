//! A Reflow node's history taps: each checked `reflow.send` records its
//! service, source node and message count in `history.jsonl`, and how it
//! ended (`accepted`, as the acknowledgement's `handled`).

use gauntlet_checkers::{Acknowledged, Invocation};

use crate::history::{Answer, Tap};

impl Tap {
    /// A batch of `messages` is about to be sent into `node` of `service`.
    pub fn invoke_reflow_send(&self, service: &str, node: &str, messages: u64) -> Option<u64> {
        self.invoke(Invocation::ReflowSend {
            service: service.to_owned(),
            node: node.to_owned(),
            messages,
        })
    }

    /// A send's answer: `{"accepted": n}`.
    pub fn complete_reflow_send(&self, id: Option<u64>, answer: Answer) {
        self.complete(id, answer, |b| {
            let v: serde_json::Value = serde_json::from_slice(b).ok()?;
            Some(Acknowledged {
                handled: Some(v.get("accepted")?.as_u64()?),
                ..Default::default()
            })
        });
    }
}
