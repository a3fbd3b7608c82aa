//! The payment path: authorizations per second and latency from the terminal simulator's
//! request to its answer, on the platform as processes (`mpos_e2e::processes`):
//!
//! - **embedded**: the one `mposd` process on its defaults (SQLite, in-process bus, soft HSM);
//! - **distributed**: hsm-proxy, terminal-management, key-injection, attestation, routing and
//!   authorization each its own process on PostgreSQL (a schema each) and NATS.
//!
//! Set-up (not timed): the tenant provisioned through the services' APIs, as many PEDs as the
//! largest load level bound,
//! activated and keyed over mTLS, routing's rules sending Visa to acquirer A; two
//! `acquirer-sim` processes that approve everything at once (MACs checked with the clear zone
//! MAC key, so the platform's HSM does not also work for the acquirer).
//!
//! Timed, at each load level (a light one for the latency, a saturating one for the
//! throughput): that many PEDs in a closed loop, each on its own mTLS keep-alive connection; every
//! payment a chip purchase with an online PIN and an ARQC (DUKPT card data and PIN block, the
//! card's cryptogram built before the clock starts). Latency = `submit` of the prepared request
//! → the decoded answer. Throughput counts payments completed inside the measured window
//! after a warm-up.
//!
//! Beside each window, the CPU every program on the machine spent during it per payment
//! ([`crate::cpu`]): where the payment's cost lies, in a figure the machine's noise hardly moves.
//!
//! Floors, in the same run, between the repetitions: one durable commit (a single-row
//! autocommit `INSERT` of a 1 KiB payload, PostgreSQL or SQLite with the store's PRAGMAs),
//! and one request-reply round trip of a 1 KiB payload (NATS; or the in-process bus). The
//! path's unavoidable sequence is [`PATH_COMMITS`] commits and [`PATH_ROUND_TRIPS`] round trips
//! (ADR 24): authorization's point of no return, routing's decision with its request, the
//! request's answer, authorization's outcome; `DecryptData` (with the card token), `Authorize`
//! (routing decides in it), routing's `TranslatePinData`, and the MAC generated on the request
//! and verified on the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mpos_bus::{Message, RequestReply};
use mpos_e2e::processes::{Layout, SimKeys};
use mpos_e2e::{Backends, Platform};
use serde_json::json;
use sqlx::Connection as _;
use terminal_sim::card::{TestCard, test_card};
use terminal_sim::emv::{CardDecision, EmvTransaction};
use terminal_sim::payment::Payment;

use crate::cpu::{self, CpuSpent};
use crate::hsm::Echo;
use crate::report::{Report, Row, thousands};
use crate::stats::{median, min_max, percentile, rate};
use crate::{Urls, unique};

/// Goal (distributed): authorizations per second on 2 cores.
pub const RATE_GOAL: f64 = 1_000.0;
/// Goal (distributed): p99 latency, ms.
pub const P99_GOAL_MS: f64 = 15.0;
/// Goal (distributed): p50 at most this multiple of the floor's sum.
pub const FLOOR_RATIO_GOAL: f64 = 1.5;
/// Durable commits on the path, one after another.
pub const PATH_COMMITS: u32 = 4;
/// Request-reply round trips on the path, one after another.
pub const PATH_ROUND_TRIPS: u32 = 5;
/// Bytes of a floor commit's payload and of a floor round trip's payload.
const FLOOR_PAYLOAD: usize = 1_024;

/// Sizes.
#[derive(Clone, Debug)]
pub struct PaymentsBenchConfig {
    /// Load levels: PEDs paying in a closed loop (payments in flight), one run each.
    pub levels: Vec<usize>,
    /// Offered rates, payments per second, each run in an open loop: a payment is due every
    /// 1/rate seconds whatever the answers before it, and its latency runs from when it was
    /// due (time queued for a free PED included), so the p99 is the one the rate gets.
    pub rates: Vec<u32>,
    /// PEDs (connections) serving the open loop: at most this many payments in flight.
    pub open_peds: usize,
    /// Warm-up before each measured window.
    pub warmup: Duration,
    /// Measured window per repetition.
    pub duration: Duration,
    /// Repetitions per deployment.
    pub repetitions: usize,
    /// Sequential samples of each floor per repetition.
    pub floor_samples: usize,
    /// The deployments to measure.
    pub layouts: Vec<Layout>,
}

impl PaymentsBenchConfig {
    /// The figures for docs/benchmarks.md.
    pub fn full() -> Self {
        Self {
            levels: vec![1, 4, 32],
            // The goal's rate.
            rates: vec![1_000],
            open_peds: 32,
            warmup: Duration::from_secs(5),
            duration: Duration::from_secs(20),
            repetitions: 3,
            floor_samples: 1_000,
            layouts: vec![Layout::Mposd, Layout::PerService],
        }
    }

    /// A smoke run.
    pub fn quick() -> Self {
        Self {
            levels: vec![1, 4],
            rates: Vec::new(),
            open_peds: 32,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(3),
            repetitions: 1,
            floor_samples: 200,
            layouts: vec![Layout::Mposd, Layout::PerService],
        }
    }
}

/// One measured window.
#[derive(Clone, Debug)]
pub struct LoadRun {
    /// Payments completed in the window per second.
    pub rate: f64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    /// p99, µs.
    pub p99_us: f64,
    /// p99.9, µs.
    pub p999_us: f64,
    /// Payments answered in the window.
    pub completed: usize,
    /// Of which approved.
    pub approved: usize,
    /// Payments that failed (an error, or not approved).
    pub failed: usize,
    /// The CPU the machine's programs spent during the window.
    pub cpu: CpuSpent,
}

impl LoadRun {
    /// The window in one line: rate (with `after_rate`), p50, p99, failures, CPU per payment.
    fn summary(&self, after_rate: &str) -> String {
        format!(
            "{:.0}/s{after_rate}, p50 {:.2} ms, p99 {:.2} ms, {} failed; CPU ms per payment: {}",
            self.rate,
            self.p50_us / 1_000.0,
            self.p99_us / 1_000.0,
            self.failed,
            cpu::per_unit(&self.cpu, self.completed, 8)
        )
    }
}

/// One floor's samples, µs.
#[derive(Clone, Debug)]
pub struct FloorRun {
    /// Median durable commit.
    pub commit_us: f64,
    /// Median round trip.
    pub round_trip_us: f64,
}

impl FloorRun {
    /// The path's unavoidable commits and round trips, µs.
    pub fn path_us(&self) -> f64 {
        f64::from(PATH_COMMITS) * self.commit_us + f64::from(PATH_ROUND_TRIPS) * self.round_trip_us
    }
}

/// A deployment's results.
#[derive(Clone, Debug)]
pub struct PaymentsSeries {
    /// Which deployment.
    pub layout: Layout,
    /// The measured windows: (PEDs in flight, the run).
    pub runs: Vec<(usize, LoadRun)>,
    /// The open-loop windows: (offered rate, the run, payments due in the window that no PED
    /// took up before the run gave up on them).
    pub open: Vec<(u32, LoadRun, usize)>,
    /// The floors, one per repetition.
    pub floors: Vec<FloorRun>,
    /// Set-up time (start and provisioning), s.
    pub setup_s: f64,
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Mposd => "embedded (mposd: SQLite, in-process bus)",
        Layout::PerService => "distributed (6 processes, PostgreSQL, NATS)",
    }
}

/// Runs every configured deployment.
pub async fn run(config: &PaymentsBenchConfig, urls: &Urls) -> anyhow::Result<Vec<PaymentsSeries>> {
    let mut series = Vec::new();
    for layout in &config.layouts {
        series.push(run_layout(config, *layout, urls).await?);
    }
    Ok(series)
}

/// Every card approved at once; declines of nothing.
fn approve_all() -> String {
    json!({"rules": [{"name": "everything", "when": {}, "then": "approve"}]}).to_string()
}

async fn run_layout(
    config: &PaymentsBenchConfig,
    layout: Layout,
    urls: &Urls,
) -> anyhow::Result<PaymentsSeries> {
    eprintln!("payments: starting {} …", layout_name(layout));
    let started = Instant::now();
    let dir = tempfile::tempdir().context("temp dir")?;
    let backends = match layout {
        Layout::PerService => Some(Backends::postgres_and_nats_at(
            &urls.postgres,
            &urls.nats,
            None,
        )),
        Layout::Mposd => None,
    };
    let platform =
        Platform::start_processes_with(layout, backends, &approve_all(), SimKeys::Clear).await;
    platform.provision().await;
    let most = config
        .levels
        .iter()
        .copied()
        .chain((!config.rates.is_empty()).then_some(config.open_peds))
        .max()
        .unwrap_or(1);
    let peds = platform.add_peds(most, 16).await;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("payments: {} PEDs ready in {setup_s:.1} s", peds.len());
    let card = test_card("visa").context("the visa test card")?;
    let mut peds: Vec<Ped> = peds
        .into_iter()
        .enumerate()
        .map(|(index, terminal)| Ped {
            terminal,
            index,
            sequence: 0,
        })
        .collect();

    let mut floor = Floor::start(layout, urls, dir.path()).await?;
    let mut runs = Vec::new();
    let mut open = Vec::new();
    let mut floors = Vec::new();
    for repetition in 0..config.repetitions {
        eprintln!(
            "payments: {} repetition {} of {} …",
            layout_name(layout),
            repetition + 1,
            config.repetitions
        );
        for level in &config.levels {
            let rest = peds.split_off((*level).min(peds.len()));
            let (run, mut returned) = load(config, peds, &card, repetition).await;
            eprintln!("payments: {level} in flight: {}", run.summary(""));
            returned.extend(rest);
            peds = returned;
            runs.push((*level, run));
        }
        for rate in &config.rates {
            let rest = peds.split_off(config.open_peds.min(peds.len()));
            let (run, unserved, mut returned) =
                open_loop(config, peds, &card, repetition, *rate).await;
            eprintln!(
                "payments: offered {rate}/s: {}",
                run.summary(&format!(" answered, {unserved} not taken up"))
            );
            returned.extend(rest);
            peds = returned;
            open.push((*rate, run, unserved));
        }
        floors.push(floor.measure(config.floor_samples).await?);
    }
    floor.stop().await;
    platform.stop().await;
    Ok(PaymentsSeries {
        layout,
        runs,
        open,
        floors,
        setup_s,
    })
}

struct Ped {
    terminal: terminal_sim::terminal::Terminal,
    index: usize,
    sequence: u32,
}

impl Ped {
    /// The next chip payment with PIN and ARQC (built off the clock).
    fn next(
        &mut self,
        card: &TestCard,
        repetition: usize,
    ) -> anyhow::Result<mpos_proto::authorization::PaymentRequest> {
        self.sequence += 1;
        let amount = 1_000;
        let atc = u16::try_from(self.sequence % 60_000).unwrap_or(1);
        let emv = card
            .emv_card(atc)
            .generate_ac(
                &EmvTransaction::purchase_today(amount, 978, 276),
                CardDecision::Arqc,
            )
            .context("generate ac")?;
        let key = format!("bench-{repetition}-{}-{}", self.index, self.sequence);
        let mut payment = Payment::purchase(&key, amount, "EUR", card.track2.clone());
        payment.pin = Some(card.pin.clone());
        payment.emv = Some(emv);
        Ok(self.terminal.prepare_payment(&payment)?)
    }
}

async fn load(
    config: &PaymentsBenchConfig,
    peds: Vec<Ped>,
    card: &TestCard,
    repetition: usize,
) -> (LoadRun, Vec<Ped>) {
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let measure_until = measure_from + config.duration;
    let failed = Arc::new(AtomicUsize::new(0));
    let cpu_window = cpu_window(measure_from, measure_until);
    let mut tasks = Vec::new();
    for mut ped in peds {
        let card = card.clone();
        let failed = failed.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                if Instant::now() >= measure_until {
                    break;
                }
                let request = match ped.next(&card, repetition) {
                    Ok(request) => request,
                    Err(error) => {
                        eprintln!("payments: cannot build a payment: {error:#}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let sent = Instant::now();
                let answer = ped.terminal.submit(&request).await;
                let done = Instant::now();
                let counted = sent >= measure_from && done <= measure_until;
                tally.record(answer, counted, done.duration_since(sent), &failed);
            }
            (ped, tally)
        }));
    }
    gather(tasks, &failed, cpu_window, config.duration).await
}

/// The CPU the machine's programs spend between `from` and `until`, measured by a task.
fn cpu_window(from: Instant, until: Instant) -> tokio::task::JoinHandle<CpuSpent> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let before = cpu::snapshot();
        tokio::time::sleep_until(until.into()).await;
        cpu::spent(&before, &cpu::snapshot())
    })
}

/// What one PED's task saw in a window.
#[derive(Default)]
struct Tally {
    /// Latencies of the approved payments counted, µs.
    latencies: Vec<u64>,
    approved: usize,
}

impl Tally {
    /// Records an answer that took `took`; `counted` when inside the measured window.
    fn record(
        &mut self,
        answer: Result<mpos_proto::authorization::PaymentResponse, terminal_sim::SimError>,
        counted: bool,
        took: Duration,
        failed: &AtomicUsize,
    ) {
        match answer {
            Ok(response) if response.approved => {
                if counted {
                    self.approved += 1;
                    self.latencies
                        .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                }
            }
            Ok(response) => {
                if counted {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                eprintln!(
                    "payments: not approved: {:?} {}",
                    response.decline_reason(),
                    response.message
                );
            }
            Err(error) => {
                if counted {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                eprintln!("payments: failed: {error}");
            }
        }
    }
}

/// The window's run from its PEDs' tasks: the PEDs back, the latencies together.
async fn gather(
    tasks: Vec<tokio::task::JoinHandle<(Ped, Tally)>>,
    failed: &AtomicUsize,
    cpu_window: tokio::task::JoinHandle<CpuSpent>,
    duration: Duration,
) -> (LoadRun, Vec<Ped>) {
    let mut peds = Vec::new();
    let mut latencies = Vec::new();
    let mut approved = 0;
    for task in tasks {
        if let Ok((ped, mut tally)) = task.await {
            peds.push(ped);
            latencies.append(&mut tally.latencies);
            approved += tally.approved;
        }
    }
    latencies.sort_unstable();
    let failed = failed.load(Ordering::Relaxed);
    let cpu = cpu_window.await.unwrap_or_default();
    #[allow(clippy::cast_precision_loss)]
    let at = |p: f64| percentile(&latencies, p) as f64;
    (
        LoadRun {
            rate: rate(latencies.len(), duration),
            p50_us: at(50.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            completed: latencies.len() + failed,
            approved,
            failed,
            cpu,
        },
        peds,
    )
}

/// One open-loop window at `rate` payments per second over `peds`: a dispatcher makes a
/// payment due every 1/rate s; the first free PED takes it up with a request built while it
/// waited. Latency runs from when the payment was due. Payments due in the window that no PED
/// took up within 5 s of its end are returned as not taken up.
async fn open_loop(
    config: &PaymentsBenchConfig,
    peds: Vec<Ped>,
    card: &TestCard,
    repetition: usize,
    rate: u32,
) -> (LoadRun, usize, Vec<Ped>) {
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let measure_until = measure_from + config.duration;
    let give_up = measure_until + Duration::from_secs(5);
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let in_window = move |due: Instant| due >= measure_from && due < measure_until;
    let failed = Arc::new(AtomicUsize::new(0));
    let unserved = Arc::new(AtomicUsize::new(0));
    let cpu_window = cpu_window(measure_from, measure_until);
    let (due_sender, due) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let due = Arc::new(tokio::sync::Mutex::new(due));
    let dispatcher = tokio::spawn(async move {
        let mut count: u32 = 0;
        loop {
            let at = start + every * count;
            if at >= measure_until {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            if due_sender.send(at).is_err() {
                break;
            }
            count = count.saturating_add(1);
        }
    });
    let mut tasks = Vec::new();
    for mut ped in peds {
        let (card, failed, unserved, due) =
            (card.clone(), failed.clone(), unserved.clone(), due.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let request = match ped.next(&card, repetition) {
                    Ok(request) => request,
                    Err(error) => {
                        eprintln!("payments: cannot build a payment: {error:#}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let next = due.lock().await.recv().await;
                let Some(due_at) = next else { break };
                if Instant::now() >= give_up {
                    if in_window(due_at) {
                        unserved.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let answer = ped.terminal.submit(&request).await;
                let done = Instant::now();
                tally.record(
                    answer,
                    in_window(due_at),
                    done.duration_since(due_at),
                    &failed,
                );
            }
            (ped, tally)
        }));
    }
    let _ = dispatcher.await;
    let (run, peds) = gather(tasks, &failed, cpu_window, config.duration).await;
    (run, unserved.load(Ordering::Relaxed), peds)
}

/// The floors' connections.
enum Floor {
    Distributed {
        postgres: sqlx::PgConnection,
        table: String,
        schema: String,
        nats: async_nats::Client,
        subject: String,
        responder: tokio::task::JoinHandle<()>,
    },
    Embedded {
        sqlite: sqlx::SqliteConnection,
        bus: Arc<dyn RequestReply>,
        serving: mpos_bus::ServeHandle,
    },
}

const ECHO_SUBJECT: &str = "mpos.bench.v1.PaymentsFloorEcho";

impl Floor {
    async fn start(layout: Layout, urls: &Urls, dir: &std::path::Path) -> anyhow::Result<Self> {
        match layout {
            Layout::PerService => {
                let mut postgres = sqlx::PgConnection::connect(&urls.postgres)
                    .await
                    .context("connecting to PostgreSQL")?;
                let schema = unique("bench_payments");
                let table = format!("{schema}.floor");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut postgres)
                    .await?;
                sqlx::query(&format!(
                    "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)"
                ))
                .execute(&mut postgres)
                .await?;
                let nats = async_nats::connect(&urls.nats)
                    .await
                    .context("connecting to NATS")?;
                let subject = format!("{}.{ECHO_SUBJECT}", unique("bench"));
                let mut subscription = nats.subscribe(subject.clone()).await?;
                let replier = async_nats::connect(&urls.nats).await?;
                // The responder is on its own connection, as a service is.
                let responder = tokio::spawn(async move {
                    use futures::StreamExt as _;
                    while let Some(message) = subscription.next().await {
                        if let Some(reply) = message.reply {
                            let _ = replier.publish(reply, message.payload).await;
                        }
                    }
                });
                Ok(Self::Distributed {
                    postgres,
                    table,
                    schema,
                    nats,
                    subject,
                    responder,
                })
            }
            Layout::Mposd => {
                let path = dir.join("floor.db");
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
                let mut sqlite = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .context("opening SQLite")?;
                sqlx::query(
                    "CREATE TABLE floor (id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL)",
                )
                .execute(&mut sqlite)
                .await?;
                let connection = mpos_bus::connect(&format!("memory://{}", unique("floor")))
                    .await
                    .context("the in-process bus")?;
                let bus = connection
                    .requests
                    .clone()
                    .context("the in-process bus has request-reply")?;
                let serving = bus
                    .serve(ECHO_SUBJECT, "bench", Arc::new(Echo))
                    .await
                    .context("serving the echo")?;
                Ok(Self::Embedded {
                    sqlite,
                    bus,
                    serving,
                })
            }
        }
    }

    async fn measure(&mut self, samples: usize) -> anyhow::Result<FloorRun> {
        let payload = vec![0x5A_u8; FLOOR_PAYLOAD];
        let mut commits = Vec::with_capacity(samples);
        let mut round_trips = Vec::with_capacity(samples);
        match self {
            Self::Distributed {
                postgres,
                table,
                nats,
                subject,
                ..
            } => {
                let insert = format!("INSERT INTO {table} (payload) VALUES ($1)");
                for _ in 0..samples {
                    let started = Instant::now();
                    sqlx::query(&insert)
                        .bind(&payload)
                        .execute(&mut *postgres)
                        .await?;
                    commits.push(started.elapsed().as_secs_f64() * 1e6);
                }
                for _ in 0..samples {
                    let started = Instant::now();
                    nats.request(subject.clone(), payload.clone().into())
                        .await
                        .context("nats echo")?;
                    round_trips.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
            Self::Embedded { sqlite, bus, .. } => {
                for _ in 0..samples {
                    let started = Instant::now();
                    sqlx::query("INSERT INTO floor (payload) VALUES ($1)")
                        .bind(&payload)
                        .execute(&mut *sqlite)
                        .await?;
                    commits.push(started.elapsed().as_secs_f64() * 1e6);
                }
                for _ in 0..samples {
                    let started = Instant::now();
                    bus.request(
                        ECHO_SUBJECT,
                        Message::new(payload.clone()),
                        Duration::from_secs(5),
                    )
                    .await
                    .context("in-process bus echo")?;
                    round_trips.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        Ok(FloorRun {
            commit_us: median(&commits),
            round_trip_us: median(&round_trips),
        })
    }

    async fn stop(self) {
        match self {
            Self::Distributed {
                mut postgres,
                schema,
                responder,
                ..
            } => {
                responder.abort();
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut postgres)
                    .await;
            }
            Self::Embedded { serving, .. } => serving.stop().await,
        }
    }
}

/// Adds the rows and notes.
pub fn add_to(report: &mut Report, config: &PaymentsBenchConfig, series: &[PaymentsSeries]) {
    report.notes.push(format!(
        "payments: load levels {:?} PEDs in a closed loop (terminal-sim over mTLS, one keep-alive connection each), then offered rates {:?}/s in an open loop over {} PEDs (latency from when each payment was due); every payment a chip purchase with online PIN and ARQC; {:.0} s warm-up then {:.0} s measured per level, {} repetitions per deployment, each followed by the floors ({} sequential samples each: a single-row autocommit INSERT of {FLOOR_PAYLOAD} B, a request-reply echo of {FLOOR_PAYLOAD} B); path = {PATH_COMMITS} commits + {PATH_ROUND_TRIPS} round trips; acquirer-sim processes approve at once",
        config.levels,
        config.rates,
        config.open_peds,
        config.warmup.as_secs_f64(),
        config.duration.as_secs_f64(),
        config.repetitions,
        config.floor_samples
    ));
    for entry in series {
        let name = layout_name(entry.layout);
        let distributed = entry.layout == Layout::PerService;
        let commit = median(&entry.floors.iter().map(|f| f.commit_us).collect::<Vec<_>>()) / 1e3;
        let round_trip = median(
            &entry
                .floors
                .iter()
                .map(|f| f.round_trip_us)
                .collect::<Vec<_>>(),
        ) / 1e3;
        let path = median(
            &entry
                .floors
                .iter()
                .map(FloorRun::path_us)
                .collect::<Vec<_>>(),
        ) / 1e3;
        let (commit_name, trip_name) = if distributed {
            ("PostgreSQL commit", "NATS request-reply")
        } else {
            ("SQLite commit", "in-process bus request-reply")
        };
        for level in &config.levels {
            let runs: Vec<&LoadRun> = entry
                .runs
                .iter()
                .filter(|(at, _)| at == level)
                .map(|(_, run)| run)
                .collect();
            let rates: Vec<f64> = runs.iter().map(|run| run.rate).collect();
            let ms = |pick: fn(&LoadRun) -> f64| {
                median(
                    &runs
                        .iter()
                        .map(|run| pick(run) / 1_000.0)
                        .collect::<Vec<_>>(),
                )
            };
            let (p50, p99, p999) = (ms(|r| r.p50_us), ms(|r| r.p99_us), ms(|r| r.p999_us));
            let rate = median(&rates);
            let (low, high) = min_max(&rates);
            let failed: usize = runs.iter().map(|run| run.failed).sum();
            let approved: usize = runs.iter().map(|run| run.approved).sum();
            let ratio = p50 / path;
            let verdict = |met: bool| {
                let base = if !distributed {
                    "n/a (goal is distributed)".to_owned()
                } else if met {
                    "met".to_owned()
                } else {
                    "MISSED".to_owned()
                };
                if failed > 0 {
                    format!("{base} ({failed} failed)")
                } else {
                    base
                }
            };
            report.rows.push(Row {
                benchmark: "payments".into(),
                case: format!("{name}, {level} in flight, throughput"),
                figure: format!(
                    "{} auth/s ({}–{})",
                    thousands(rate),
                    thousands(low),
                    thousands(high)
                ),
                floor: format!("{commit_name} {commit:.2} ms, {trip_name} {round_trip:.3} ms"),
                ratio: "—".into(),
                goal: format!(
                    "≥ {} auth/s with p99 < {P99_GOAL_MS:.0} ms",
                    thousands(RATE_GOAL)
                ),
                verdict: verdict(rate >= RATE_GOAL && p99 < P99_GOAL_MS),
            });
            report.rows.push(Row {
                benchmark: "payments".into(),
                case: format!("{name}, {level} in flight, latency p50 / p99 / p99.9"),
                figure: format!("{p50:.2} / {p99:.2} / {p999:.2} ms"),
                floor: format!(
                    "path floor {path:.2} ms ({PATH_COMMITS} × {commit:.2} + {PATH_ROUND_TRIPS} × {round_trip:.3})"
                ),
                ratio: format!("{ratio:.2}× (p50)"),
                goal: format!("p99 < {P99_GOAL_MS:.0} ms, p50 ≤ {FLOOR_RATIO_GOAL}× floor"),
                verdict: verdict(p99 < P99_GOAL_MS && ratio <= FLOOR_RATIO_GOAL),
            });
            report.notes.push(format!(
                "payments {name}, {level} in flight: {approved} approved in the measured windows, {failed} failed"
            ));
            if let Some(run) = runs
                .iter()
                .min_by(|a, b| (a.rate - rate).abs().total_cmp(&(b.rate - rate).abs()))
            {
                report.notes.push(format!(
                    "payments {name}, {level} in flight, CPU ms per payment in the median window (per program, then the whole machine): {}",
                    cpu::per_unit(&run.cpu, run.completed, 8)
                ));
            }
        }
        for rate in &config.rates {
            let runs: Vec<(&LoadRun, usize)> = entry
                .open
                .iter()
                .filter(|(at, _, _)| at == rate)
                .map(|(_, run, unserved)| (run, *unserved))
                .collect();
            let answered: Vec<f64> = runs.iter().map(|(run, _)| run.rate).collect();
            let ms = |pick: fn(&LoadRun) -> f64| {
                median(
                    &runs
                        .iter()
                        .map(|(run, _)| pick(run) / 1_000.0)
                        .collect::<Vec<_>>(),
                )
            };
            let (p50, p99, p999) = (ms(|r| r.p50_us), ms(|r| r.p99_us), ms(|r| r.p999_us));
            let median_rate = median(&answered);
            let (low, high) = min_max(&answered);
            let failed: usize = runs.iter().map(|(run, _)| run.failed).sum();
            let unserved: usize = runs.iter().map(|(_, unserved)| unserved).sum();
            // Kept up: answered at least 99 % of what was offered, nothing left waiting.
            let kept_up = median_rate >= 0.99 * f64::from(*rate) && unserved == 0;
            let verdict = if !distributed || f64::from(*rate) < RATE_GOAL {
                "n/a".to_owned()
            } else if kept_up && p99 < P99_GOAL_MS && failed == 0 {
                "met".to_owned()
            } else {
                "MISSED".to_owned()
            };
            report.rows.push(Row {
                benchmark: "payments".into(),
                case: format!(
                    "{name}, open loop offered {}/s ({} PEDs): answered, latency p50 / p99 / p99.9 from due",
                    thousands(f64::from(*rate)),
                    config.open_peds
                ),
                figure: format!(
                    "{} auth/s ({}–{}); {p50:.2} / {p99:.2} / {p999:.2} ms",
                    thousands(median_rate),
                    thousands(low),
                    thousands(high)
                ),
                floor: format!("path floor {path:.2} ms"),
                ratio: format!("{:.2}× (p50)", p50 / path),
                goal: format!(
                    "≥ {} auth/s answered with p99 < {P99_GOAL_MS:.0} ms",
                    thousands(RATE_GOAL)
                ),
                verdict,
            });
            report.notes.push(format!(
                "payments {name}, open loop offered {rate}/s: {} approved in the measured windows, {failed} failed, {unserved} due but not taken up",
                runs.iter().map(|(run, _)| run.approved).sum::<usize>()
            ));
            if let Some((run, _)) = runs.iter().min_by(|a, b| {
                (a.0.rate - median_rate)
                    .abs()
                    .total_cmp(&(b.0.rate - median_rate).abs())
            }) {
                report.notes.push(format!(
                    "payments {name}, open loop offered {rate}/s, CPU ms per payment in the median window: {}",
                    cpu::per_unit(&run.cpu, run.completed, 8)
                ));
            }
        }
        report.notes.push(format!(
            "payments {name}: set-up (start, provisioning, PEDs keyed) {:.1} s",
            entry.setup_s
        ));
    }
}
