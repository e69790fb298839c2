//! Where a service is reached now: its endpoint (which may move during the
//! run, e.g. a container restarted on a new host port) and, for an external
//! base URL, a path prefix. Every request reads the current endpoint from a
//! `watch` channel; the engine client's endpoint is cached until it moves.

use std::fmt::Write as _;
use std::sync::Arc;

use gauntlet_control::Endpoint;
use gauntlet_engine::http;
use tokio::sync::watch;

/// The last endpoint seen and the engine client's endpoint for it.
type Resolved = (Endpoint, Arc<http::Endpoint>);

/// Where a service is reached now: its endpoint (which may change during
/// the run) and, for an external base URL, a path prefix.
#[derive(Clone)]
pub struct Target {
    endpoint: watch::Receiver<Endpoint>,
    prefix: Arc<str>,
    /// The engine client's endpoint for the last endpoint seen, so a
    /// request neither resolves nor allocates while the endpoint stays.
    resolved: Arc<std::sync::Mutex<Option<Resolved>>>,
}

impl Target {
    pub fn new(endpoint: watch::Receiver<Endpoint>, prefix: &str) -> Self {
        Self {
            endpoint,
            prefix: prefix.trim_end_matches('/').into(),
            resolved: Arc::default(),
        }
    }

    /// The service's current endpoint for the engine's client: an IP
    /// address is used as is; a host name is resolved when the endpoint
    /// changes, not per request.
    pub fn endpoint(&self) -> Result<Arc<http::Endpoint>, String> {
        let ep = self.endpoint.borrow();
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, at)) = &*resolved
            && seen.host == ep.host
            && seen.port == ep.port
        {
            return Ok(at.clone());
        }
        let host = ep.host.trim_start_matches('[').trim_end_matches(']');
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, ep.port),
            Err(_) => {
                use std::net::ToSocketAddrs as _;
                (host, ep.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| "connect".to_owned())?
            }
        };
        let at = Arc::new(http::Endpoint {
            addr,
            host: if addr.is_ipv6() {
                format!("[{host}]:{}", ep.port)
            } else {
                format!("{host}:{}", ep.port)
            },
        });
        *resolved = Some((ep.clone(), at.clone()));
        Ok(at)
    }

    /// `path` under the service's base URL (with an external URL's prefix).
    pub fn path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if self.prefix.is_empty() {
            std::borrow::Cow::Borrowed(path)
        } else {
            std::borrow::Cow::Owned(format!("{}{path}", self.prefix))
        }
    }

    /// The absolute URL of `path` at the service's current endpoint.
    pub fn url(&self, path: &str) -> String {
        let ep = self.endpoint.borrow();
        let mut url = String::with_capacity(24 + ep.host.len() + self.prefix.len() + path.len());
        let _ = write!(url, "http://{}:{}{}{}", ep.host, ep.port, self.prefix, path);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_follows_its_endpoint() {
        let (tx, rx) = watch::channel(Endpoint {
            host: "127.0.0.1".into(),
            port: 1000,
        });
        let target = Target::new(rx, "/base/");
        assert_eq!(target.url("/x"), "http://127.0.0.1:1000/base/x");
        tx.send(Endpoint {
            host: "127.0.0.1".into(),
            port: 2000,
        })
        .unwrap();
        assert_eq!(target.url("/x"), "http://127.0.0.1:2000/base/x");
    }

    #[test]
    fn the_client_endpoint_is_kept_until_the_endpoint_moves() {
        let (tx, rx) = watch::channel(Endpoint {
            host: "127.0.0.1".into(),
            port: 1000,
        });
        let target = Target::new(rx, "/base");
        let first = target.endpoint().unwrap();
        assert_eq!(first.addr, "127.0.0.1:1000".parse().unwrap());
        assert_eq!(first.host, "127.0.0.1:1000");
        assert!(Arc::ptr_eq(&first, &target.endpoint().unwrap()));
        assert_eq!(target.path("/x"), "/base/x");
        tx.send(Endpoint {
            host: "localhost".into(),
            port: 2000,
        })
        .unwrap();
        let moved = target.endpoint().unwrap();
        assert_eq!(moved.addr.port(), 2000);
        assert!(moved.addr.ip().is_loopback());
        assert_eq!(moved.host, "localhost:2000");
        let plain = Target::new(
            watch::channel(Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            })
            .1,
            "",
        );
        assert!(matches!(plain.path("/x"), std::borrow::Cow::Borrowed("/x")));
    }
}
