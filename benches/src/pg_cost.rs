//! What PostgreSQL work costs, read from outside the runtime: commits from
//! `pg_stat_database`, WAL flushes from `pg_stat_wal`, CPU time from `/proc/<pid>/stat`, and statements and
//! round trips counted on the wire by a relay in front of the server.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::common::Result;

/// A database of its own for the bench, so that its commit counter counts
/// nobody else's transactions (tests may share the server). Dropped by `drop`.
pub(crate) struct BenchDatabase {
    /// A connection to the database of the given URL, for the statistics.
    admin: sqlx::PgPool,
    name: String,
    /// The URL of the bench database.
    pub(crate) url: String,
}

impl BenchDatabase {
    pub(crate) async fn create(url: &str) -> Result<BenchDatabase> {
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let name = format!("integration_bench_{}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await?;
        let mut bench = reqwest::Url::parse(url)?;
        bench.set_path(&name);
        Ok(BenchDatabase {
            admin,
            name,
            url: bench.to_string(),
        })
    }

    /// Transactions committed in the bench database so far. A backend
    /// publishes its counts at most once a second, but always when it
    /// exits: call it once `wait_no_sessions` has seen every session end.
    pub(crate) async fn commits(&self) -> Result<u64> {
        let commits: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(&self.name)
            .fetch_one(&self.admin)
            .await?;
        Ok(u64::try_from(commits)?)
    }

    /// WAL flushes (`fsync`s) of the whole server so far. Commits that wait
    /// for the disk together share one flush, so this counts what the disk
    /// did, where `commits` counts what was asked of it. Published like the
    /// commits; the server's background writers are in.
    pub(crate) async fn wal_flushes(&self) -> Result<u64> {
        let flushes: i64 = sqlx::query_scalar("SELECT wal_sync FROM pg_stat_wal")
            .fetch_one(&self.admin)
            .await?;
        Ok(u64::try_from(flushes)?)
    }

    /// Waits until no session is connected to the bench database.
    pub(crate) async fn wait_no_sessions(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&self.name)
                .fetch_one(&self.admin)
                .await?;
            if sessions == 0 {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("{sessions} sessions still connected to {} after 30 s", self.name).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Server processes serving other databases (other users of the server,
    /// and the statistics connection): left out of the server's CPU.
    pub(crate) async fn other_backends(&self) -> Result<HashSet<u32>> {
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> $1")
                .bind(&self.name)
                .fetch_all(&self.admin)
                .await?;
        Ok(pids.into_iter().filter_map(|pid| u32::try_from(pid).ok()).collect())
    }

    pub(crate) async fn drop(self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await;
    }
}

/// Reads the CPU time (user + system) of processes from `/proc/<pid>/stat`.
pub(crate) struct ProcCpu {
    micros_per_tick: u64,
}

/// CPU microseconds of the processes named `postgres`, by (pid, start time)
/// so that a reused pid is not taken for the same process.
pub(crate) struct ServerCpu(HashMap<(u32, u64), u64>);

impl ProcCpu {
    pub(crate) fn new() -> Result<ProcCpu> {
        // `/proc` counts in clock ticks (USER_HZ); `getconf` knows how long one is.
        let out = std::process::Command::new("getconf").arg("CLK_TCK").output()?;
        let ticks: u64 = String::from_utf8(out.stdout)?.trim().parse()?;
        Ok(ProcCpu {
            micros_per_tick: 1_000_000 / ticks,
        })
    }

    /// CPU microseconds of process `pid` so far, all its threads together.
    pub(crate) fn process(&self, pid: u32) -> Option<u64> {
        let (_, cpu, _) = self.stat(pid)?;
        Some(cpu)
    }

    /// The current CPU time of every PostgreSQL server process.
    pub(crate) fn server(&self) -> Result<ServerCpu> {
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            match self.stat(pid) {
                Some((name, cpu, started)) if name == "postgres" => {
                    processes.insert((pid, started), cpu);
                }
                _ => {}
            }
        }
        Ok(ServerCpu(processes))
    }

    /// (command name, CPU microseconds, start time in ticks) of `pid`.
    fn stat(&self, pid: u32) -> Option<(String, u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The name is in parentheses and may hold spaces; the fields after
        // it start at field 3 (state): utime is 14, stime 15, starttime 22.
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some((name, (field(14)? + field(15)?) * self.micros_per_tick, field(22)?))
    }
}

impl ServerCpu {
    /// CPU microseconds spent since `self` by the processes of `now`,
    /// `excluded` aside. A process that ended in between is missing from
    /// `now`: call it before the bench's own sessions close.
    pub(crate) fn spent_until(&self, now: &ServerCpu, excluded: &HashSet<u32>) -> u64 {
        now.0
            .iter()
            .filter(|((pid, _), _)| !excluded.contains(pid))
            .map(|(process, cpu)| cpu.saturating_sub(self.0.get(process).copied().unwrap_or(0)))
            .sum()
    }
}

/// A TCP relay to PostgreSQL that counts what its clients cost on the wire:
/// statements (Execute and simple Query messages the clients send) and round
/// trips (ReadyForQuery messages the server sends: one per Sync or Query,
/// each of which the client waits for).
pub(crate) struct WireCounter {
    addr: SocketAddr,
    counts: Arc<WireCounts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct WireCounts {
    statements: AtomicU64,
    round_trips: AtomicU64,
}

impl Drop for WireCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WireCounter {
    /// Starts relaying to the server of `url`.
    pub(crate) async fn start(url: &str) -> Result<WireCounter> {
        let url = reqwest::Url::parse(url)?;
        let server = format!(
            "{}:{}",
            url.host_str().ok_or("the PostgreSQL URL names no host")?,
            url.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(WireCounts::default());
        let task = tokio::spawn({
            let counts = counts.clone();
            async move {
                // Dropped with the accept loop: aborting it ends every relay.
                let mut relays = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    relays.spawn(relay(client, server.clone(), counts.clone()));
                }
            }
        });
        Ok(WireCounter { addr, counts, task })
    }

    /// `url` through the relay. TLS off: the relay must read the messages.
    pub(crate) fn url(&self, url: &str) -> Result<String> {
        let mut url = reqwest::Url::parse(url)?;
        url.set_host(Some(&self.addr.ip().to_string()))?;
        url.set_port(Some(self.addr.port()))
            .map_err(|()| "the PostgreSQL URL takes no port")?;
        url.query_pairs_mut().append_pair("sslmode", "disable");
        Ok(url.to_string())
    }

    /// (statements, round trips) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.counts.statements.load(Ordering::Relaxed),
            self.counts.round_trips.load(Ordering::Relaxed),
        )
    }
}

async fn relay(client: TcpStream, server: String, counts: Arc<WireCounts>) -> std::io::Result<()> {
    let server = TcpStream::connect(server).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, Messages::new(false), |kind| {
        if matches!(kind, b'E' | b'Q') {
            counts.statements.fetch_add(1, Ordering::Relaxed);
        }
    });
    let down = pump(server_read, client_write, Messages::new(true), |kind| {
        if kind == b'Z' {
            counts.round_trips.fetch_add(1, Ordering::Relaxed);
        }
    });
    tokio::try_join!(up, down)?;
    Ok(())
}

/// Copies `from` to `to`, passing the type of every message to `seen`.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut messages: Messages,
    mut seen: impl FnMut(u8),
) -> std::io::Result<()> {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return to.shutdown().await;
        }
        messages.feed(&buffer[..read], &mut seen);
        to.write_all(&buffer[..read]).await?;
    }
}

/// Splits one direction of the PostgreSQL protocol into messages: a type
/// byte, then a big-endian length counting itself and the body. The client's
/// first message (startup) has no type byte.
struct Messages {
    header: [u8; 5],
    filled: usize,
    typed: bool,
    body_left: usize,
}

impl Messages {
    fn new(typed: bool) -> Messages {
        Messages {
            header: [0; 5],
            filled: 0,
            typed,
            body_left: 0,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], seen: &mut impl FnMut(u8)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(bytes.len());
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            let size = if self.typed { 5 } else { 4 };
            let taken = (size - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + taken].copy_from_slice(&bytes[..taken]);
            self.filled += taken;
            bytes = &bytes[taken..];
            if self.filled == size {
                let length = [0, 1, 2, 3].map(|i| self.header[size - 4 + i]);
                self.body_left = (u32::from_be_bytes(length) as usize).saturating_sub(4);
                if self.typed {
                    seen(self.header[0]);
                }
                self.typed = true;
                self.filled = 0;
            }
        }
    }
}
