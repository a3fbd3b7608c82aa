//! Fresh stores on PostgreSQL (a `bench_<uuid>` schema) and SQLite (a temp file), with a raw
//! connection to the same database for the floors, and their cleanup.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use mpos_es::EventStore;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

/// The PRAGMAs `EventStore` sets on every SQLite connection (crates/mpos-es/src/store.rs).
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

/// The table the raw-INSERT floor writes: the same shape as `es_events`.
pub(crate) const RAW_TABLE: &str = "bench_raw_events";

/// Which database holds the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a temp file (the embedded default).
    Sqlite,
    /// PostgreSQL, a fresh schema.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { base: String, schema: String },
}

/// A store on a fresh database plus a raw pool on the same database and settings.
pub(crate) struct Opened {
    pub(crate) store: EventStore,
    /// One connection, same driver (sqlx `Any`), same database, same settings as the store.
    pub(crate) raw: AnyPool,
    cleanup: Cleanup,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

pub(crate) async fn open(
    backend: Backend,
    postgres_base: &str,
    service: &str,
) -> anyhow::Result<Opened> {
    sqlx::any::install_default_drivers();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::Builder::new()
                .prefix("mpos-bench-")
                .tempdir()
                .context("temp dir")?;
            let path = dir.path().join("events.db");
            let url = format!("sqlite://{}", path.display());
            let store = EventStore::connect(&url, service)
                .await
                .with_context(|| format!("opening {url}"))?;
            let raw = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection.execute(SQLITE_PRAGMAS).await?;
                        Ok(())
                    })
                })
                .connect(&format!("{url}?mode=rw"))
                .await
                .context("raw sqlite pool")?;
            Ok(Opened {
                store,
                raw,
                cleanup: Cleanup::Sqlite(dir),
            })
        }
        Backend::Postgres => {
            let schema = crate::unique("bench");
            let url = crate::with_param(postgres_base, "schema", &schema);
            let store = EventStore::connect(&url, service).await.with_context(|| {
                format!("opening PostgreSQL at {postgres_base} (is it running?)")
            })?;
            let raw = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&crate::with_param(
                    postgres_base,
                    "options",
                    &format!("-c%20search_path%3D{schema}"),
                ))
                .await
                .context("raw postgres pool")?;
            Ok(Opened {
                store,
                raw,
                cleanup: Cleanup::Postgres {
                    base: postgres_base.to_owned(),
                    schema,
                },
            })
        }
    }
}

impl Opened {
    /// PostgreSQL: a URL of the store's database and schema for a native connection.
    pub(crate) fn postgres_url(&self) -> Option<String> {
        match &self.cleanup {
            Cleanup::Postgres { base, schema } => Some(crate::with_param(
                base,
                "options",
                &format!("-c%20search_path%3D{schema}"),
            )),
            Cleanup::Sqlite(_) => None,
        }
    }

    /// Creates [`RAW_TABLE`] with the columns, keys and indexes of `es_events`.
    pub(crate) async fn create_raw_table(&self) -> anyhow::Result<()> {
        match &self.cleanup {
            Cleanup::Postgres { .. } => {
                self.raw
                    .execute(
                        format!("CREATE TABLE {RAW_TABLE} (LIKE es_events INCLUDING ALL)").as_str(),
                    )
                    .await?;
            }
            Cleanup::Sqlite(_) => {
                let rows = sqlx::query(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'es_events' AND sql IS NOT NULL \
                     ORDER BY type DESC",
                )
                .fetch_all(&self.raw)
                .await?;
                for row in rows {
                    let sql: String = row.try_get(0)?;
                    self.raw
                        .execute(sql.replace("es_events", RAW_TABLE).as_str())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Closes the pools and drops the schema or deletes the file.
    pub(crate) async fn close(self) -> anyhow::Result<()> {
        self.store.close().await;
        self.raw.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => dir.close().context("deleting the temp dir")?,
            Cleanup::Postgres { base, schema } => {
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(&base)
                    .await?;
                pool.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                    .await?;
                pool.close().await;
            }
        }
        Ok(())
    }
}
