//! What the figures were measured on.

use std::io::Write as _;
use std::time::{Duration, Instant};

use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use crate::stats::median;

/// The machine, the databases and the disk.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// UTC date and time of the run.
    pub date: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model (from /proc/cpuinfo).
    pub cpu_model: String,
    /// Total memory (from /proc/meminfo).
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// PostgreSQL version and durability settings, or why unknown.
    pub postgres: String,
    /// SQLite library version.
    pub sqlite: String,
    /// Median latency of a 4 KiB append + `fdatasync` in the temp directory, µs.
    pub fdatasync_us: f64,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Collects the machine info (and probes the disk's `fdatasync` latency).
pub async fn collect(postgres_url: &str) -> MachineInfo {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or_else(
            || "unknown".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let memory = read("/proc/meminfo")
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        );
    let fdatasync_us = tokio::task::spawn_blocking(fdatasync_probe)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(f64::NAN);
    MachineInfo {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu_model,
        memory,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        postgres: postgres_info(postgres_url)
            .await
            .unwrap_or_else(|error| format!("unavailable ({error})")),
        sqlite: sqlite_version()
            .await
            .unwrap_or_else(|error| format!("unknown ({error})")),
        fdatasync_us,
    }
}

async fn postgres_info(url: &str) -> anyhow::Result<String> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    let mut values = Vec::new();
    for setting in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
    ] {
        let row = sqlx::query(&format!("SHOW {setting}"))
            .fetch_one(&pool)
            .await?;
        values.push(row.try_get::<String, _>(0)?);
    }
    pool.close().await;
    Ok(format!(
        "{} (fsync={}, synchronous_commit={}, wal_sync_method={})",
        values[0], values[1], values[2], values[3]
    ))
}

async fn sqlite_version() -> anyhow::Result<String> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await?;
    let row = sqlx::query("SELECT sqlite_version()")
        .fetch_one(&pool)
        .await?;
    let version = row.try_get::<String, _>(0)?;
    pool.close().await;
    Ok(version)
}

/// Median latency (µs) of appending 4 KiB to a file and `fdatasync`ing it, 200 times: the
/// price of one durable commit on this disk, the floor under every synchronous append.
fn fdatasync_probe() -> std::io::Result<f64> {
    let mut file = tempfile::NamedTempFile::new()?;
    let block = [0x5a_u8; 4096];
    let mut latencies = Vec::with_capacity(200);
    for _ in 0..200 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.as_file().sync_data()?;
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(&latencies))
}
