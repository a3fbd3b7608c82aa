//! A tiny ISO 8583 host for the link's tests, over real TCP on 127.0.0.1: it decodes each
//! frame, asks the test's handler what to do, and answers (or not) on a task of its own, so
//! answers can overtake each other.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acquirer_link::MacProvider;
use acquirer_link::framing::{Framer, Framing, LengthPrefix};
use acquirer_link::mac;
use iso8583::{Message, Mti, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the host does with one request.
pub enum Reply {
    /// Answer `message` after `delay`.
    Answer(Duration, Message),
    /// Say nothing.
    Silence,
    /// Close the connection.
    Hangup,
}

pub type Handler =
    Arc<dyn Fn(Message) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

pub struct TestHost {
    pub addr: String,
    pub connections: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestHost {
    pub fn received_mtis(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

pub fn spec() -> Arc<Spec> {
    Arc::new(Spec::builtin("ascii-1987").expect("builtin spec"))
}

pub fn binary2() -> Framing {
    Framing {
        prefix: LengthPrefix::Binary2,
        header: Vec::new(),
    }
}

/// The answer to `request` with `code`: response MTI, fields 3, 4, 7, 11, 37, 41, 49, 70
/// echoed.
pub fn answer(request: &Message, code: &str) -> Message {
    let mti = request.mti().to_string();
    let response = acquirer_link::profile::response_mti(&mti).unwrap();
    let mut answer = Message::new(Mti::parse(&response).unwrap());
    for number in [3_u8, 4, 7, 11, 37, 41, 49, 70] {
        if let Some(value) = request.get_text(number) {
            answer.set_text(number, value);
        }
    }
    answer.set_text(39, code);
    answer
}

pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |message| Box::pin(f(message)))
}

/// Answers everything at once with `00`.
pub fn approve_all() -> Handler {
    handler(|message| async move { Reply::Answer(Duration::ZERO, answer(&message, "00")) })
}

pub async fn start(
    framing: Framing,
    mac: Option<Arc<dyn MacProvider>>,
    handler: Handler,
) -> TestHost {
    let spec = spec();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let (connections, received) = (connections.clone(), received.clone());
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let (spec, framing, mac, handler, received) = (
                    spec.clone(),
                    framing.clone(),
                    mac.clone(),
                    handler.clone(),
                    received.clone(),
                );
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
                    let writer = tokio::spawn(async move {
                        while let Some(Some(frame)) = rx.recv().await {
                            if write.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                        // None: hang up (dropping the write half and, below, the read half).
                    });
                    let mut framer = Framer::new(framing.clone(), 64 * 1024);
                    let mut buffer = vec![0_u8; 8192];
                    'read: loop {
                        let count = match read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(count) => count,
                        };
                        framer.push(&buffer[..count]);
                        while let Some(payload) = framer.next_frame().unwrap() {
                            let message = iso8583::decode(&spec, &payload).unwrap();
                            received.lock().unwrap().push(message.mti().to_string());
                            let (spec, framing, mac, handler, tx) = (
                                spec.clone(),
                                framing.clone(),
                                mac.clone(),
                                handler.clone(),
                                tx.clone(),
                            );
                            match handler(message).await {
                                Reply::Answer(delay, answer) => {
                                    tokio::spawn(async move {
                                        tokio::time::sleep(delay).await;
                                        let encoded =
                                            mac::seal(&spec, answer, mac.as_ref()).await.unwrap();
                                        let _ = tx.send(Some(framing.encode(&encoded).unwrap()));
                                    });
                                }
                                Reply::Silence => {}
                                Reply::Hangup => {
                                    let _ = tx.send(None);
                                    break 'read;
                                }
                            }
                        }
                    }
                    let _ = writer.await;
                });
            }
        }
    });
    TestHost {
        addr,
        connections,
        received,
        task,
    }
}
