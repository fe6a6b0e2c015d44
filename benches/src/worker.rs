//! The worker child process: a runtime with the benchmark integration on a
//! SQLite file or a PostgreSQL schema, running until killed or for
//! `--seconds` (then it prints its memory as JSON and exits).

use std::sync::Arc;
use std::time::Duration;

use integration_runtime::{Runtime, SqliteStore, Store};

use crate::common::{bench_sync, rss_kb, Result};

/// Options of the `worker` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The SQLite file of the store.
    #[arg(long)]
    sqlite: Option<String>,
    /// A PostgreSQL URL instead.
    #[arg(long)]
    postgres: Option<String>,
    /// The PostgreSQL schema.
    #[arg(long)]
    schema: Option<String>,
    /// The provider's base URL.
    #[arg(long)]
    url: String,
    /// Calls executed at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The claim lease, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    lease_ms: u64,
    /// The idle poll interval, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    idle_ms: u64,
    /// Run this long, print `{"rss_kb":..,"hwm_kb":..}` and exit.
    #[arg(long)]
    seconds: Option<f64>,
    /// The lease owner name.
    #[arg(long)]
    worker_id: Option<String>,
    /// Run the rate-limited integration (`specs/bench_limited.toml`) instead.
    #[arg(long)]
    limited: bool,
    /// Share rate limits and circuit breakers with the other processes through the store.
    #[arg(long)]
    shared_protection: bool,
}

/// Opens the store the arguments name.
async fn store(args: &WorkerArgs) -> Result<Arc<dyn Store>> {
    if let Some(path) = &args.sqlite {
        return Ok(Arc::new(SqliteStore::open(path).await?));
    }
    if let Some(url) = &args.postgres {
        return crate::postgres::open(url, args.schema.as_deref().unwrap_or("public"), 8).await;
    }
    Err("worker: give --sqlite or --postgres".into())
}

pub(crate) async fn run(args: WorkerArgs) -> Result<()> {
    let _ = tracing::subscriber::set_global_default(StderrWarnings);
    let store = store(&args).await?;
    let builder = Runtime::builder().store(store);
    let builder = match args.limited {
        true => builder.integration(crate::shared_rate::integration(&args.url)?),
        false => builder.integration(bench_sync(&args.url)?),
    };
    let mut builder = builder
        .shared_protection(args.shared_protection)
        .concurrency(args.concurrency)
        .claim_batch(args.concurrency as u32)
        .lease(Duration::from_millis(args.lease_ms))
        .poll_idle(Duration::from_millis(args.idle_ms));
    if let Some(id) = &args.worker_id {
        builder = builder.worker_id(id.clone());
    }
    let rt = builder.build().await?;
    match args.seconds {
        None => {
            rt.run().await?;
        }
        Some(seconds) => {
            let worker = tokio::spawn({
                let rt = rt.clone();
                async move { rt.run().await }
            });
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            let (rss, hwm) = rss_kb();
            rt.shutdown(Duration::from_secs(5)).await;
            worker.await??;
            let counts = rt.count_by_status(None).await?;
            println!(
                "{{\"rss_kb\":{rss},\"hwm_kb\":{hwm},\"completed\":{},\"pending\":{}}}",
                counts.completed, counts.pending
            );
        }
    }
    Ok(())
}

/// Prints warnings and errors of the runtime (`tracing`) to stderr: a worker
/// child has no other way to say why it cannot claim or store.
pub(crate) struct StderrWarnings;

impl tracing::Subscriber for StderrWarnings {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        // The runtime's own warnings; sqlx's slow-statement notices are noise here.
        *metadata.level() <= tracing::Level::WARN && metadata.target().starts_with("integration_runtime")
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        eprintln!(
            "[worker {}] {}{}",
            std::process::id(),
            event.metadata().level(),
            fields.0
        );
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}
