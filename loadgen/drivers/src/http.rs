//! `http`: any HTTP request to a service of the stack or an external base
//! URL — method, URL template, headers, body generator, expected statuses.
//! The generic driver, for systems Gauntlet has no driver of their own for.

use gauntlet_engine::{Connections, http};
use gauntlet_recorder::Outcome;
use gauntlet_scenario::{Expect, HttpRequest};
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};

use crate::data::{Ctx, PayloadGen, Rng, Template};
use crate::request::{http_status, send_with};
use crate::{Call, Chain, PrepareAt, Target};

/// One prepared HTTP request.
pub struct HttpCall {
    target: Target,
    method: String,
    url: Template,
    /// The URL rendered once, when it has no placeholder.
    fixed_url: Option<String>,
    /// Header lines, as the engine's client writes them.
    headers: Vec<u8>,
    body: Option<PayloadGen>,
    expect: Expect,
    seed: u64,
    stream: u64,
}

/// Prepares an `http` action.
pub fn prepare(h: &HttpRequest, at: &PrepareAt) -> Result<HttpCall, String> {
    let (target, seed, stream, shared) = (at.target.clone(), at.seed, at.stream, at.shared);
    let payload = |p: &gauntlet_scenario::Payload, field: u64| {
        PayloadGen::new(p, seed, stream ^ (field << 48), &shared.counters)
    };

    let method = Method::from_bytes(h.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", h.method))?;
    let mut headers = Vec::new();
    for (name, value) in &h.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` has a value HTTP cannot carry"))?;
        headers.push((n, v));
    }
    let json = h.body.as_ref().is_some_and(|b| PayloadGen::is_json(&b.0));
    if json
        && !headers
            .iter()
            .any(|(n, _)| *n == hyper::header::CONTENT_TYPE)
    {
        headers.push((
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
    }
    let url = Template::text(&h.url, &shared.counters);
    Ok(HttpCall {
        target,
        method: method.as_str().to_owned(),
        fixed_url: url
            .is_constant()
            .then(|| url.render(&Ctx { seq: 0, key: None }, &mut Rng::new(0))),
        url,
        headers: http::header_lines(
            headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
        ),
        body: h.body.as_ref().map(|b| payload(&b.0, 1)),
        expect: h.expect.clone(),
        seed,
        stream,
    })
}

impl Call for HttpCall {
    fn perform<'a>(
        &'a self,
        conns: &'a Connections,
        chain: &'a mut Chain,
    ) -> impl std::future::Future<Output = Outcome> + Send + 'a {
        self.run(&conns.http, chain.seq)
    }
}

impl HttpCall {
    async fn run(&self, client: &http::Client, seq: u64) -> Outcome {
        let ctx = Ctx { seq, key: None };
        let rendered;
        let path = match &self.fixed_url {
            Some(path) => path.as_str(),
            None => {
                rendered = self
                    .url
                    .render(&ctx, &mut Rng::for_request(self.seed, self.stream, seq));
                rendered.as_str()
            }
        };
        let bytes = self
            .body
            .as_ref()
            .map(|b| b.generate(&ctx, 0))
            .unwrap_or_default();
        match send_with(
            client,
            &self.target,
            &self.method,
            path,
            &self.headers,
            &bytes,
        )
        .await
        {
            Ok(resp) if self.expect.accepts(resp.status) => Outcome::Ok,
            Ok(resp) => http_status(resp.status),
            Err(kind) => Outcome::Error(kind),
        }
    }
}
