//! The connector over real TCP on 127.0.0.1 against a tiny in-test host: round trips,
//! concurrent exchanges answered out of order, timeouts and late answers, reconnection, echo
//! tests, MACs and framing variants.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use acquirer_link::framing::{Framing, LengthPrefix};
use acquirer_link::{Link, LinkConfig, LinkError, LinkState, MacProvider, SoftMac};
use common::{Reply, answer, approve_all, binary2, handler, spec};
use iso8583::{Message, Mti};
use paycrypto::SecretBytes;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

fn config(addr: &str, framing: Framing) -> LinkConfig {
    let mut config = LinkConfig::new("test-acquirer", addr, spec(), framing);
    config.response_timeout = Duration::from_millis(300);
    config.connect_timeout = Duration::from_millis(500);
    config.reconnect_min = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config.echo_interval = Duration::ZERO;
    config
}

/// A 0200 with STAN, RRN and amount, enough for the in-test host.
fn request(stan: u32, amount: u64) -> Message {
    let mut message = Message::new(Mti::parse("0200").unwrap());
    message.set_text(3, "000000");
    message.set_text(4, &format!("{amount:012}"));
    message.set_text(7, "0102030405");
    message.set_text(11, &format!("{stan:06}"));
    message.set_text(37, &format!("RRN{stan:09}"));
    message.set_text(41, "TERM0001");
    message.set_text(49, "978");
    message
}

async fn connected(config: LinkConfig) -> (Link, CancellationToken) {
    let cancel = CancellationToken::new();
    let link = Link::start(config, cancel.clone());
    assert!(
        link.wait_for(LinkState::Connected, WAIT).await,
        "link did not connect"
    );
    (link, cancel)
}

fn mac_key() -> Arc<dyn MacProvider> {
    Arc::new(
        SoftMac::new(SecretBytes::from_hex("mac", "7CA110454A1A6E570131D9619DC1376E").unwrap())
            .unwrap(),
    )
}

#[tokio::test]
async fn exchange_round_trip() {
    let host = common::start(binary2(), None, approve_all()).await;
    let (link, cancel) = connected(config(&host.addr, binary2())).await;
    let answer = link.exchange(request(1, 1_000)).await.unwrap();
    assert_eq!(answer.mti().to_string(), "0210");
    assert_eq!(answer.get_text(11), Some("000001"));
    assert_eq!(answer.get_text(39), Some("00"));
    assert_eq!(host.received_mtis(), vec!["0200"]);
    cancel.cancel();
    assert!(link.wait_for(LinkState::Down, WAIT).await);
}

#[tokio::test]
async fn concurrent_exchanges_are_matched_when_answered_out_of_order() {
    // The first request is answered last.
    let host = common::start(
        binary2(),
        None,
        handler(|message| async move {
            let amount: u64 = message.get_text(4).unwrap().parse().unwrap();
            Reply::Answer(
                Duration::from_millis(200 - amount * 10),
                answer(&message, "00"),
            )
        }),
    )
    .await;
    let (link, cancel) = connected(config(&host.addr, binary2())).await;
    let exchanges = (1..=16_u32).map(|stan| {
        let link = link.clone();
        tokio::spawn(async move { (stan, link.exchange(request(stan, u64::from(stan))).await) })
    });
    for exchange in futures_join(exchanges).await {
        let (stan, answer) = exchange;
        let answer = answer.unwrap();
        assert_eq!(answer.get_text(11).unwrap(), format!("{stan:06}"));
        assert_eq!(answer.get_text(4).unwrap(), format!("{:012}", stan));
        assert_eq!(answer.get_text(37).unwrap(), format!("RRN{stan:09}"));
    }
    assert_eq!(host.connections.load(Ordering::SeqCst), 1);
    cancel.cancel();
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn an_answer_must_match_stan_and_rrn() {
    // The host answers with the right STAN but another RRN: not the answer.
    let host = common::start(
        binary2(),
        None,
        handler(|message| async move {
            let mut wrong = answer(&message, "00");
            wrong.set_text(37, "OTHER0000000");
            Reply::Answer(Duration::ZERO, wrong)
        }),
    )
    .await;
    let (link, cancel) = connected(config(&host.addr, binary2())).await;
    assert!(matches!(
        link.exchange(request(7, 1)).await,
        Err(LinkError::Timeout)
    ));
    cancel.cancel();
}

#[tokio::test]
async fn no_answer_times_out() {
    let host = common::start(binary2(), None, handler(|_| async { Reply::Silence })).await;
    let (link, cancel) = connected(config(&host.addr, binary2())).await;
    let started = std::time::Instant::now();
    let result = link.exchange(request(1, 1)).await;
    assert!(matches!(result, Err(LinkError::Timeout)), "{result:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(result.unwrap_err().code(), mpos_errors::ErrorCode::Timeout);
    cancel.cancel();
}

#[tokio::test]
async fn a_late_answer_is_dropped() {
    // STAN 1 is answered after 600 ms (the link gave up at 300 ms), STAN 2 after 400 ms of
    // its own: the late answer arrives while STAN 2 waits and must not be taken for it.
    let host = common::start(
        binary2(),
        None,
        handler(|message| async move {
            let delay = if message.get_text(11) == Some("000001") {
                600
            } else {
                250
            };
            Reply::Answer(Duration::from_millis(delay), answer(&message, "00"))
        }),
    )
    .await;
    let (link, cancel) = connected(config(&host.addr, binary2())).await;
    assert!(matches!(
        link.exchange(request(1, 1)).await,
        Err(LinkError::Timeout)
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = link.exchange(request(2, 2)).await.unwrap();
    assert_eq!(second.get_text(11), Some("000002"));
    // The late answer did not break the connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(link.state(), LinkState::Connected);
    assert_eq!(
        link.exchange(request(3, 3)).await.unwrap().get_text(11),
        Some("000003")
    );
    assert_eq!(host.connections.load(Ordering::SeqCst), 1);
    cancel.cancel();
}

#[tokio::test]
async fn reconnects_after_the_host_drops_the_connection() {
    let host = common::start(
        binary2(),
        None,
        handler(|message| async move {
            if message.get_text(11) == Some("000001") {
                Reply::Hangup
            } else {
                Reply::Answer(Duration::ZERO, answer(&message, "00"))
            }
        }),
    )
    .await;
    let (link, cancel) = connected(config(&host.addr, binary2())).await;
    // Written, then the connection dropped: the outcome is unknown.
    assert!(matches!(
        link.exchange(request(1, 1)).await,
        Err(LinkError::Timeout)
    ));
    let mut answer = None;
    for _ in 0..100 {
        if link.wait_for(LinkState::Connected, WAIT).await
            && let Ok(message) = link.exchange(request(2, 2)).await
        {
            answer = Some(message);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answer.unwrap().get_text(11), Some("000002"));
    assert_eq!(host.connections.load(Ordering::SeqCst), 2);
    cancel.cancel();
}

#[tokio::test]
async fn not_connected_is_unavailable_at_once() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let cancel = CancellationToken::new();
    let link = Link::start(config(&addr, binary2()), cancel.clone());
    assert!(link.wait_for(LinkState::Down, WAIT).await);
    let started = std::time::Instant::now();
    let result = link.exchange(request(1, 1)).await;
    assert!(
        matches!(result, Err(LinkError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    cancel.cancel();
}

#[tokio::test]
async fn no_queue_beyond_max_in_flight() {
    let host = common::start(binary2(), None, handler(|_| async { Reply::Silence })).await;
    let mut config = config(&host.addr, binary2());
    config.max_in_flight = 2;
    let (link, cancel) = connected(config).await;
    let waiting: Vec<_> = (1..=2)
        .map(|stan| {
            let link = link.clone();
            tokio::spawn(async move { link.exchange(request(stan, 1)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        link.exchange(request(3, 1)).await,
        Err(LinkError::Unavailable(_))
    ));
    for handle in waiting {
        assert!(matches!(handle.await.unwrap(), Err(LinkError::Timeout)));
    }
    cancel.cancel();
}

#[tokio::test]
async fn echo_keeps_an_idle_link_up() {
    let host = common::start(binary2(), None, approve_all()).await;
    let mut config = config(&host.addr, binary2());
    config.echo_interval = Duration::from_millis(100);
    let (link, cancel) = connected(config).await;
    tokio::time::sleep(Duration::from_millis(550)).await;
    let echoes = host
        .received_mtis()
        .iter()
        .filter(|mti| *mti == "0800")
        .count();
    assert!(echoes >= 3, "{echoes} echoes");
    assert_eq!(link.state(), LinkState::Connected);
    assert_eq!(host.connections.load(Ordering::SeqCst), 1);
    cancel.cancel();
}

#[tokio::test]
async fn a_silent_host_is_detected_by_the_echo() {
    // Echoes are never answered: after the echo's timeout the link closes the connection and
    // connects again.
    let host = common::start(
        binary2(),
        None,
        handler(|message| async move {
            if message.mti().to_string() == "0800" {
                Reply::Silence
            } else {
                Reply::Answer(Duration::ZERO, answer(&message, "00"))
            }
        }),
    )
    .await;
    let mut config = config(&host.addr, binary2());
    config.echo_interval = Duration::from_millis(100);
    let (_link, cancel) = connected(config).await;
    let mut reconnected = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if host.connections.load(Ordering::SeqCst) >= 2 {
            reconnected = true;
            break;
        }
    }
    assert!(reconnected, "the dead connection was not replaced");
    cancel.cancel();
}

#[tokio::test]
async fn macs_are_added_and_checked() {
    let host = common::start(binary2(), Some(mac_key()), approve_all()).await;
    let (link, cancel) = connected(config(&host.addr, binary2()).with_mac(mac_key())).await;
    let answer = link.exchange(request(1, 1)).await.unwrap();
    assert_eq!(answer.get_text(39), Some("00"));
    assert_eq!(answer.get_bytes(64).map(<[u8]>::len), Some(8));
    cancel.cancel();
}

#[tokio::test]
async fn a_bad_mac_is_refused() {
    let other: Arc<dyn MacProvider> = Arc::new(
        SoftMac::new(SecretBytes::from_hex("mac", "0123456789ABCDEFFEDCBA9876543210").unwrap())
            .unwrap(),
    );
    let host = common::start(binary2(), Some(other), approve_all()).await;
    let (link, cancel) = connected(config(&host.addr, binary2()).with_mac(mac_key())).await;
    assert!(matches!(
        link.exchange(request(1, 1)).await,
        Err(LinkError::BadMac)
    ));
    // A missing MAC too.
    let bare = common::start(binary2(), None, approve_all()).await;
    let (bare_link, bare_cancel) =
        connected(config(&bare.addr, binary2()).with_mac(mac_key())).await;
    assert!(matches!(
        bare_link.exchange(request(1, 1)).await,
        Err(LinkError::BadMac)
    ));
    cancel.cancel();
    bare_cancel.cancel();
}

#[tokio::test]
async fn framing_variants() {
    let tpdu = Framing {
        prefix: LengthPrefix::Ascii4,
        header: hex::decode("6000000000").unwrap(),
    };
    for framing in [binary2(), tpdu] {
        let host = common::start(framing.clone(), Some(mac_key()), approve_all()).await;
        let (link, cancel) =
            connected(config(&host.addr, framing.clone()).with_mac(mac_key())).await;
        for stan in 1..=3 {
            let answer = link.exchange(request(stan, 5)).await.unwrap();
            assert_eq!(
                answer.get_text(11).unwrap(),
                format!("{stan:06}"),
                "{framing:?}"
            );
        }
        cancel.cancel();
    }
}
