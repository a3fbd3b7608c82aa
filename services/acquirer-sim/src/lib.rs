//! An ISO 8583 acquirer/issuer host simulator, for tests, demos and load.
//!
//! It speaks the platform's 1987 profile ([`acquirer_link::profile`]) over TCP with a
//! configurable spec and framing, and answers:
//!
//! * authorisations and financial requests (0100, 0200) by its [`rules::RuleSet`]: approve
//!   (with a generated approval code), decline with a code, check the PIN (Visa PVV) or the
//!   ARQC (with an ARPC in tag 91 of field 55) through the hsm-proxy or clear test keys
//!   ([`issuer`]);
//! * completion advices (0220) and their repeats (0221, which carry no card data) with 0230
//!   `00`: an advice that repeats one received before (same STAN and RRN, or same field 90)
//!   is a duplicate, not a second capture ([`ReceivedMessage::repeats`],
//!   [`Received::captures`]); reversals (0400, 0401, which carry no card data: the original
//!   is matched by RRN and field 90, see [`ReceivedMessage::reverses`]) with 0410 `00`; echo
//!   tests and sign-ons (0800) with 0810 `00`;
//! * a request it cannot read with response code `30`; a bad MAC per [`BadMacPolicy`].
//!
//! Every message received is recorded ([`Controls::received`]: counts by MTI, and STAN, RRN,
//! MTI, amount and the PAN's last four digits of each). Faults on demand
//! ([`controls::Faults`]): answer late, never answer (blackhole), drop every connection,
//! refuse new ones; per MTI or for all. The same controls are served by a small admin HTTP
//! API ([`admin::router`]).
//!
//! [`AcquirerSim::start`] runs it in process on a listener; the `acquirer-sim` binary runs
//! it from `MPOS_ACQSIM_*` variables ([`config`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod controls;
mod host;
pub mod issuer;
pub mod rules;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use acquirer_link::MacProvider;
use iso8583::Spec;
use iso8583::framing::{FrameError, Framer, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use controls::{Controls, Faults, Received, ReceivedMessage};
pub use host::BadMacPolicy;
pub use issuer::{ClearIssuer, HsmIssuer, IssuerCrypto};
pub use rules::RuleSet;

use crate::host::Host;

/// The simulator's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The message spec.
    pub spec: Arc<Spec>,
    /// Length prefix and header on the wire.
    pub framing: Framing,
    /// When set, requests from another acquiring institution (field 32) are declined `31`.
    pub acquirer_id: Option<String>,
    /// Decision rules and the card table.
    pub rules: RuleSet,
    /// MACs checked on requests and added to answers; `None`: no MAC.
    pub mac: Option<Arc<dyn MacProvider>>,
    /// What a bad MAC gets.
    pub bad_mac: BadMacPolicy,
    /// Keys for the PIN and ARQC checks; `None`: those checks answer `96`.
    pub issuer: Option<Arc<dyn IssuerCrypto>>,
    /// The largest message accepted; a longer one closes the connection.
    pub max_message_len: usize,
}

impl SimConfig {
    /// Approves everything, no MAC, no issuer keys, 64 KiB messages.
    pub fn new(spec: Arc<Spec>, framing: Framing) -> Self {
        Self {
            spec,
            framing,
            acquirer_id: None,
            rules: RuleSet::approve_all(),
            mac: None,
            bad_mac: BadMacPolicy::default(),
            issuer: None,
            max_message_len: 64 * 1024,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// The simulator entry point.
#[derive(Debug)]
pub struct AcquirerSim;

/// A running simulator: its address, its controls, and the way to stop it.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    controls: Arc<Controls>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl AcquirerSim {
    /// Serves on `listener` until [`RunningSim::shutdown`].
    pub fn start(config: SimConfig, listener: TcpListener) -> Result<RunningSim, SimError> {
        let addr = listener.local_addr()?;
        let controls = Arc::new(Controls::default());
        let host = Arc::new(Host {
            spec: Arc::clone(&config.spec),
            rules: config.rules,
            mac: config.mac,
            bad_mac: config.bad_mac,
            issuer: config.issuer,
            acquirer_id: config.acquirer_id,
            controls: Arc::clone(&controls),
            auth_codes: AtomicU32::new(rand::random::<u32>() % 1_000_000),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(
            listener,
            host,
            config.framing,
            config.max_message_len,
            cancel.clone(),
        ));
        tracing::info!(addr = %addr, "acquirer-sim listening");
        Ok(RunningSim {
            addr,
            controls,
            cancel,
            task,
        })
    }
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The controls (shared with the admin API).
    pub fn controls(&self) -> Arc<Controls> {
        Arc::clone(&self.controls)
    }

    /// Answers `mti` (or everything, `None`) `delay` late; zero removes the delay.
    pub fn set_delay(&self, mti: Option<&str>, delay: std::time::Duration) {
        self.controls.set_delay(mti, delay);
    }

    /// Reads but never answers `mti` (or everything, `None`).
    pub fn set_blackhole(&self, mti: Option<&str>, on: bool) {
        self.controls.set_blackhole(mti, on);
    }

    /// Closes every open connection now.
    pub fn drop_connections(&self) {
        self.controls.drop_connections();
    }

    /// Closes new connections at once (`true`), or accepts them again.
    pub fn refuse_connections(&self, refuse: bool) {
        self.controls.refuse_connections(refuse);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.controls.clear_faults();
    }

    /// What was received so far.
    pub fn received(&self) -> Received {
        self.controls.received()
    }

    /// Forgets what was received.
    pub fn clear_received(&self) {
        self.controls.clear_received();
    }

    /// Stops listening and closes every connection.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    host: Arc<Host>,
    framing: Framing,
    max_message_len: usize,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if host.controls.faults().refuse_connections {
                        tracing::info!(peer = %peer, "acquirer-sim: connection refused (fault)");
                        drop(stream);
                        continue;
                    }
                    tracing::debug!(peer = %peer, "acquirer-sim: connection");
                    let closed = host.controls.connection_token();
                    connections.spawn(serve(
                        stream,
                        Arc::clone(&host),
                        framing.clone(),
                        max_message_len,
                        closed,
                        cancel.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "acquirer-sim: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve(
    stream: TcpStream,
    host: Arc<Host>,
    framing: Framing,
    max_message_len: usize,
    closed: CancellationToken,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (answers, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    // Each message is handled on its own task: a slow answer does not hold up the others,
    // so answers may go out in another order than the requests came in.
    let mut handlers = JoinSet::new();
    let writer = async {
        while let Some(frame) = outgoing.recv().await {
            if write.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        let mut framer = Framer::new(framing.clone(), max_message_len);
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            let count = match read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(count) => count,
            };
            framer.push(&buffer[..count]);
            loop {
                match framer.next_frame() {
                    Ok(Some(payload)) => {
                        let (host, answers, framing) =
                            (Arc::clone(&host), answers.clone(), framing.clone());
                        handlers.spawn(async move {
                            if let Some(answer) = host.handle(&payload).await {
                                match framing.encode(&answer) {
                                    Ok(frame) => {
                                        let _ = answers.send(frame);
                                    }
                                    Err(error) => {
                                        tracing::warn!(error = %error, "acquirer-sim: cannot frame the answer");
                                    }
                                }
                            }
                        });
                    }
                    Ok(None) => break,
                    Err(FrameError::HeaderMismatch) => {
                        tracing::warn!("acquirer-sim: frame with an unexpected header dropped");
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "acquirer-sim: framing broken, closing connection");
                        return;
                    }
                }
            }
            while handlers.try_join_next().is_some() {}
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
        () = closed.cancelled() => tracing::info!("acquirer-sim: connection dropped (fault)"),
        () = cancel.cancelled() => {}
    }
    handlers.shutdown().await;
}
