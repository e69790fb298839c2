//! The rules of `http`: method, relative URL, headers, body.

use super::{MAX_APPEND_BYTES, check_payload, k};
use crate::catalog::HttpRequest;
use crate::tree::Seg;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn check(
    h: &HttpRequest,
    path: &[Seg],
    problem: &mut impl FnMut(Vec<Seg>, Option<&str>, String, Option<&str>),
) {
    let at = |key: &str| [path.to_vec(), vec![k(key)]].concat();
    let payload =
        |problem: &mut super::Report,
         key: &str,
         p: &crate::data::Payload,
         times: u64,
         limit: u64| { check_payload(problem, at(key), key, p, times, limit) };
    if !METHODS.contains(&h.method.as_str()) {
        let hint = crate::diag::did_you_mean(&h.method.to_uppercase(), METHODS)
            .map(|m| format!("did you mean `{m}`?"))
            .unwrap_or_else(|| format!("use one of {}", METHODS.join(", ")));
        problem(
            at("method"),
            None,
            format!("`{}` is not an HTTP method", h.method),
            Some(&hint),
        );
    }
    if !h.url.starts_with('/') {
        problem(
            at("url"),
            None,
            format!("`{}` is not relative to the service", h.url),
            Some(
                "start it with `/`; the base URL comes from the service (`stack.services` or `stack.external`)",
            ),
        );
    } else if h.url.contains(char::is_whitespace) {
        problem(
            at("url"),
            None,
            format!("`{}` contains a space", h.url),
            Some("percent-encode it as `%20`"),
        );
    } else if let Err(e) = crate::data::parse_template(&h.url) {
        problem(at("url"), None, e, None);
    }
    for (name, value) in &h.headers {
        if !is_header_name(name) {
            problem(
                at("headers"),
                Some(name),
                format!("`{name}` is not a header name"),
                Some("letters, digits and `-`, e.g. `content-type`"),
            );
        }
        if value.contains(['\r', '\n']) {
            problem(
                [at("headers"), vec![k(name)]].concat(),
                None,
                format!("header `{name}` has a line break"),
                Some("header values are one line"),
            );
        }
    }
    if let Some(body) = &h.body {
        payload(problem, "body", &body.0, 1, MAX_APPEND_BYTES);
        if matches!(h.method.as_str(), "GET" | "HEAD") {
            problem(
                at("body"),
                None,
                format!("a {} request with a body", h.method),
                Some("use `method: POST` or `PUT`, or remove `body`"),
            );
        }
    }
}
