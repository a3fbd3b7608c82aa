//! A tokio TCP client for the host-command protocol.
//!
//! Each connection carries one request at a time (requests on a connection are serialised,
//! not pipelined: the client writes a command and waits for its response before the next).
//! A client holds a small pool of such connections (default 1) and spreads requests over them
//! round-robin, so up to `pool size` requests are in flight at once.
//!
//! Every request has a timeout covering connect, write and read. A connection that times out,
//! fails, or answers out of protocol is dropped and re-opened lazily by the next request on
//! that slot, so a restarted HSM is picked up without recreating the client.
//!
//! Each command gets a fresh numeric header (a counter, zero-padded to the header length) and
//! the response must echo it, else the response is a protocol error.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::codec::{self, ErrorCode, Request, Response};
use crate::framing::{self, Framer, MAX_WIRE_LEN};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed (including the HSM closing the connection).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// No response within the per-request timeout.
    #[error("request timed out")]
    Timeout,
    /// The HSM answered with an error code other than `00`.
    #[error("hsm error code {0}")]
    ErrorCode(ErrorCode),
    /// The request could not be encoded, or the response is not valid for it.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Result of [`PayShieldClient::health`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The NO (status) response.
    pub status: Response,
    /// LMK check value from NC.
    pub lmk_check_value: String,
    /// Firmware number from NC.
    pub firmware: String,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    framer: Framer,
}

/// A payShield client: a pool of serialised connections to one HSM address.
#[derive(Debug)]
pub struct PayShieldClient {
    addr: String,
    header_len: usize,
    timeout: Duration,
    slots: Vec<Mutex<Option<Connection>>>,
    next_slot: AtomicUsize,
    next_header: AtomicU64,
}

impl PayShieldClient {
    /// Connects one connection to `addr` (`host:port`). `header_len` is the HSM's configured
    /// message header length; `timeout` bounds every request.
    pub async fn connect(
        addr: impl Into<String>,
        header_len: usize,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::with_pool(addr, header_len, timeout, 1).await
    }

    /// Like [`PayShieldClient::connect`] with `pool_size` connections (at least 1); the first
    /// is opened now, the others on first use.
    pub async fn with_pool(
        addr: impl Into<String>,
        header_len: usize,
        timeout: Duration,
        pool_size: usize,
    ) -> Result<Self, ClientError> {
        let client = Self {
            addr: addr.into(),
            header_len,
            timeout,
            slots: (0..pool_size.max(1)).map(|_| Mutex::new(None)).collect(),
            next_slot: AtomicUsize::new(0),
            next_header: AtomicU64::new(0),
        };
        let first = client.open().await?;
        *client.slots[0].lock().await = Some(first);
        Ok(client)
    }

    async fn open(&self) -> Result<Connection, ClientError> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            framer: Framer::new(MAX_WIRE_LEN),
        })
    }

    fn header(&self) -> Vec<u8> {
        let n = self.next_header.fetch_add(1, Ordering::Relaxed);
        let width = self.header_len;
        let text = format!("{n:0width$}");
        // Keep the rightmost `header_len` digits.
        text.as_bytes()[text.len() - width..].to_vec()
    }

    /// Sends `request` and returns the response fields; an error code other than `00` is
    /// [`ClientError::ErrorCode`].
    pub async fn send(&self, request: &Request) -> Result<Response, ClientError> {
        let header = self.header();
        let message =
            codec::encode(&header, request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let frame =
            framing::encode_frame(&message).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let index = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = tokio::time::timeout_at(deadline, async {
            if slot.is_none() {
                *slot = Some(self.open().await?);
            }
            let connection = slot
                .as_mut()
                .ok_or_else(|| ClientError::Protocol("no connection".into()))?;
            exchange(connection, &frame).await
        })
        .await
        .unwrap_or(Err(ClientError::Timeout));
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                // The stream may hold a late answer or be broken: start afresh next time.
                *slot = None;
                tracing::debug!(command = %String::from_utf8_lossy(&request.command_code()), error = %error, "payshield request failed");
                return Err(error);
            }
        };
        let checked = codec::decode_response(self.header_len, &reply)
            .map_err(|e| ClientError::Protocol(e.to_string()))
            .and_then(|response| {
                if response.header != header {
                    Err(ClientError::Protocol(
                        "response header does not echo the command's".into(),
                    ))
                } else if response.response_code != codec::response_code_for(request.command_code())
                {
                    Err(ClientError::Protocol(
                        "response code does not match the command".into(),
                    ))
                } else {
                    Ok(response)
                }
            });
        let response = match checked {
            Ok(response) => response,
            Err(error) => {
                // An answer that is not ours: the stream may be out of step, start afresh.
                *slot = None;
                return Err(error);
            }
        };
        drop(slot);
        if !response.error.is_ok() {
            return Err(ClientError::ErrorCode(response.error));
        }
        response
            .body
            .ok_or_else(|| ClientError::Protocol("response without fields".into()))
    }

    /// Health check: NO (status, mode 00) then NC (diagnostics).
    pub async fn health(&self) -> Result<Health, ClientError> {
        let status = self
            .send(&Request::Status {
                mode: "00".to_owned(),
            })
            .await?;
        match self.send(&Request::Diagnostics).await? {
            Response::Diagnostics {
                lmk_check_value,
                firmware,
            } => Ok(Health {
                status,
                lmk_check_value,
                firmware,
            }),
            _ => Err(ClientError::Protocol(
                "NC answered with other fields".into(),
            )),
        }
    }
}

async fn exchange(connection: &mut Connection, frame: &[u8]) -> Result<Vec<u8>, ClientError> {
    connection.stream.write_all(frame).await?;
    let mut buf = [0_u8; 4096];
    loop {
        if let Some(reply) = connection
            .framer
            .next_frame()
            .map_err(|e| ClientError::Protocol(e.to_string()))?
        {
            return Ok(reply);
        }
        let n = connection.stream.read(&mut buf).await?;
        if n == 0 {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the hsm",
            )));
        }
        connection.framer.push(&buf[..n]);
    }
}
