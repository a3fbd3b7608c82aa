//! Faults on demand and the record of what the simulator received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How many received messages are listed (the counts go on).
pub const MAX_LISTED: usize = 10_000;

/// The faults in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Answer every message this many milliseconds late.
    #[serde(default)]
    pub delay_ms: u64,
    /// Per-MTI delays (the request MTI, e.g. `0200`), instead of `delay_ms`.
    #[serde(default)]
    pub delay_ms_by_mti: BTreeMap<String, u64>,
    /// Read every message, answer none.
    #[serde(default)]
    pub blackhole: bool,
    /// Read these MTIs, answer none.
    #[serde(default)]
    pub blackhole_mtis: BTreeSet<String>,
    /// Close every new connection at once.
    #[serde(default)]
    pub refuse_connections: bool,
}

impl Faults {
    /// The delay for a request MTI.
    pub fn delay_for(&self, mti: &str) -> Duration {
        Duration::from_millis(
            self.delay_ms_by_mti
                .get(mti)
                .copied()
                .unwrap_or(self.delay_ms),
        )
    }

    /// Whether a request MTI goes unanswered.
    pub fn blackholed(&self, mti: &str) -> bool {
        self.blackhole || self.blackhole_mtis.contains(mti)
    }
}

/// One received message, without card data beyond the PAN's last four digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// Order of arrival, from 1.
    #[serde(default)]
    pub seq: u64,
    /// The MTI.
    pub mti: String,
    /// Field 11.
    pub stan: Option<u32>,
    /// Field 37.
    pub rrn: Option<String>,
    /// Field 4, minor units.
    pub amount_minor: Option<u64>,
    /// The PAN's last four digits.
    pub pan_last4: Option<String>,
    /// Field 18, the merchant category code.
    #[serde(default)]
    pub mcc: Option<String>,
    /// Field 22, the POS entry mode.
    #[serde(default)]
    pub pos_entry_mode: Option<String>,
    /// The response code answered (`None`: not answered, e.g. blackholed or a bad MAC
    /// dropped).
    pub response_code: Option<String>,
    /// For a reversal (0400, 0401): the sequence number of the request it reverses, found by
    /// RRN and the original's MTI and STAN of field 90 (`None`: not a reversal, or the
    /// original was never received here).
    #[serde(default)]
    pub reverses: Option<u64>,
    /// Field 38, the approval code (a completion advice carries the pre-authorisation's).
    #[serde(default)]
    pub approval_code: Option<String>,
    /// Field 90, the original data elements (a completion advice's pre-authorisation, a
    /// reversal's original).
    #[serde(default)]
    pub original_data: Option<String>,
    /// For a completion advice (0220, or its repeat 0221): the sequence number of the advice
    /// received earlier that this one repeats, found by STAN and RRN, or else by field 90 (the
    /// same pre-authorisation completed again). Such a duplicate is acknowledged and not
    /// captured a second time (`None`: not an advice, or the first of its kind here).
    #[serde(default)]
    pub repeats: Option<u64>,
}

/// What was received: counts by MTI and the list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Messages received in all (the sequence number of the last one).
    #[serde(default)]
    pub total: u64,
    /// Messages received, by MTI.
    pub counts: BTreeMap<String, u64>,
    /// The messages, oldest first (at most [`MAX_LISTED`]).
    pub messages: Vec<ReceivedMessage>,
}

impl Received {
    /// How many messages with `mti` were received.
    pub fn count(&self, mti: &str) -> u64 {
        self.counts.get(mti).copied().unwrap_or(0)
    }

    /// The completion advices captured (0220 or 0221 received, not duplicates of one
    /// received before), among those listed.
    pub fn captures(&self) -> Vec<&ReceivedMessage> {
        self.messages
            .iter()
            .filter(|message| is_advice(&message.mti) && message.repeats.is_none())
            .collect()
    }
}

/// Whether an MTI is a completion advice or its repeat.
pub(crate) fn is_advice(mti: &str) -> bool {
    mti == "0220" || mti == "0221"
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The simulator's shared controls: faults, the received record and the connections'
/// kill switch. The admin API and [`crate::RunningSim`] drive the same instance.
#[derive(Debug, Default)]
pub struct Controls {
    faults: Mutex<Faults>,
    received: Mutex<Received>,
    connections: Mutex<CancellationToken>,
}

impl Controls {
    /// The faults in force.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// Answers `mti` (or every message, `None`) `delay` late.
    pub fn set_delay(&self, mti: Option<&str>, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let mut faults = lock(&self.faults);
        match mti {
            Some(mti) if millis == 0 => {
                faults.delay_ms_by_mti.remove(mti);
            }
            Some(mti) => {
                faults.delay_ms_by_mti.insert(mti.to_owned(), millis);
            }
            None => faults.delay_ms = millis,
        }
    }

    /// Reads but never answers `mti` (or every message, `None`).
    pub fn set_blackhole(&self, mti: Option<&str>, on: bool) {
        let mut faults = lock(&self.faults);
        match (mti, on) {
            (Some(mti), true) => {
                faults.blackhole_mtis.insert(mti.to_owned());
            }
            (Some(mti), false) => {
                faults.blackhole_mtis.remove(mti);
            }
            (None, on) => faults.blackhole = on,
        }
    }

    /// Closes every new connection at once (`true`) or accepts them again.
    pub fn refuse_connections(&self, refuse: bool) {
        lock(&self.faults).refuse_connections = refuse;
    }

    /// Closes every open connection now.
    pub fn drop_connections(&self) {
        let mut current = lock(&self.connections);
        current.cancel();
        *current = CancellationToken::new();
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        *lock(&self.faults) = Faults::default();
    }

    /// The token a new connection closes on.
    pub(crate) fn connection_token(&self) -> CancellationToken {
        lock(&self.connections).clone()
    }

    /// What was received.
    pub fn received(&self) -> Received {
        lock(&self.received).clone()
    }

    /// Forgets what was received.
    pub fn clear_received(&self) {
        *lock(&self.received) = Received::default();
    }

    /// Records a message; returns its sequence number for [`Controls::answered`].
    pub(crate) fn record(&self, mut message: ReceivedMessage) -> u64 {
        let mut received = lock(&self.received);
        received.total += 1;
        message.seq = received.total;
        *received.counts.entry(message.mti.clone()).or_insert(0) += 1;
        if received.messages.len() < MAX_LISTED {
            received.messages.push(message);
        }
        received.total
    }

    /// Notes which earlier request the reversal `seq` reverses: the last one received with
    /// `rrn`, `mti` and `stan`; returns its sequence number.
    pub(crate) fn match_original(&self, seq: u64, rrn: &str, mti: &str, stan: u32) -> Option<u64> {
        let mut received = lock(&self.received);
        let original = received
            .messages
            .iter()
            .rev()
            .find(|message| {
                message.seq < seq
                    && message.mti == mti
                    && message.stan == Some(stan)
                    && message.rrn.as_deref() == Some(rrn)
            })
            .map(|message| message.seq)?;
        if let Some(message) = received
            .messages
            .iter_mut()
            .rev()
            .find(|message| message.seq == seq)
        {
            message.reverses = Some(original);
        }
        Some(original)
    }

    /// Notes which earlier advice the advice `seq` repeats: the last advice (0220, 0221)
    /// received with the same STAN and RRN, or else with the same field 90; returns its
    /// sequence number (that of the first of the chain: the capture).
    pub(crate) fn match_advice(&self, seq: u64) -> Option<u64> {
        let mut received = lock(&self.received);
        let current = received
            .messages
            .iter()
            .rev()
            .find(|message| message.seq == seq)?
            .clone();
        let earlier = |matches: &dyn Fn(&ReceivedMessage) -> bool| {
            received
                .messages
                .iter()
                .rev()
                .find(|message| message.seq < seq && is_advice(&message.mti) && matches(message))
                .map(|message| message.repeats.unwrap_or(message.seq))
        };
        let same_ids = |message: &ReceivedMessage| {
            current.stan.is_some()
                && current.rrn.is_some()
                && message.stan == current.stan
                && message.rrn == current.rrn
        };
        let same_original = |message: &ReceivedMessage| {
            current.original_data.is_some() && message.original_data == current.original_data
        };
        let first = earlier(&same_ids).or_else(|| earlier(&same_original))?;
        if let Some(message) = received
            .messages
            .iter_mut()
            .rev()
            .find(|message| message.seq == seq)
        {
            message.repeats = Some(first);
        }
        Some(first)
    }

    /// Notes the response code a recorded message was answered with.
    pub(crate) fn answered(&self, seq: u64, response_code: &str) {
        let mut received = lock(&self.received);
        if let Some(message) = received
            .messages
            .iter_mut()
            .rev()
            .find(|message| message.seq == seq)
        {
            message.response_code = Some(response_code.to_owned());
        }
    }
}
