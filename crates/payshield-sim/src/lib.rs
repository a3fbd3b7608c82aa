//! A payShield-compatible HSM simulator for tests and local runs.
//!
//! It answers the host commands of the `payshield` crate's codec (NC, NO, A0, A6, A8, CA,
//! CC, CI, G0, KQ, M6, M8, M0, M2) over TCP, performing the cryptography in software with
//! `paycrypto`. Keys "under the LMK" are `S` key blocks: `S` followed by a TR-31 / X9.143
//! version D key block wrapped with a 32-byte AES key that stands in for the LMK. A real
//! Thales key block (its header, its own key block version and MAC) differs in detail, so
//! keys from a real HSM do not work here and vice versa.
//!
//! For failover tests the server can be slowed down ([`RunningSimulator::set_delay`]) and
//! stopped ([`RunningSimulator::shutdown`], which also drops every open connection) and
//! bound again to the same address.
//!
//! Never use it with production keys: every key is in process memory.

#![forbid(unsafe_code)]

pub mod engine;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paycrypto::{CryptoError, SecretBytes};
use payshield::framing::{Framer, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use engine::Engine;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The LMK: 32 bytes (AES-256 key block protection key).
    pub lmk: SecretBytes,
    /// Message header length (default 4).
    pub header_len: usize,
    /// Largest accepted message (default 32 KiB); a longer length prefix closes the
    /// connection, as the stream is then out of sync.
    pub max_message_len: usize,
}

impl SimConfig {
    /// Default settings with `lmk`.
    pub fn new(lmk: SecretBytes) -> Self {
        Self {
            lmk,
            header_len: 4,
            max_message_len: 32 * 1024,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener failed.
    #[error("bind failed: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is invalid (e.g. the LMK length).
    #[error("invalid configuration: {0}")]
    Config(#[from] CryptoError),
}

/// The simulator entry point.
#[derive(Debug)]
pub struct Simulator;

#[derive(Debug, Default)]
struct Controls {
    delay: Mutex<Duration>,
}

impl Controls {
    fn delay(&self) -> Duration {
        self.delay.lock().map(|d| *d).unwrap_or_default()
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct RunningSimulator {
    local_addr: SocketAddr,
    controls: Arc<Controls>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves until shut down.
    pub async fn bind(addr: &str, config: SimConfig) -> Result<RunningSimulator, SimError> {
        let engine = Arc::new(Engine::new(config.lmk.clone(), config.header_len)?);
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let controls = Arc::new(Controls::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            engine,
            Arc::clone(&controls),
            shutdown_rx,
            config.max_message_len,
        ));
        tracing::info!(addr = %local_addr, "payshield-sim listening");
        Ok(RunningSimulator {
            local_addr,
            controls,
            shutdown,
            task,
        })
    }
}

impl RunningSimulator {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Delays every response by `delay` (zero: no delay), for timeout and failover tests.
    pub fn set_delay(&self, delay: Duration) {
        if let Ok(mut current) = self.controls.delay.lock() {
            *current = delay;
        }
    }

    /// Stops listening and closes every connection; returns when the port is free.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    engine: Arc<Engine>,
    controls: Arc<Controls>,
    mut shutdown: watch::Receiver<bool>,
    max_message_len: usize,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(peer = %peer, "payshield-sim connection");
                    connections.spawn(serve(
                        stream,
                        Arc::clone(&engine),
                        Arc::clone(&controls),
                        max_message_len,
                    ));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "payshield-sim accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve(
    mut stream: TcpStream,
    engine: Arc<Engine>,
    controls: Arc<Controls>,
    max_message_len: usize,
) {
    let _ = stream.set_nodelay(true);
    let mut framer = Framer::new(max_message_len);
    let mut buf = vec![0_u8; 8192];
    loop {
        loop {
            let message = match framer.next_frame() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(error = %error, "payshield-sim closing connection: bad frame");
                    return;
                }
            };
            let Some(response) = engine.handle(&message) else {
                tracing::debug!(
                    len = message.len(),
                    "payshield-sim ignoring message shorter than header and command code"
                );
                continue;
            };
            let delay = controls.delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let Ok(frame) = encode_frame(&response) else {
                return;
            };
            if stream.write_all(&frame).await.is_err() {
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => framer.push(&buf[..n]),
        }
    }
}
