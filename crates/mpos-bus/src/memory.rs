//! The in-process broker: one append-only log per service, durable consumers by name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::{
    Acker, Bus, BusError, Delivery, EventEnvelope, EventPublisher, EventStream, EventSubscriber,
    FollowFrom, FollowOptions, Message, RequestHandler, RequestReply, ServeHandle,
    SubscribeOptions, followed, validate_durable_name,
};

/// Process-wide registry: the same name yields the same broker.
fn registry() -> &'static Mutex<HashMap<String, Arc<Broker>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Broker>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (every update is a single step).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn connect(name: &str, namespace: Option<&str>) -> Bus {
    let key = match namespace {
        Some(namespace) => format!("{name}?namespace={namespace}"),
        None => name.to_owned(),
    };
    let broker = lock(registry())
        .entry(key.clone())
        .or_insert_with(|| {
            tracing::debug!(broker = %key, "created in-memory broker");
            Arc::new(Broker::new(key))
        })
        .clone();
    let bus = MemoryBus { broker };
    Bus {
        publisher: Arc::new(bus.clone()),
        subscriber: Arc::new(bus.clone()),
        requests: Some(Arc::new(bus)),
    }
}

struct Broker {
    name: String,
    logs: Mutex<HashMap<String, Arc<Log>>>,
    handlers: Mutex<HashMap<String, Vec<Server>>>,
    next_server: AtomicU64,
    round_robin: AtomicUsize,
}

struct Server {
    id: u64,
    queue_group: String,
    handler: Arc<dyn RequestHandler>,
}

/// One service's event stream.
#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    appended: Notify,
}

#[derive(Default)]
struct LogState {
    events: Vec<EventEnvelope>,
    ids: HashSet<String>,
    consumers: HashMap<String, Arc<Mutex<Consumer>>>,
}

/// A durable consumer: everything below `floor` and every index in `acked` is acknowledged.
#[derive(Default)]
struct Consumer {
    floor: usize,
    acked: BTreeSet<usize>,
}

impl Consumer {
    fn ack(&mut self, index: usize) {
        if index >= self.floor {
            self.acked.insert(index);
        }
        while self.acked.remove(&self.floor) {
            self.floor += 1;
        }
    }

    fn is_acked(&self, index: usize) -> bool {
        index < self.floor || self.acked.contains(&index)
    }
}

impl Broker {
    fn new(name: String) -> Self {
        Self {
            name,
            logs: Mutex::default(),
            handlers: Mutex::default(),
            next_server: AtomicU64::new(1),
            round_robin: AtomicUsize::new(0),
        }
    }

    fn log(&self, service: &str) -> Arc<Log> {
        lock(&self.logs)
            .entry(service.to_owned())
            .or_default()
            .clone()
    }
}

#[derive(Clone)]
struct MemoryBus {
    broker: Arc<Broker>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("broker", &self.broker.name)
            .finish()
    }
}

#[async_trait::async_trait]
impl EventPublisher for MemoryBus {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        let mut touched: Vec<Arc<Log>> = Vec::new();
        for envelope in events {
            let log = self.broker.log(&envelope.service);
            let appended = {
                let mut state = lock(&log.state);
                if state.ids.insert(envelope.event_id.clone()) {
                    state.events.push(envelope.clone());
                    true
                } else {
                    false
                }
            };
            if appended {
                tracing::trace!(service = %envelope.service, event_id = %envelope.event_id, "appended event");
                if !touched.iter().any(|seen| Arc::ptr_eq(seen, &log)) {
                    touched.push(log);
                }
            } else {
                tracing::debug!(service = %envelope.service, event_id = %envelope.event_id, "dropped duplicate event");
            }
        }
        for log in touched {
            log.appended.notify_waiters();
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventSubscriber for MemoryBus {
    async fn subscribe(&self, options: SubscribeOptions) -> Result<EventStream, BusError> {
        validate_durable_name(&options.durable_name)?;
        let log = self.broker.log(&options.service);
        let consumer = lock(&log.state)
            .consumers
            .entry(options.durable_name.clone())
            .or_default()
            .clone();
        let cursor = lock(&consumer).floor;
        tracing::debug!(service = %options.service, durable = %options.durable_name, "subscribed");
        Ok(Subscription {
            log,
            consumer: Some(consumer),
            options,
            cursor,
        }
        .into_stream())
    }

    async fn follow(&self, options: FollowOptions) -> Result<EventStream, BusError> {
        let log = self.broker.log(&options.service);
        let cursor = {
            let state = lock(&log.state);
            match options.from {
                FollowFrom::Start => 0,
                FollowFrom::Now => state.events.len(),
                FollowFrom::Offset(offset) => usize::try_from(offset)
                    .map_or(state.events.len(), |offset| offset.min(state.events.len())),
                // The first event that occurred from then (the log is in publish order).
                FollowFrom::Time(micros) => state
                    .events
                    .iter()
                    .position(|event| {
                        event.occurred_at.as_ref().is_some_and(|at| {
                            at.seconds
                                .saturating_mul(1_000_000)
                                .saturating_add(i64::from(at.nanos) / 1_000)
                                >= micros
                        })
                    })
                    .unwrap_or(state.events.len()),
            }
        };
        Ok(Subscription {
            log,
            consumer: None,
            options: options.filters(),
            cursor,
        }
        .into_stream())
    }
}

/// A reader of a log: a durable consumer's (acknowledgements recorded in `consumer`) or a
/// follower's (`None`: a cursor of its own, nothing recorded).
struct Subscription {
    log: Arc<Log>,
    consumer: Option<Arc<Mutex<Consumer>>>,
    options: SubscribeOptions,
    cursor: usize,
}

impl Subscription {
    fn into_stream(self) -> EventStream {
        EventStream::new(futures::stream::unfold(
            self,
            |mut subscription| async move {
                let delivery = subscription.next().await;
                Some((Ok(delivery), subscription))
            },
        ))
    }

    async fn next(&mut self) -> Delivery {
        let log = self.log.clone();
        loop {
            let appended = log.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(delivery) = self.scan() {
                return delivery;
            }
            appended.await;
        }
    }

    /// The next unacknowledged, matching event at or after the cursor.
    fn scan(&mut self) -> Option<Delivery> {
        let state = lock(&self.log.state);
        let mut consumer = self.consumer.as_ref().map(|consumer| lock(consumer));
        while let Some(envelope) = state.events.get(self.cursor) {
            let index = self.cursor;
            self.cursor += 1;
            if consumer
                .as_ref()
                .is_some_and(|consumer| consumer.is_acked(index))
            {
                continue;
            }
            if !self.options.matches(envelope) {
                // Filtered out events are never delivered to this durable consumer.
                if let Some(consumer) = consumer.as_mut() {
                    consumer.ack(index);
                }
                continue;
            }
            return Some(match &self.consumer {
                Some(consumer) => {
                    let acker = MemoryAcker {
                        consumer: consumer.clone(),
                        index,
                    };
                    Delivery::new(envelope.clone(), Box::new(acker))
                }
                None => followed(envelope.clone()),
            });
        }
        None
    }
}

struct MemoryAcker {
    consumer: Arc<Mutex<Consumer>>,
    index: usize,
}

impl fmt::Debug for MemoryAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAcker")
            .field("index", &self.index)
            .finish()
    }
}

impl Acker for MemoryAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        lock(&self.consumer).ack(self.index);
        futures::future::ready(Ok(())).boxed()
    }
}

#[async_trait::async_trait]
impl RequestReply for MemoryBus {
    async fn request(
        &self,
        subject: &str,
        request: Message,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let handler = {
            let handlers = lock(&self.broker.handlers);
            let servers = handlers.get(subject).filter(|servers| !servers.is_empty());
            let Some(servers) = servers else {
                return Err(BusError::Unavailable(format!(
                    "no responder for subject {subject:?}"
                )));
            };
            // Every queue group receives the request; only one reply is awaited, so pick one
            // server round-robin.
            let turn = self.broker.round_robin.fetch_add(1, Ordering::Relaxed);
            servers[turn % servers.len()].handler.clone()
        };
        match tokio::time::timeout(timeout, handler.handle(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(BusError::Rejected(error)),
            Err(_) => Err(BusError::Timeout(format!(
                "no reply on subject {subject:?} within {timeout:?}"
            ))),
        }
    }

    async fn serve(
        &self,
        subject: &str,
        queue_group: &str,
        handler: Arc<dyn RequestHandler>,
    ) -> Result<ServeHandle, BusError> {
        let id = self.broker.next_server.fetch_add(1, Ordering::Relaxed);
        lock(&self.broker.handlers)
            .entry(subject.to_owned())
            .or_default()
            .push(Server {
                id,
                queue_group: queue_group.to_owned(),
                handler,
            });
        tracing::debug!(subject = %subject, queue_group = %queue_group, "serving requests");
        let broker = self.broker.clone();
        let subject = subject.to_owned();
        Ok(ServeHandle::new(
            move || {
                let mut handlers = lock(&broker.handlers);
                if let Some(servers) = handlers.get_mut(&subject) {
                    servers.retain(|server| server.id != id);
                    if servers.is_empty() {
                        handlers.remove(&subject);
                    }
                }
                tracing::debug!(subject = %subject, "stopped serving requests");
            },
            None,
        ))
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.id)
            .field("queue_group", &self.queue_group)
            .finish()
    }
}
