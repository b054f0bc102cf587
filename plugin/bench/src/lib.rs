//! Nothing here: the benchmark is `benches/calls.rs`.
