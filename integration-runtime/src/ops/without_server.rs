//! Health checks and the circuit-breaker report. The operations API and the
//! `/health` route need feature `server`.

mod health;

pub use health::{CheckResult, CircuitReport, CircuitSource, Health, HealthCheck, HealthStatus};
