//! What a run leaves behind, for the leak scan: every bus message (a raw NATS subscription on
//! `>`, bodies and headers; every Kafka record of the services' topics), every log line (a
//! JSON `tracing` subscriber writing into a shared buffer: the services run in this process)
//! and every event of every service's log; and [`Needles`], the card data and key values none
//! of them may contain.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// One captured item: where it was seen and its bytes.
#[derive(Clone, Debug)]
pub struct Item {
    /// `nats <subject>`, `kafka <topic>`, `log`, `event <service> <type>`.
    pub source: String,
    /// Everything the item holds (headers and body).
    pub bytes: Vec<u8>,
}

/// The shared buffer of every log line of the test process.
#[derive(Clone, Debug, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// The lines so far.
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().expect("log buffer").clone()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        if std::env::var_os("MPOS_E2E_LOGS").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a JSON log subscriber writing every line — debug and above for
/// the platform, info and above for the libraries under it — into the returned buffer (and to
/// stderr too when `MPOS_E2E_LOGS` is set).
pub fn logs() -> LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = LogBuffer::default();
            let writer = buffer.clone();
            let filter = tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::DEBUG)
                .with_target("sqlx", tracing::Level::INFO)
                .with_target("hyper", tracing::Level::INFO)
                .with_target("hyper_util", tracing::Level::INFO)
                .with_target("h2", tracing::Level::INFO)
                .with_target("rustls", tracing::Level::INFO)
                .with_target("reqwest", tracing::Level::INFO)
                .with_target("async_nats", tracing::Level::INFO)
                .with_target("rdkafka", tracing::Level::INFO)
                .with_target("tower", tracing::Level::INFO);
            let _ = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(move || writer.clone()),
                )
                .with(filter)
                .try_init();
            buffer
        })
        .clone()
}

/// A raw subscription to every subject of a NATS server, recording the messages of one run
/// (its namespace, and the replies to its requests).
#[derive(Debug)]
pub struct NatsCapture {
    messages: Arc<Mutex<Vec<async_nats::Message>>>,
    namespace: String,
    task: tokio::task::JoinHandle<()>,
}

impl NatsCapture {
    /// Subscribes to `>` on `url`; the subscription is in place when this returns.
    pub async fn start(url: &str, namespace: &str) -> Self {
        let client = async_nats::connect(url).await.expect("nats");
        let mut subscriber = client.subscribe(">").await.expect("subscribe");
        client.flush().await.expect("flush");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let recorded = messages.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(message) = subscriber.next().await {
                recorded.lock().expect("nats capture").push(message);
            }
        });
        Self {
            messages,
            namespace: namespace.to_owned(),
            task,
        }
    }

    /// The run's messages so far: subjects naming its namespace (its events, requests and
    /// JetStream API calls on its streams) and the replies to them (other runs on the same
    /// server are left out).
    pub fn items(&self) -> Vec<Item> {
        let messages = self.messages.lock().expect("nats capture").clone();
        let lower = self.namespace.to_ascii_lowercase();
        let ours = |subject: &str| subject.to_ascii_lowercase().contains(&lower);
        let replies: HashSet<String> = messages
            .iter()
            .filter(|message| ours(message.subject.as_str()))
            .filter_map(|message| message.reply.as_ref().map(ToString::to_string))
            .collect();
        messages
            .iter()
            .filter(|message| {
                ours(message.subject.as_str()) || replies.contains(message.subject.as_str())
            })
            .map(|message| {
                let mut bytes = Vec::with_capacity(message.payload.len() + 64);
                if let Some(headers) = &message.headers {
                    for (name, values) in headers.iter() {
                        bytes.extend_from_slice(name.to_string().as_bytes());
                        for value in values {
                            bytes.push(b':');
                            bytes.extend_from_slice(value.as_str().as_bytes());
                        }
                        bytes.push(b'\n');
                    }
                }
                bytes.extend_from_slice(&message.payload);
                Item {
                    source: format!("nats {}", message.subject),
                    bytes,
                }
            })
            .collect()
    }
}

impl Drop for NatsCapture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every record of `services`' Kafka topics on `kafka_url` (with its namespace), read from
/// the start by a fresh consumer until nothing came for `quiet`.
pub async fn kafka_items(kafka_url: &str, services: &[&str], quiet: Duration) -> Vec<Item> {
    let bus = mpos_bus::connect(kafka_url).await.expect("kafka");
    let mut items = Vec::new();
    for service in services {
        let durable = format!("e2e-scan-{}", uuid::Uuid::new_v4().simple());
        let mut stream = bus
            .subscriber
            .subscribe(mpos_bus::SubscribeOptions::new(*service, durable))
            .await
            .expect("subscribe");
        while let Ok(Some(delivery)) = tokio::time::timeout(quiet, stream.next()).await {
            let delivery = delivery.expect("kafka record");
            let envelope = &delivery.envelope;
            let mut bytes = format!(
                "{} {} {} {} {} {} {} {} {}",
                envelope.event_id,
                envelope.tenant_id,
                envelope.aggregate_type,
                envelope.aggregate_id,
                envelope.event_type,
                envelope.service,
                envelope.correlation_id,
                envelope.causation_id,
                envelope.actor,
            )
            .into_bytes();
            bytes.extend_from_slice(&envelope.payload);
            items.push(Item {
                source: format!("kafka {service} {}", envelope.event_type),
                bytes,
            });
            let _ = delivery.ack().await;
        }
    }
    items
}

/// What must not appear: named byte strings.
#[derive(Clone, Debug, Default)]
pub struct Needles(Vec<(String, Vec<u8>)>);

impl Needles {
    /// Adds `text` as it is.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.0.push((name.to_owned(), text.as_bytes().to_vec()));
        self
    }

    /// Adds a hex value in upper and lower case, as raw bytes, and base64 (how JSON carries
    /// bytes).
    pub fn hex(&mut self, name: &str, hex_text: &str) -> &mut Self {
        use base64::Engine as _;
        let bytes = hex::decode(hex_text).expect("hex");
        self.0.push((
            format!("{name} (hex)"),
            hex_text.to_ascii_uppercase().into_bytes(),
        ));
        self.0.push((
            format!("{name} (hex)"),
            hex_text.to_ascii_lowercase().into_bytes(),
        ));
        self.0.push((format!("{name} (raw)"), bytes.clone()));
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            // The leading complete groups of the encoding (at most 16 characters: 12 bytes)
            // stand for those bytes whatever follows, so a value at the start of a longer
            // base64 field is found too.
            let encoded = engine.encode(&bytes);
            let prefix = (bytes.len() / 3 * 4).min(16);
            self.0.push((
                format!("{name} (base64)"),
                encoded.as_bytes()[..prefix].to_vec(),
            ));
        }
        self
    }

    /// The needles found in `haystack`, by name.
    pub fn found_in(&self, haystack: &[u8]) -> Vec<String> {
        let mut found: Vec<String> = self
            .0
            .iter()
            .filter(|(_, needle)| memchr::memmem::find(haystack, needle).is_some())
            .map(|(name, _)| name.clone())
            .collect();
        found.dedup();
        found
    }

    /// Every item containing a needle: `source: names`.
    pub fn leaks(&self, items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|item| {
                let found = self.found_in(&item.bytes);
                (!found.is_empty()).then(|| format!("{}: {}", item.source, found.join(", ")))
            })
            .collect()
    }
}

/// Every event of the logs as items (metadata and the payload's JSON).
pub fn event_items(events: &[(String, mpos_es::StoredEvent)]) -> Vec<Item> {
    events
        .iter()
        .map(|(service, stored)| Item {
            source: format!("event {service} {}", stored.event.event_type),
            bytes: format!(
                "{} {} {} {}",
                stored.event.aggregate_id,
                stored.event.tenant_id,
                stored.event.payload,
                stored.event.metadata
            )
            .into_bytes(),
        })
        .collect()
}
