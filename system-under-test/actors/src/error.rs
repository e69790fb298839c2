//! The one error type of the node: a code from the spec's list, an HTTP
//! status and a message. Rendered once, at the HTTP edge, as
//! `{"status":"error","code":…,"message":…}`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    NotFound,
    UnknownComponent,
    InvalidRequest,
    Capacity,
    MailboxFull,
    CapabilityDenied,
    HandlerFailed,
    Unavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "not_found",
            Code::UnknownComponent => "unknown_component",
            Code::InvalidRequest => "invalid_request",
            Code::Capacity => "capacity",
            Code::MailboxFull => "mailbox_full",
            Code::CapabilityDenied => "capability_denied",
            Code::HandlerFailed => "handler_failed",
            Code::Unavailable => "unavailable",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            Code::NotFound | Code::UnknownComponent => 404,
            Code::InvalidRequest => 400,
            Code::Capacity | Code::MailboxFull => 429,
            Code::CapabilityDenied => 403,
            Code::HandlerFailed => 500,
            Code::Unavailable => 503,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Overrides the code's status (409 for a name taken by another spec).
    pub status: Option<u16>,
    /// For a batch that partly failed: deliveries handled and failed.
    pub counts: Option<(u64, u64)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            status: None,
            counts: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidRequest, message)
    }
    pub fn unknown(name: &str) -> ApiError {
        ApiError::new(
            Code::UnknownComponent,
            format!("no component named `{name}` on this node"),
        )
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Unavailable, message)
    }
    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = Some(status);
        self
    }
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or(self.code.status())
    }
}
