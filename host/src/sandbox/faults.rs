//! Fault injection, switchable per test: errors on chosen verbs, slow
//! responses (all, or only writes), dropped watch streams. Also counts the
//! requests served, so tests can check the host does not poll. Tests in
//! other processes reach it through the control endpoint ([`super::control`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use super::store::ApiError;

/// The API verbs, as Kubernetes names them.
pub const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// The verbs write latency applies to.
pub const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    latency: Mutex<Duration>,
    write_latency: Mutex<Duration>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Errors answered, by "verb code".
    served: Mutex<BTreeMap<String, u64>>,
    drops: watch::Sender<u64>,
}

struct Rule {
    verb: &'static str,
    /// Only requests on this resource (plural), as an admission webhook
    /// that fails for one kind; `None`: every resource.
    resource: Option<String>,
    code: u16,
    remaining: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            write_latency: Mutex::new(Duration::ZERO),
            counts: Mutex::new(BTreeMap::new()),
            served: Mutex::new(BTreeMap::new()),
            drops: watch::channel(0).0,
        }
    }
}

impl Faults {
    /// Answer the next `times` requests of `verb` with HTTP `code`
    /// (500, 503, 429, 409...).
    pub fn fail_next(&self, verb: &'static str, code: u16, times: u32) {
        self.push(verb, None, code, times);
    }

    /// [`Faults::fail_next`] for requests on one resource (plural) only.
    pub fn fail_next_on(&self, verb: &'static str, resource: &str, code: u16, times: u32) {
        self.push(verb, Some(resource.into()), code, times);
    }

    fn push(&self, verb: &'static str, resource: Option<String>, code: u16, times: u32) {
        assert!(VERBS.contains(&verb), "unknown verb {verb}");
        self.rules.lock().unwrap().push(Rule {
            verb,
            resource,
            code,
            remaining: times,
        });
    }

    /// Stop injecting: no pending errors, no delays.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
        *self.latency.lock().unwrap() = Duration::ZERO;
        *self.write_latency.lock().unwrap() = Duration::ZERO;
    }

    /// Delay every response.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap() = latency;
    }

    /// Delay the responses to writes (create, update, patch, delete)
    /// further, on top of [`Faults::set_latency`]: a slow etcd.
    pub fn set_write_latency(&self, latency: Duration) {
        *self.write_latency.lock().unwrap() = latency;
    }

    /// The injected errors still to answer: (verb, resource, code, times).
    pub fn pending(&self) -> Vec<(&'static str, Option<String>, u16, u32)> {
        let rules = self.rules.lock().unwrap();
        rules
            .iter()
            .map(|r| (r.verb, r.resource.clone(), r.code, r.remaining))
            .collect()
    }

    /// End every open watch stream now (clients must re-watch).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    pub(super) fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Requests served for `verb` so far.
    pub fn requests(&self, verb: &str) -> u64 {
        self.counts.lock().unwrap().get(verb).copied().unwrap_or(0)
    }

    /// Injected errors answered so far, by "verb code".
    pub fn errors_served(&self) -> BTreeMap<String, u64> {
        self.served.lock().unwrap().clone()
    }

    /// Requests served, per verb.
    pub fn request_counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap().clone()
    }

    pub fn latency(&self) -> Duration {
        *self.latency.lock().unwrap()
    }

    pub fn write_latency(&self) -> Duration {
        *self.write_latency.lock().unwrap()
    }

    /// How long to hold a response to `verb`.
    pub(super) fn delay(&self, verb: &str) -> Duration {
        let write = if WRITE_VERBS.contains(&verb) {
            self.write_latency()
        } else {
            Duration::ZERO
        };
        self.latency() + write
    }

    /// Count a request (on `resource`, when it names one) and return the
    /// injected error for it, if any.
    pub(super) fn on_request(
        &self,
        verb: &'static str,
        resource: Option<&str>,
    ) -> Option<ApiError> {
        *self.counts.lock().unwrap().entry(verb).or_default() += 1;
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.verb == verb
                && r.remaining > 0
                && r.resource
                    .as_deref()
                    .is_none_or(|only| Some(only) == resource)
        })?;
        rule.remaining -= 1;
        let code = rule.code;
        rules.retain(|r| r.remaining > 0);
        *self
            .served
            .lock()
            .unwrap()
            .entry(format!("{verb} {code}"))
            .or_default() += 1;
        let reason = match code {
            409 => "Conflict",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        Some(ApiError::new(
            code,
            reason,
            format!("injected by the sandbox: {code} on {verb}"),
        ))
    }
}
