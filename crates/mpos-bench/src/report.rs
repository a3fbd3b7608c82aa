//! The results as an aligned text table and as a markdown block.

use std::fmt::Write as _;

use crate::append::AppendResult;
use crate::hsm::{HsmResult, LoadRun};
use crate::machine::MachineInfo;
use crate::outbox::{OutboxResult, summarize};
use crate::replay::{KafkaReplayResult, ReplayResult};
use crate::stats::{median, min_max};

/// Append: store/floor ratio goal.
pub const APPEND_RATIO_GOAL: f64 = 0.8;
/// Replay: events/s goal.
pub const REPLAY_RATE_GOAL: f64 = 200_000.0;
/// Audit verify: events/s goal (issue 9).
pub const VERIFY_RATE_GOAL: f64 = 500_000.0;
/// Outbox: p99 lag goal, ms.
pub const OUTBOX_P99_GOAL_MS: f64 = 50.0;
/// hsm: `TranslatePinData` per second goal.
pub const HSM_RATE_GOAL: f64 = 20_000.0;
/// hsm: p99 latency goal, ms.
pub const HSM_P99_GOAL_MS: f64 = 2.0;
/// hsm: hsm / echo throughput ratio goal.
pub const HSM_RATIO_GOAL: f64 = 0.7;

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// append, replay, outbox.
    pub benchmark: String,
    /// Backend, sizes.
    pub case: String,
    /// The measured figure (median, range).
    pub figure: String,
    /// The floor measured in the same run.
    pub floor: String,
    /// figure / floor.
    pub ratio: String,
    /// The goal.
    pub goal: String,
    /// met, MISSED, or n/a.
    pub verdict: String,
}

/// Everything one run printed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The machine, if collected.
    pub machine: Option<MachineInfo>,
    /// How the run was started.
    pub command: String,
    /// The table.
    pub rows: Vec<Row>,
    /// Remarks below the table (achieved rates, counts, failures).
    pub notes: Vec<String>,
}

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    #[allow(clippy::cast_possible_truncation)]
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0 {
        out.insert(0, '-');
    }
    out
}

fn rate_with_range(values: &[f64]) -> String {
    let (low, high) = min_max(values);
    format!(
        "{} ev/s ({}–{})",
        thousands(median(values)),
        thousands(low),
        thousands(high)
    )
}

fn range(values: &[f64], unit: &str) -> String {
    let (low, high) = min_max(values);
    format!(
        "{} {unit} ({}–{})",
        thousands(median(values)),
        thousands(low),
        thousands(high)
    )
}

fn verdict(met: bool) -> String {
    if met { "met" } else { "MISSED" }.to_owned()
}

impl Report {
    /// Adds the append rows.
    pub fn add_append(&mut self, results: &[AppendResult]) {
        for result in results {
            let ratio = result.ratio();
            self.rows.push(Row {
                benchmark: "append".into(),
                case: format!(
                    "{}, batch {} ({} ev × {} reps)",
                    result.backend,
                    result.batch,
                    thousands(result.events as f64),
                    result.store.len()
                ),
                figure: format!("store {}", rate_with_range(&result.store)),
                floor: format!("raw INSERT {}", rate_with_range(&result.raw)),
                ratio: format!("{ratio:.2}"),
                goal: format!("ratio ≥ {APPEND_RATIO_GOAL:.1}"),
                verdict: verdict(ratio >= APPEND_RATIO_GOAL),
            });
        }
    }

    /// Adds the replay rows.
    pub fn add_replay(&mut self, results: &[ReplayResult]) {
        for result in results {
            let rebuild = median(&result.rebuild);
            self.rows.push(Row {
                benchmark: "replay".into(),
                case: format!(
                    "{}, {} ev / {} aggregates ({} reps)",
                    result.backend,
                    thousands(result.events as f64),
                    thousands(result.aggregates as f64),
                    result.rebuild.len()
                ),
                figure: format!("rebuild {}", rate_with_range(&result.rebuild)),
                floor: format!(
                    "read_after {}; raw SELECT {} ev/s",
                    rate_with_range(&result.read_after),
                    thousands(median(&result.raw_select))
                ),
                ratio: format!("{:.2}", result.ratio()),
                goal: format!("≥ {} ev/s", thousands(REPLAY_RATE_GOAL)),
                verdict: verdict(rebuild >= REPLAY_RATE_GOAL),
            });
            let read = median(&result.read_after);
            let fresh = median(&result.fresh_copy);
            self.rows.push(Row {
                benchmark: "replay".into(),
                case: format!(
                    "{}, fresh copy in memory (mposctl replay --read-model)",
                    result.backend
                ),
                figure: rate_with_range(&result.fresh_copy),
                floor: format!("read_after {}", rate_with_range(&result.read_after)),
                ratio: format!("{:.2}", fresh / read),
                goal: format!("≥ {} ev/s", thousands(REPLAY_RATE_GOAL)),
                verdict: verdict(fresh >= REPLAY_RATE_GOAL),
            });
            let verified = median(&result.verify);
            self.rows.push(Row {
                benchmark: "audit verify".into(),
                case: format!(
                    "{}, {} ev, the whole log (mposctl audit verify)",
                    result.backend,
                    thousands(result.events as f64)
                ),
                figure: rate_with_range(&result.verify),
                floor: if result.raw_copy.is_empty() {
                    format!(
                        "its read (EventRange) {}",
                        rate_with_range(&result.read_range)
                    )
                } else {
                    format!(
                        "its read (EventRange, COPY) {}; raw COPY, not decoded, {} ev/s",
                        rate_with_range(&result.read_range),
                        thousands(median(&result.raw_copy))
                    )
                },
                ratio: format!(
                    "{:.2}",
                    crate::stats::median_ratio(&result.verify, &result.read_range)
                ),
                goal: format!("≥ {} ev/s", thousands(VERIFY_RATE_GOAL)),
                verdict: verdict(verified >= VERIFY_RATE_GOAL),
            });
        }
    }

    /// Adds the row of the replay from Kafka into a read model.
    pub fn add_kafka_replay(&mut self, result: &KafkaReplayResult) {
        self.rows.push(Row {
            benchmark: "replay".into(),
            case: format!(
                "Kafka, {} ev on {} partitions into a fresh copy (mposctl replay --read-model --bus; first delivery after {:.0} ms)",
                thousands(result.events as f64),
                result.partitions,
                median(&result.first_delivery_ms)
            ),
            figure: rate_with_range(&result.fresh_copy),
            floor: format!("raw consume {}", rate_with_range(&result.raw_consume)),
            ratio: format!("{:.2}", result.ratio()),
            goal: "(none set)".into(),
            verdict: "—".into(),
        });
    }

    /// Adds the outbox rows.
    pub fn add_outbox(&mut self, results: &[OutboxResult]) {
        for result in results {
            let floor = summarize(&result.floor);
            for (backend, batch, runs) in &result.store {
                let store = summarize(runs);
                let complete = store.received == store.sent;
                for (label, figure, floor_figure, goal) in [
                    ("p50", store.p50_ms, floor.p50_ms, None),
                    ("p99", store.p99_ms, floor.p99_ms, Some(OUTBOX_P99_GOAL_MS)),
                ] {
                    self.rows.push(Row {
                        benchmark: "outbox".into(),
                        case: format!(
                            "{} ← {} store, {batch}/append, {label} ({} reps)",
                            result.bus,
                            backend,
                            runs.len()
                        ),
                        figure: format!("{figure:.1} ms"),
                        floor: format!("bare publish {floor_figure:.1} ms"),
                        ratio: format!("{:.1}×", figure / floor_figure),
                        goal: goal.map_or_else(|| "—".to_owned(), |goal| format!("< {goal:.0} ms")),
                        verdict: goal.map_or_else(
                            || "—".to_owned(),
                            |goal| verdict(figure < goal && complete),
                        ),
                    });
                }
                self.notes.push(format!(
                    "outbox {} ← {}, {batch}/append: writer achieved {} ev/s (median; paced at 2,000), {}/{} events received, max lag {:.1} ms, relay published in {} calls ({:.1} events per pass; checkpoint stored at most every 250 ms); floor: {} ev/s, {}/{} received, max {:.1} ms",
                    result.bus,
                    backend,
                    thousands(store.write_rate),
                    store.received,
                    store.sent,
                    store.max_ms,
                    store.publishes,
                    store.sent as f64 / store.publishes.max(1) as f64,
                    thousands(floor.write_rate),
                    floor.received,
                    floor.sent,
                    floor.max_ms
                ));
            }
        }
    }

    /// Adds the hsm rows.
    pub fn add_hsm(&mut self, result: &HsmResult) {
        let config = &result.config;
        let rates = |runs: &[LoadRun]| runs.iter().map(|run| run.rate).collect::<Vec<_>>();
        let ms = |runs: &[LoadRun], pick: fn(&LoadRun) -> f64| {
            median(
                &runs
                    .iter()
                    .map(|run| pick(run) / 1_000.0)
                    .collect::<Vec<_>>(),
            )
        };
        let (hsm_rates, echo_rates) = (rates(&result.hsm), rates(&result.echo));
        let hsm_rate = median(&hsm_rates);
        let ratio = result.ratio();
        let failures = result.failures();
        let clean = failures == 0;
        let case = format!(
            "TranslatePinData TDES DUKPT → ZPK, ISO 0 → 0, {} in flight, {} s ({} reps)",
            config.concurrency,
            config.duration.as_secs_f64(),
            result.hsm.len()
        );
        let with_failures = |verdict: String| {
            if clean {
                verdict
            } else {
                format!("{verdict} ({failures} failures)")
            }
        };
        self.rows.push(Row {
            benchmark: "hsm".into(),
            case: format!("{case}, throughput"),
            figure: range(&hsm_rates, "tr/s"),
            floor: format!("NATS echo {}", range(&echo_rates, "req/s")),
            ratio: format!("{ratio:.2}"),
            goal: format!(
                "≥ {} tr/s, ratio ≥ {HSM_RATIO_GOAL:.1}",
                thousands(HSM_RATE_GOAL)
            ),
            verdict: with_failures(match (hsm_rate >= HSM_RATE_GOAL, ratio >= HSM_RATIO_GOAL) {
                (true, true) => "met".to_owned(),
                (false, true) => "MISSED (rate), met (ratio)".to_owned(),
                (true, false) => "met (rate), MISSED (ratio)".to_owned(),
                (false, false) => "MISSED (rate and ratio)".to_owned(),
            }),
        });
        let (p50, p99, p999) = (
            ms(&result.hsm, |run| run.p50_us),
            ms(&result.hsm, |run| run.p99_us),
            ms(&result.hsm, |run| run.p999_us),
        );
        let (echo_p50, echo_p99, echo_p999) = (
            ms(&result.echo, |run| run.p50_us),
            ms(&result.echo, |run| run.p99_us),
            ms(&result.echo, |run| run.p999_us),
        );
        self.rows.push(Row {
            benchmark: "hsm".into(),
            case: format!("{case}, latency p50 / p99 / p99.9"),
            figure: format!("{p50:.2} / {p99:.2} / {p999:.2} ms"),
            floor: format!("NATS echo {echo_p50:.2} / {echo_p99:.2} / {echo_p999:.2} ms"),
            ratio: format!("{:.1}× (p99)", p99 / echo_p99),
            goal: format!("p99 < {HSM_P99_GOAL_MS:.0} ms"),
            verdict: with_failures(verdict(p99 < HSM_P99_GOAL_MS)),
        });
        let completed = |runs: &[LoadRun]| runs.iter().map(|run| run.completed).sum::<usize>();
        let cpu = |runs: &[LoadRun], pick: fn(&LoadRun) -> f64| {
            median(&runs.iter().map(pick).collect::<Vec<_>>())
        };
        self.notes.push(format!(
            "hsm: {} translations checked over {} runs ({} also deciphered to the PIN), {} echo replies checked; failures: hsm {}, echo {}{}; {} distinct KSNs ({} devices × {}), request payload {} bytes, warm-up {:.1} s per run; max latency hsm {:.1} ms, echo {:.1} ms",
            thousands(completed(&result.hsm) as f64),
            result.hsm.len(),
            thousands(result.hsm.iter().map(|run| run.decoded).sum::<usize>() as f64),
            thousands(completed(&result.echo) as f64),
            result.hsm.iter().map(|run| run.failures).sum::<usize>(),
            result.echo.iter().map(|run| run.failures).sum::<usize>(),
            result
                .hsm
                .iter()
                .chain(&result.echo)
                .find_map(|run| run.first_failure.as_deref())
                .map_or_else(String::new, |first| format!(" (first: {first})")),
            result.ksns,
            config.devices,
            config.transactions,
            result.payload_len,
            config.warmup.as_secs_f64(),
            result.hsm.iter().map(|run| run.max_us).fold(0.0, f64::max) / 1_000.0,
            result.echo.iter().map(|run| run.max_us).fold(0.0, f64::max) / 1_000.0,
        ));
        self.notes.push(format!(
            "hsm: CPU per request (median over runs): this process (client + hsm-proxy) {:.0} µs, nats-server {:.0} µs; echo: this process (client + responder) {:.0} µs, nats-server {:.0} µs",
            cpu(&result.hsm, |run| run.cpu_us_per_request),
            cpu(&result.hsm, |run| run.nats_cpu_us_per_request),
            cpu(&result.echo, |run| run.cpu_us_per_request),
            cpu(&result.echo, |run| run.nats_cpu_us_per_request),
        ));
        if let Some(parts) = &result.breakdown {
            self.notes.push(format!(
                "hsm breakdown (one caller, µs per request): protobuf encode+decode of request and response {:.2}; registry resolve of both keys {:.2}; pool bookkeeping (Pool::run around a no-op) {:.2}; DUKPT PIN key from the BDK {:.2}; PIN block translation {:.2}; Hsm::translate_pin_data in process {:.2} (with {} in-process callers: {} tr/s); round trip with one request in flight: NATS echo {:.0} µs, TranslatePinData {:.0} µs",
                parts.protobuf_us,
                parts.registry_us,
                parts.pool_us,
                parts.dukpt_us,
                parts.translate_us,
                parts.engine_us,
                config.concurrency,
                thousands(parts.engine_rate),
                parts.echo_rtt_us,
                parts.hsm_rtt_us,
            ));
            let side: Vec<String> = parts
                .side_by_side
                .iter()
                .map(|(name, run)| {
                    format!(
                        "{name} {} req/s, p50 / p99 {:.2} / {:.2} ms, CPU per request {:.0} µs here + {:.0} µs nats-server",
                        thousands(run.rate),
                        run.p50_us / 1_000.0,
                        run.p99_us / 1_000.0,
                        run.cpu_us_per_request,
                        run.nats_cpu_us_per_request
                    )
                })
                .collect();
            self.notes.push(format!(
                "hsm side by side ({} in flight, 3 s each, back to back; the minimal translator decodes, derives the DUKPT PIN key, translates and encodes in the responder, without the hsm-proxy's engine): {}",
                config.concurrency,
                side.join("; ")
            ));
        }
    }

    fn machine_lines(&self) -> Vec<String> {
        let Some(machine) = &self.machine else {
            return Vec::new();
        };
        vec![
            format!("date: {}", machine.date),
            format!(
                "machine: {} CPUs ({}), {} RAM, Linux {}",
                machine.cpus, machine.cpu_model, machine.memory, machine.kernel
            ),
            format!("PostgreSQL: {}", machine.postgres),
            format!(
                "SQLite: {} (store PRAGMAs: journal_mode=WAL, synchronous=FULL)",
                machine.sqlite
            ),
            format!(
                "disk: 4 KiB append + fdatasync = {:.0} µs median (≈ {} durable commits/s)",
                machine.fdatasync_us,
                thousands(1e6 / machine.fdatasync_us)
            ),
        ]
    }

    /// The aligned text table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for line in self.machine_lines() {
            let _ = writeln!(out, "{line}");
        }
        if !self.command.is_empty() {
            let _ = writeln!(out, "command: {}", self.command);
        }
        let _ = writeln!(out);
        let header = [
            "benchmark",
            "case",
            "figure (median, min–max)",
            "floor (same run)",
            "ratio",
            "goal",
            "verdict",
        ];
        let cells: Vec<[&str; 7]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.benchmark.as_str(),
                    row.case.as_str(),
                    row.figure.as_str(),
                    row.floor.as_str(),
                    row.ratio.as_str(),
                    row.goal.as_str(),
                    row.verdict.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(|title| title.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |out: &mut String, row: &[&str; 7]| {
            let padded: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
                .collect();
            let _ = writeln!(out, "{}", padded.join("  ").trim_end());
        };
        line(&mut out, &header);
        let rule: Vec<String> = widths.iter().map(|&width| "-".repeat(width)).collect();
        let _ = writeln!(out, "{}", rule.join("  "));
        for row in &cells {
            line(&mut out, row);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "* {note}");
            }
        }
        out
    }

    /// The markdown block.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for line in self.machine_lines() {
            let _ = writeln!(out, "- {line}");
        }
        if !self.command.is_empty() {
            let _ = writeln!(out, "- command: `{}`", self.command);
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| Benchmark | Case | Figure (median, min–max) | Floor (same run) | Ratio | Goal | Verdict |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.benchmark, row.case, row.figure, row.floor, row.ratio, row.goal, row.verdict
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out);
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}
