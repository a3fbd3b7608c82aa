//! The client against scripted fake HSMs: protocol violations and I/O failures are typed
//! errors, and the client recovers on the next request.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use payshield::client::{ClientError, PayShieldClient};
use payshield::codec::Request;
use payshield::framing::{Framer, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut framer = Framer::new(65535);
    let mut buf = [0_u8; 512];
    loop {
        if let Some(message) = framer.next_frame().unwrap() {
            return Some(message);
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        framer.push(&buf[..n]);
    }
}

/// A fake HSM that answers each command with `answer(command)` (raw bytes after the length
/// prefix; `None` closes the connection).
async fn fake_hsm(answer: fn(&[u8]) -> Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                while let Some(message) = read_message(&mut stream).await {
                    match answer(&message) {
                        Some(reply) => {
                            let frame = encode_frame(&reply).unwrap();
                            if stream.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    }
                }
            });
        }
    });
    addr
}

fn good_nd(command: &[u8]) -> Vec<u8> {
    let mut reply = command[..4].to_vec();
    reply.extend_from_slice(b"ND000123456789ABCDEF1500-0001");
    reply
}

#[tokio::test]
async fn a_good_answer_decodes() {
    let addr = fake_hsm(|command| Some(good_nd(command))).await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    client.send(&Request::Diagnostics).await.unwrap();
}

#[tokio::test]
async fn a_wrong_header_is_a_protocol_error() {
    let addr = fake_hsm(|_| Some(b"ZZZZND000123456789ABCDEF1500-0001".to_vec())).await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(
        client.send(&Request::Diagnostics).await,
        Err(ClientError::Protocol(_))
    ));
}

#[tokio::test]
async fn a_wrong_response_code_or_garbage_is_a_protocol_error() {
    let addr = fake_hsm(|command| {
        let mut reply = command[..4].to_vec();
        reply.extend_from_slice(b"NP00");
        Some(reply)
    })
    .await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(
        client.send(&Request::Diagnostics).await,
        Err(ClientError::Protocol(_))
    ));
    let addr = fake_hsm(|command| {
        let mut reply = command[..4].to_vec();
        reply.extend_from_slice(b"ND00\xFF");
        Some(reply)
    })
    .await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(matches!(
        client.send(&Request::Diagnostics).await,
        Err(ClientError::Protocol(_))
    ));
}

#[tokio::test]
async fn an_error_code_is_typed() {
    let addr = fake_hsm(|command| {
        let mut reply = command[..4].to_vec();
        reply.extend_from_slice(b"ND13");
        Some(reply)
    })
    .await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    match client.send(&Request::Diagnostics).await {
        Err(ClientError::ErrorCode(code)) => assert_eq!(code.as_text(), "13"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_closed_connection_is_io_and_the_next_request_reconnects() {
    // Closes the connection on every other command it receives.
    let addr = fake_hsm(|command| (command[3] % 2 == 1).then(|| good_nd(command))).await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    // Headers count 0000, 0001, …: the even ones are dropped.
    assert!(matches!(
        client.send(&Request::Diagnostics).await,
        Err(ClientError::Io(_))
    ));
    client.send(&Request::Diagnostics).await.unwrap();
}

#[tokio::test]
async fn an_invalid_request_is_refused_before_sending() {
    let addr = fake_hsm(|command| Some(good_nd(command))).await;
    let client = PayShieldClient::connect(addr, 4, Duration::from_secs(2))
        .await
        .unwrap();
    let bad = Request::Status {
        mode: "x".to_owned(),
    };
    assert!(matches!(
        client.send(&bad).await,
        Err(ClientError::Protocol(_))
    ));
}

#[tokio::test]
async fn connecting_to_nothing_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    assert!(matches!(
        PayShieldClient::connect(addr, 4, Duration::from_secs(2)).await,
        Err(ClientError::Io(_))
    ));
}
