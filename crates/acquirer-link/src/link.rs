//! The connector: one TCP connection to the acquirer, many exchanges in flight over it.
//!
//! [`Link::start`] spawns a task that connects, reconnects with exponential backoff (from
//! [`LinkConfig::reconnect_min`] to [`LinkConfig::reconnect_max`]), and, when nothing was
//! received for [`LinkConfig::echo_interval`], sends an echo test (0800, field 70 = 301); an
//! echo without an answer within the response timeout closes the connection as dead.
//!
//! [`Link::exchange`] sends one request and waits for its answer. It assigns nothing: the
//! caller sets the STAN (11) and RRN (37). The answer is the message with the request's
//! response MTI (0200 → 0210, 0100 → 0110, 0220 → 0230, 0400/0401 → 0410, 0800 → 0810) and
//! the same STAN and RRN; its MAC is checked before it is returned. Outcomes:
//!
//! * not connected, or [`LinkConfig::max_in_flight`] exchanges already waiting:
//!   [`LinkError::Unavailable`] at once, nothing sent (no queue);
//! * no answer in [`LinkConfig::response_timeout`], or the connection dropped after the
//!   request was written: [`LinkError::Timeout`], the outcome is unknown and the caller
//!   reverses. An answer arriving later is logged (`late response dropped`) and dropped;
//! * an answer whose MAC does not verify: [`LinkError::BadMac`], the answer is not returned.
//!
//! Logs carry the acquirer's name, MTIs and error kinds, never field contents. Metrics:
//! `mpos_acquirer_link_exchanges_total{acquirer,outcome}`,
//! `mpos_acquirer_link_exchange_duration_seconds{acquirer}` and
//! `mpos_acquirer_link_connected{acquirer}` (1 or 0).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use iso8583::framing::{FrameError, Framer, Framing};
use iso8583::{Message, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::mac::{self, MacProvider, NoMac};
use crate::profile::{self, NetworkCode, field};
use crate::{LinkError, wire};

/// Counter: exchanges by outcome. Labels: `acquirer`, `outcome`.
pub const EXCHANGES_TOTAL: &str = "mpos_acquirer_link_exchanges_total";
/// Histogram: exchange duration in seconds. Labels: `acquirer`.
pub const EXCHANGE_DURATION_SECONDS: &str = "mpos_acquirer_link_exchange_duration_seconds";
/// Gauge: 1 while connected. Labels: `acquirer`.
pub const CONNECTED: &str = "mpos_acquirer_link_connected";

/// How many timed-out exchanges are remembered to tell a late answer from a stray one.
const REMEMBERED_TIMEOUTS: usize = 1024;

/// The link's settings.
#[derive(Clone)]
pub struct LinkConfig {
    /// The acquirer's name, for logs and metric labels (not an id of a merchant or card).
    pub acquirer: String,
    /// `host:port`.
    pub address: String,
    /// The acquirer's message spec.
    pub spec: Arc<Spec>,
    /// Length prefix and header of each message on the wire.
    pub framing: Framing,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long an exchange waits for its answer.
    pub response_timeout: Duration,
    /// Send an echo test after this long without receiving anything (zero: never).
    pub echo_interval: Duration,
    /// The first wait before reconnecting.
    pub reconnect_min: Duration,
    /// The longest wait before reconnecting (the wait doubles from `reconnect_min`).
    pub reconnect_max: Duration,
    /// Exchanges waiting for an answer at once; more are refused.
    pub max_in_flight: usize,
    /// The largest message accepted from the acquirer; a longer one closes the connection.
    pub max_message_len: usize,
    /// Who computes and checks MACs.
    pub mac: Arc<dyn MacProvider>,
    /// `Some(64)` or `Some(128)`: messages carry a MAC, in field 64, or 128 when the
    /// message has a secondary bitmap (the choice is per message); answers must carry a
    /// valid one. `None`: no MAC.
    pub mac_field: Option<u8>,
}

impl fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkConfig")
            .field("acquirer", &self.acquirer)
            .field("address", &self.address)
            .field("framing", &self.framing)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("echo_interval", &self.echo_interval)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_message_len", &self.max_message_len)
            .field("mac_field", &self.mac_field)
            .finish_non_exhaustive()
    }
}

impl LinkConfig {
    /// Settings with the defaults: connect timeout 3 s, response timeout 5 s, echo after
    /// 30 s idle, reconnect from 100 ms up to 10 s, 256 exchanges in flight, 64 KiB
    /// messages, no MAC.
    pub fn new(
        acquirer: impl Into<String>,
        address: impl Into<String>,
        spec: Arc<Spec>,
        framing: Framing,
    ) -> Self {
        Self {
            acquirer: acquirer.into(),
            address: address.into(),
            spec,
            framing,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
            echo_interval: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            max_in_flight: 256,
            max_message_len: 64 * 1024,
            mac: Arc::new(NoMac),
            mac_field: None,
        }
    }

    /// With MACs from `provider` (field 64, or 128 with a secondary bitmap).
    pub fn with_mac(mut self, provider: Arc<dyn MacProvider>) -> Self {
        self.mac = provider;
        self.mac_field = Some(field::MAC);
        self
    }
}

/// Whether the link can carry exchanges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Connected: exchanges are sent.
    Connected,
    /// Connecting or reconnecting after a lost connection.
    Connecting,
    /// The last connection attempt failed (waiting to retry), or the link was stopped.
    Down,
}

impl LinkState {
    /// `connected`, `connecting` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Connecting => "connecting",
            Self::Down => "down",
        }
    }
}

/// Response MTI, STAN, RRN (empty when the request has none).
type Key = (String, u32, String);

struct Received {
    message: Message,
    raw: Vec<u8>,
}

struct Shared {
    config: LinkConfig,
    state: watch::Sender<LinkState>,
    connection: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pending: Mutex<HashMap<Key, oneshot::Sender<Received>>>,
    timed_out: Mutex<VecDeque<Key>>,
    permits: Arc<Semaphore>,
    last_received: Mutex<Instant>,
    echo_stan: AtomicU32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (plain inserts/removes).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The platform's side of one acquirer link. Cheap to clone; every clone drives the same
/// connection. Stops when the cancellation token given to [`Link::start`] is cancelled.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("acquirer", &self.shared.config.acquirer)
            .field("state", &self.state())
            .finish()
    }
}

impl Link {
    /// Starts the connection task (in the current tokio runtime) and returns at once; the
    /// link is [`LinkState::Connecting`] until the first connection is up.
    pub fn start(config: LinkConfig, cancel: CancellationToken) -> Link {
        let (state, _) = watch::channel(LinkState::Connecting);
        let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
        let shared = Arc::new(Shared {
            config,
            state,
            connection: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            timed_out: Mutex::new(VecDeque::new()),
            permits,
            last_received: Mutex::new(Instant::now()),
            echo_stan: AtomicU32::new(rand::random::<u32>() % 1_000_000),
        });
        tokio::spawn(run(Arc::clone(&shared), cancel));
        Link { shared }
    }

    /// The connection state, for health checks.
    pub fn state(&self) -> LinkState {
        *self.shared.state.borrow()
    }

    /// Waits until the link is in `state`, at most `timeout`; whether it got there.
    pub async fn wait_for(&self, state: LinkState, timeout: Duration) -> bool {
        let mut receiver = self.shared.state.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|current| *current == state))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    /// Sends `message` (STAN and RRN set by the caller) and returns the acquirer's answer.
    /// See the module documentation for the outcomes.
    pub async fn exchange(&self, message: Message) -> Result<Message, LinkError> {
        let started = Instant::now();
        let mti = wire::mti(&message);
        let result = self.shared.exchange(message).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.label(),
        };
        let acquirer = self.shared.config.acquirer.clone();
        metrics::counter!(EXCHANGES_TOTAL, "acquirer" => acquirer.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(EXCHANGE_DURATION_SECONDS, "acquirer" => acquirer)
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            tracing::debug!(
                acquirer = %self.shared.config.acquirer,
                mti = %mti,
                outcome,
                "exchange failed: {error}"
            );
        }
        result
    }
}

impl Shared {
    fn acquirer(&self) -> &str {
        &self.config.acquirer
    }

    fn set_state(&self, state: LinkState) {
        self.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        metrics::gauge!(CONNECTED, "acquirer" => self.config.acquirer.clone()).set(
            if state == LinkState::Connected {
                1.0
            } else {
                0.0
            },
        );
    }

    fn touch(&self) {
        *lock(&self.last_received) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        lock(&self.last_received).elapsed()
    }

    fn mac_provider(&self) -> Option<&Arc<dyn MacProvider>> {
        self.config.mac_field.map(|_| &self.config.mac)
    }

    async fn exchange(&self, message: Message) -> Result<Message, LinkError> {
        let mti = wire::mti(&message);
        let response_mti = profile::response_mti(&mti)
            .ok_or_else(|| LinkError::protocol(format!("{mti} is not a request or advice")))?;
        let stan = wire::text(&message, field::STAN)
            .and_then(|stan| stan.trim().parse::<u32>().ok())
            .ok_or_else(|| LinkError::protocol("missing or malformed stan (11)"))?;
        let rrn = wire::text(&message, field::RRN)
            .map(|rrn| rrn.trim().to_owned())
            .unwrap_or_default();
        let key: Key = (response_mti, stan, rrn);

        let sender = lock(&self.connection)
            .clone()
            .ok_or_else(|| LinkError::Unavailable("not connected".into()))?;
        let _permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| LinkError::Unavailable("too many exchanges in flight".into()))?;
        let payload = mac::seal(&self.config.spec, message, self.mac_provider()).await?;
        let frame = self.config.framing.encode(&payload)?;

        let (reply, answer) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if pending.contains_key(&key) {
                return Err(LinkError::protocol(
                    "an exchange with this mti, stan and rrn is already in flight",
                ));
            }
            pending.insert(key.clone(), reply);
        }
        if sender.try_send(frame).is_err() {
            lock(&self.pending).remove(&key);
            return Err(LinkError::Unavailable("connection closing".into()));
        }
        let received = match tokio::time::timeout(self.config.response_timeout, answer).await {
            Ok(Ok(received)) => received,
            // The connection dropped after the request was written.
            Ok(Err(_)) => return Err(LinkError::Timeout),
            Err(_) => {
                lock(&self.pending).remove(&key);
                let mut timed_out = lock(&self.timed_out);
                if timed_out.len() >= REMEMBERED_TIMEOUTS {
                    timed_out.pop_front();
                }
                timed_out.push_back(key);
                return Err(LinkError::Timeout);
            }
        };
        if let Some(provider) = self.mac_provider() {
            mac::verify(&received.raw, &received.message, provider).await?;
        }
        Ok(received.message)
    }

    /// Routes one received message to its exchange.
    fn deliver(self: &Arc<Self>, raw: Vec<u8>) {
        self.touch();
        let message = match iso8583::decode(&self.config.spec, &raw) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(acquirer = %self.acquirer(), len = raw.len(), error = %error, "undecodable message dropped");
                return;
            }
        };
        let mti = wire::mti(&message);
        if mti == "0800" {
            self.answer_network_request(message);
            return;
        }
        let Some(stan) =
            wire::text(&message, field::STAN).and_then(|stan| stan.trim().parse::<u32>().ok())
        else {
            tracing::warn!(acquirer = %self.acquirer(), mti = %mti, "message without stan dropped");
            return;
        };
        let rrn = wire::text(&message, field::RRN)
            .map(|rrn| rrn.trim().to_owned())
            .unwrap_or_default();
        // An answer to a repeat may say so (0411); it answers the same exchange.
        let mut answered = mti;
        if answered.ends_with('1') {
            answered.replace_range(3..4, "0");
        }
        let key: Key = (answered, stan, rrn);
        let waiting = lock(&self.pending).remove(&key);
        match waiting {
            Some(reply) => {
                // The exchange may have given up at this very moment: then nobody listens.
                let _ = reply.send(Received { message, raw });
            }
            None => {
                let late = lock(&self.timed_out).contains(&key);
                if late {
                    tracing::info!(acquirer = %self.acquirer(), mti = %key.0, "late response dropped");
                } else {
                    tracing::warn!(acquirer = %self.acquirer(), mti = %key.0, "unmatched message dropped");
                }
            }
        }
    }

    /// Answers the acquirer's own echo test or sign-on with 0810 and response code 00.
    fn answer_network_request(self: &Arc<Self>, request: Message) {
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let answer = async {
                let mut response = wire::new_message("0810")?;
                for number in [
                    field::TRANSMISSION_DATE_TIME,
                    field::STAN,
                    field::NETWORK_CODE,
                ] {
                    if let Some(value) = wire::text(&request, number) {
                        wire::set_text(&mut response, number, value);
                    }
                }
                wire::set_text(&mut response, field::RESPONSE_CODE, "00");
                let payload =
                    mac::seal(&shared.config.spec, response, shared.mac_provider()).await?;
                let frame = shared.config.framing.encode(&payload)?;
                let sender = lock(&shared.connection).clone();
                if let Some(sender) = sender {
                    let _ = sender.try_send(frame);
                }
                Ok::<(), LinkError>(())
            };
            if let Err(error) = answer.await {
                tracing::warn!(acquirer = %shared.acquirer(), error = %error.label(), "network management answer failed");
            }
        });
    }

    /// Forgets the connection; every exchange waiting on it fails with a timeout (its
    /// request may have arrived).
    fn drop_connection(&self) {
        *lock(&self.connection) = None;
        lock(&self.pending).clear();
    }

    async fn keep_alive(&self) {
        let interval = self.config.echo_interval;
        if interval.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let idle = self.idle_for();
            if idle < interval {
                tokio::time::sleep(interval - idle).await;
                continue;
            }
            let stan = self.echo_stan.fetch_add(1, Ordering::Relaxed) % 1_000_000;
            let echo = match profile::network_message(NetworkCode::Echo, stan, Utc::now()) {
                Ok(echo) => echo,
                Err(error) => {
                    tracing::error!(acquirer = %self.acquirer(), error = %error, "cannot build echo");
                    return std::future::pending().await;
                }
            };
            match self.exchange(echo).await {
                Ok(_) => tracing::debug!(acquirer = %self.acquirer(), "echo answered"),
                Err(LinkError::Timeout) => {
                    tracing::warn!(acquirer = %self.acquirer(), "echo unanswered, closing connection");
                    return;
                }
                Err(error) => {
                    tracing::warn!(acquirer = %self.acquirer(), error = %error.label(), "echo failed");
                    // Something was received (or the link is busy): wait a full interval.
                    self.touch();
                }
            }
        }
    }
}

async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let config = &shared.config;
    let mut backoff = config.reconnect_min;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let attempt = tokio::time::timeout(
            config.connect_timeout,
            TcpStream::connect(config.address.as_str()),
        );
        let attempt = tokio::select! {
            () = cancel.cancelled() => break,
            attempt = attempt => attempt,
        };
        match attempt {
            Ok(Ok(stream)) => {
                backoff = config.reconnect_min;
                tracing::info!(acquirer = %shared.acquirer(), "link connected");
                serve(&shared, stream, &cancel).await;
                shared.drop_connection();
                if cancel.is_cancelled() {
                    break;
                }
                tracing::warn!(acquirer = %shared.acquirer(), "link connection lost");
                shared.set_state(LinkState::Connecting);
            }
            Ok(Err(error)) => {
                tracing::warn!(acquirer = %shared.acquirer(), error = %error.kind(), "link connect failed");
                shared.set_state(LinkState::Down);
            }
            Err(_) => {
                tracing::warn!(acquirer = %shared.acquirer(), "link connect timed out");
                shared.set_state(LinkState::Down);
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.reconnect_max.max(config.reconnect_min));
        if shared.state() != LinkState::Connected {
            shared.set_state(LinkState::Connecting);
        }
    }
    shared.drop_connection();
    shared.set_state(LinkState::Down);
    tracing::info!(acquirer = %shared.acquirer(), "link stopped");
}

impl Shared {
    fn state(&self) -> LinkState {
        *self.state.borrow()
    }
}

/// Carries one connection until it drops, the keep-alive gives up or the link stops.
async fn serve(shared: &Arc<Shared>, stream: TcpStream, cancel: &CancellationToken) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (sender, mut frames) = mpsc::channel::<Vec<u8>>(shared.config.max_in_flight.max(1) + 16);
    *lock(&shared.connection) = Some(sender);
    shared.touch();
    shared.set_state(LinkState::Connected);

    let writer = async {
        while let Some(frame) = frames.recv().await {
            if let Err(error) = write.write_all(&frame).await {
                tracing::warn!(acquirer = %shared.acquirer(), error = %error.kind(), "link write failed");
                return;
            }
        }
    };
    let reader = async {
        let mut framer = Framer::new(shared.config.framing.clone(), shared.config.max_message_len);
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            let read = match read.read(&mut buffer).await {
                Ok(0) => return,
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(acquirer = %shared.acquirer(), error = %error.kind(), "link read failed");
                    return;
                }
            };
            framer.push(&buffer[..read]);
            loop {
                match framer.next_frame() {
                    Ok(Some(frame)) => shared.deliver(frame),
                    Ok(None) => break,
                    Err(FrameError::HeaderMismatch) => {
                        // Consumed by the framer: the stream is still in step.
                        tracing::warn!(acquirer = %shared.acquirer(), "frame with an unexpected header dropped");
                    }
                    Err(error) => {
                        tracing::warn!(acquirer = %shared.acquirer(), error = %error, "link framing broken, closing connection");
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
        () = shared.keep_alive() => {}
        () = cancel.cancelled() => {}
    }
}
