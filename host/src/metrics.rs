//! Prometheus metrics of the host (`/metrics`): calls of both protocols, plugin
//! failures and phases, plugin loads and swaps, what is held in memory.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    protocol: String,
    rpc: String,
    plugin: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    protocol: String,
    rpc: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    plugin: String,
    phase: String,
}

type Latency = Family<RpcLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Latency,
    plugin_errors: Family<PluginLabels, Counter>,
    phases: Family<PhaseLabels, Counter>,
    plugins_loaded: Gauge,
    swaps: Family<PluginLabels, Counter>,
    load_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    load_failures: Family<FileLabels, Counter>,
    cached_objects: Gauge,
    open_watches: Gauge,
    tracked_tasks: Gauge,
    settled_looks: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flytewasm");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "RPCs answered, by protocol (agent: Flyte 1, connector: Flyte 2), RPC, plugin and gRPC status code",
            calls.clone(),
        );
        let latency: Latency =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_1, 2.0, 18)));
        registry.register(
            "call_duration_seconds",
            "Time to answer an RPC, by protocol and RPC",
            latency.clone(),
        );
        let plugin_errors = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_errors",
            "Plugin calls that failed (trap, deadline, memory cap, invalid answer)",
            plugin_errors.clone(),
        );
        let phases = Family::<PhaseLabels, Counter>::default();
        registry.register(
            "task_phases",
            "Task phases reported by GetTask, by plugin and phase",
            phases.clone(),
        );
        let plugins_loaded = Gauge::default();
        registry.register(
            "plugins_loaded",
            "Plugins currently served",
            plugins_loaded.clone(),
        );
        let swaps = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_swaps",
            "Plugin versions loaded and put in service (first load or replacement)",
            swaps.clone(),
        );
        let load_seconds: Family<PluginLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14)));
        registry.register(
            "plugin_load_duration_seconds",
            "Time to load a plugin file (read, compile or deserialize, check, describe)",
            load_seconds.clone(),
        );
        let load_failures = Family::<FileLabels, Counter>::default();
        registry.register(
            "plugin_load_failures",
            "Plugin files refused (invalid, incompatible, not allowed, conflicting)",
            load_failures.clone(),
        );
        let cached_objects = Gauge::default();
        registry.register(
            "watch_cached_objects",
            "Objects held by the watch caches (only objects this host manages)",
            cached_objects.clone(),
        );
        let open_watches = Gauge::default();
        registry.register(
            "watches_open",
            "Watches open, one per (kind, namespace) with live tasks",
            open_watches.clone(),
        );
        let tracked_tasks = Gauge::default();
        registry.register(
            "tasks_tracked",
            "Tasks this replica keeps something about in memory (launches, last phases)",
            tracked_tasks.clone(),
        );
        let settled_looks = Counter::default();
        registry.register(
            "settled_looks",
            "GetTask looks answered again without reading the object or calling the plugin: nothing changed since a look that answered the same",
            settled_looks.clone(),
        );
        Metrics {
            registry,
            settled_looks,
            cached_objects,
            open_watches,
            tracked_tasks,
            swaps,
            load_seconds,
            load_failures,
            calls,
            latency,
            plugin_errors,
            phases,
            plugins_loaded,
        }
    }
}

impl Metrics {
    /// A call by `protocol` (`agent` or `connector`).
    pub fn call(&self, protocol: &str, rpc: &str, plugin: &str, code: tonic::Code, took: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                protocol: protocol.into(),
                rpc: rpc.into(),
                plugin: plugin.into(),
                code: format!("{code:?}"),
            })
            .inc();
        self.latency
            .get_or_create(&RpcLabels {
                protocol: protocol.into(),
                rpc: rpc.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn plugin_error(&self, plugin: &str) {
        self.plugin_errors
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
            })
            .inc();
    }

    pub fn phase(&self, plugin: &str, phase: &str) {
        self.phases
            .get_or_create(&PhaseLabels {
                plugin: plugin.into(),
                phase: phase.into(),
            })
            .inc();
    }

    pub fn plugins_loaded(&self, count: usize) {
        self.plugins_loaded.set(count as i64);
    }

    pub fn plugin_swap(&self, plugin: &str, took: Duration) {
        let labels = PluginLabels {
            plugin: plugin.into(),
        };
        self.swaps.get_or_create(&labels).inc();
        self.load_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn plugin_load_failure(&self, file: &str) {
        self.load_failures
            .get_or_create(&FileLabels { file: file.into() })
            .inc();
    }

    pub fn settled_look(&self) {
        self.settled_looks.inc();
    }

    /// What the host holds in memory now (set at each scrape).
    pub fn held(&self, cached_objects: usize, open_watches: usize, tracked_tasks: usize) {
        self.cached_objects.set(cached_objects as i64);
        self.open_watches.set(open_watches as i64);
        self.tracked_tasks.set(tracked_tasks as i64);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
