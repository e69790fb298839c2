//! What every service of a stack has, whatever its runtime: its name, how
//! it is probed and stopped, its log, its current endpoint (published to
//! the drivers, which follow it when it moves), its state and its pid —
//! and the [`Stack`](gauntlet_control::Stack) accessors over a stack's
//! services, so both runtimes answer them the same way.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_control::{ControlError, Endpoint, ServiceState};
use gauntlet_scenario::{Readiness, Service};
use tokio::sync::watch;

/// One service's shared part, owned by the runtime's own service type.
pub struct ServiceHandle {
    pub name: String,
    pub readiness: Readiness,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    /// `logs/<service>.log` in the run directory.
    pub log: PathBuf,
    endpoint: watch::Sender<Endpoint>,
    state: Mutex<ServiceState>,
    /// 0: not running.
    pid: AtomicU32,
}

impl ServiceHandle {
    /// A stopped service of the scenario, reached at `endpoint` once started.
    pub fn new(name: &str, svc: &Service, log: PathBuf, endpoint: Endpoint) -> Self {
        Self {
            name: name.to_owned(),
            readiness: crate::kinds::readiness(svc),
            ready_timeout: svc.ready_timeout.0,
            stop_timeout: svc.stop_timeout.0,
            log,
            endpoint: watch::channel(endpoint).0,
            state: Mutex::new(ServiceState::Stopped),
            pid: AtomicU32::new(0),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.borrow().clone()
    }

    /// The endpoint as it changes (a container restarted on a new port).
    pub fn watch_endpoint(&self) -> watch::Receiver<Endpoint> {
        self.endpoint.subscribe()
    }

    /// Publishes where the service is reached now.
    pub fn publish(&self, endpoint: Endpoint) {
        self.endpoint.send_replace(endpoint);
    }

    pub fn state(&self) -> ServiceState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_state(&self, state: ServiceState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn pid(&self) -> Option<u32> {
        let pid = self.pid.load(Ordering::Relaxed);
        (pid != 0).then_some(pid)
    }

    /// Running as `pid`.
    pub fn started(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
        self.set_state(ServiceState::Running);
    }

    /// Not running any more.
    pub fn stopped(&self) {
        self.pid.store(0, Ordering::Relaxed);
        self.set_state(ServiceState::Stopped);
    }
}

/// A runtime's service type, which holds a [`ServiceHandle`].
pub trait HasHandle {
    fn handle(&self) -> &ServiceHandle;
}

impl<T: HasHandle> HasHandle for Arc<T> {
    fn handle(&self) -> &ServiceHandle {
        (**self).handle()
    }
}

/// A stack's services in start order, with the accessors of the `Stack`
/// trait that both runtimes share.
pub struct Services<S> {
    list: Vec<S>,
}

impl<S> Default for Services<S> {
    fn default() -> Self {
        Self { list: Vec::new() }
    }
}

impl<S: HasHandle> Services<S> {
    pub fn push(&mut self, service: S) -> &S {
        self.list.push(service);
        self.list.last().expect("just pushed")
    }

    /// In start order.
    pub fn iter(&self) -> std::slice::Iter<'_, S> {
        self.list.iter()
    }

    pub fn find(&self, service: &str) -> Result<&S, ControlError> {
        self.list
            .iter()
            .find(|s| s.handle().name == service)
            .ok_or_else(|| ControlError::UnknownService(service.to_owned()))
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|s| s.handle().name.clone()).collect()
    }

    pub fn endpoint(&self, service: &str) -> Result<Endpoint, ControlError> {
        Ok(self.find(service)?.handle().endpoint())
    }

    pub fn watch_endpoint(&self, service: &str) -> Result<watch::Receiver<Endpoint>, ControlError> {
        Ok(self.find(service)?.handle().watch_endpoint())
    }

    pub fn state(&self, service: &str) -> Result<ServiceState, ControlError> {
        Ok(self.find(service)?.handle().state())
    }

    pub fn pid(&self, service: &str) -> Option<u32> {
        self.find(service).ok()?.handle().pid()
    }

    pub fn log_path(&self, service: &str) -> Option<PathBuf> {
        Some(self.find(service).ok()?.handle().log.clone())
    }
}

/// The `Stack` accessors both runtimes answer the same way, delegated to
/// a [`Services`] field of the stack: `services`, `endpoint`,
/// `watch_endpoint`, `state`, `pid` and `log_path`. Expand it inside an
/// `impl gauntlet_control::Stack for …` block.
#[macro_export]
macro_rules! stack_accessors {
    ($field:ident) => {
        fn services(&self) -> Vec<String> {
            self.$field.names()
        }

        fn endpoint(
            &self,
            service: &str,
        ) -> Result<$crate::gauntlet_control::Endpoint, $crate::gauntlet_control::ControlError> {
            self.$field.endpoint(service)
        }

        fn watch_endpoint(
            &self,
            service: &str,
        ) -> Result<
            ::tokio::sync::watch::Receiver<$crate::gauntlet_control::Endpoint>,
            $crate::gauntlet_control::ControlError,
        > {
            self.$field.watch_endpoint(service)
        }

        fn state(
            &self,
            service: &str,
        ) -> Result<$crate::gauntlet_control::ServiceState, $crate::gauntlet_control::ControlError>
        {
            self.$field.state(service)
        }

        fn pid(&self, service: &str) -> Option<u32> {
            self.$field.pid(service)
        }

        fn log_path(&self, service: &str) -> Option<::std::path::PathBuf> {
            self.$field.log_path(service)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S(ServiceHandle);
    impl HasHandle for S {
        fn handle(&self) -> &ServiceHandle {
            &self.0
        }
    }

    #[test]
    fn services_answer_the_stack_accessors() {
        let svc: Service = serde_json::from_value(serde_json::json!({ "kind": "fabric" })).unwrap();
        let ep = |port| Endpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let mut services = Services::default();
        services.push(S(ServiceHandle::new("a", &svc, "a.log".into(), ep(1))));
        let a = services.find("a").unwrap().handle();
        let mut rx = services.watch_endpoint("a").unwrap();
        assert_eq!(services.pid("a"), None);
        assert_eq!(services.state("a").unwrap(), ServiceState::Stopped);
        a.started(42);
        a.publish(ep(2));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().port, 2);
        assert_eq!(services.endpoint("a").unwrap().port, 2);
        assert_eq!(services.pid("a"), Some(42));
        assert_eq!(services.state("a").unwrap(), ServiceState::Running);
        a.stopped();
        assert_eq!(services.pid("a"), None);
        assert_eq!(services.names(), ["a"]);
        assert_eq!(services.log_path("a"), Some(PathBuf::from("a.log")));
        assert!(matches!(
            services.state("b"),
            Err(ControlError::UnknownService(s)) if s == "b"
        ));
    }
}
