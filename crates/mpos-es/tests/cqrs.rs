//! cqrs-es aggregates on the kernel's repository: commands, optimistic concurrency,
//! snapshots and upcasting, on PostgreSQL and SQLite.

mod common;

use common::each_backend;
use cqrs_es::persist::{PersistedEventStore, SemanticVersionEventUpcaster};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore as _};
use mpos_es::{CommandMetadata, EventRepository};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    opened: bool,
    total: u64,
}

#[derive(Clone, Debug)]
enum CounterCommand {
    Open,
    Add(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Opened,
    Added { amount: u64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Opened => "mpos.test.v1.Opened".into(),
            Self::Added { .. } => "mpos.test.v1.Added".into(),
        }
    }
    fn event_version(&self) -> String {
        "2.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CounterError(String);

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            CounterCommand::Open if self.opened => return Err(CounterError("already open".into())),
            CounterCommand::Open => sink.write(CounterEvent::Opened, self).await,
            CounterCommand::Add(_) if !self.opened => return Err(CounterError("not open".into())),
            CounterCommand::Add(amount) => sink.write(CounterEvent::Added { amount }, self).await,
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CounterEvent::Opened => self.opened = true,
            CounterEvent::Added { amount } => self.total += amount,
        }
    }
}

fn metadata() -> std::collections::HashMap<String, String> {
    CommandMetadata {
        tenant_id: "acme".into(),
        correlation_id: "corr-1".into(),
        causation_id: String::new(),
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        actor: "operator:alice".into(),
    }
    .into_map()
}

#[tokio::test]
async fn commands_become_events_with_their_metadata() {
    for (backend, test) in each_backend("svc").await {
        let store = PersistedEventStore::<_, Counter>::new_event_store(EventRepository::new(
            test.store.clone(),
        ));
        let cqrs = CqrsFramework::new(store, vec![], ());
        cqrs.execute_with_metadata("c1", CounterCommand::Open, metadata())
            .await
            .expect("open");
        cqrs.execute_with_metadata("c1", CounterCommand::Add(5), metadata())
            .await
            .expect("add");
        match cqrs
            .execute_with_metadata("c1", CounterCommand::Open, metadata())
            .await
        {
            Err(AggregateError::UserError(CounterError(message))) => {
                assert_eq!(message, "already open")
            }
            other => panic!("{backend}: {other:?}"),
        }
        let events = test.store.read_after(0, 10).await.expect("read");
        assert_eq!(
            events.len(),
            2,
            "{backend}: a rejected command writes nothing"
        );
        assert_eq!(events[1].event.event_type, "mpos.test.v1.Added");
        assert_eq!(events[1].event.event_version, "2.0");
        assert_eq!(events[1].event.tenant_id, "acme");
        assert_eq!(events[1].metadata().actor, "operator:alice");
        assert_eq!(events[1].metadata().correlation_id, "corr-1");
        assert_eq!(events[1].event.payload, r#"{"Added":{"amount":5}}"#);
    }
}

#[tokio::test]
async fn a_stale_aggregate_loses_with_a_conflict() {
    for (backend, test) in each_backend("svc").await {
        let repository = EventRepository::new(test.store.clone());
        let store = PersistedEventStore::<_, Counter>::new_event_store(repository.clone());
        let cqrs = CqrsFramework::new(store, vec![], ());
        cqrs.execute("c1", CounterCommand::Open)
            .await
            .expect("open");
        // Two writers load the same version, both decide, the second commit must fail.
        let first = PersistedEventStore::<_, Counter>::new_event_store(repository.clone());
        let second = PersistedEventStore::<_, Counter>::new_event_store(repository);
        let context_one = first.load_aggregate("c1").await.expect("load");
        let context_two = second.load_aggregate("c1").await.expect("load");
        first
            .commit(
                vec![CounterEvent::Added { amount: 1 }],
                context_one,
                Default::default(),
            )
            .await
            .expect("first commit");
        match second
            .commit(
                vec![CounterEvent::Added { amount: 2 }],
                context_two,
                Default::default(),
            )
            .await
        {
            Err(AggregateError::AggregateConflict) => {}
            other => panic!("{backend}: expected a conflict, got {other:?}"),
        }
        assert_eq!(
            test.store.read_after(0, 10).await.expect("read").len(),
            2,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn snapshots_are_taken_and_used() {
    for (backend, test) in each_backend("svc").await {
        let repository = EventRepository::new(test.store.clone());
        let store = PersistedEventStore::<_, Counter>::new_snapshot_store(repository.clone(), 2);
        let cqrs = CqrsFramework::new(store, vec![], ());
        cqrs.execute("c1", CounterCommand::Open)
            .await
            .expect("open");
        for amount in 1..=5 {
            cqrs.execute("c1", CounterCommand::Add(amount))
                .await
                .expect("add");
        }
        let snapshot = test
            .store
            .snapshot("counter", "c1")
            .await
            .expect("snapshot")
            .expect("taken");
        assert!(snapshot.last_sequence >= 4, "{backend}: {snapshot:?}");
        let loaded: Counter = serde_json::from_str(&snapshot.payload).expect("state");
        assert!(loaded.opened, "{backend}");
        // Loading through the snapshot plus later events gives the full state.
        let store = PersistedEventStore::<_, Counter>::new_snapshot_store(repository, 2);
        let mut context = store.load_aggregate("c1").await.expect("load");
        use cqrs_es::AggregateContext;
        assert_eq!(context.aggregate().total, 15, "{backend}");
    }
}

#[tokio::test]
async fn old_event_versions_are_upcast_on_load() {
    for (backend, test) in each_backend("svc").await {
        // Version 1.0 of Added called its field "by".
        let mut opened = common::new_event("c1", 1, serde_json::json!("Opened"));
        opened.event_type = "mpos.test.v1.Opened".into();
        let mut old = common::new_event("c1", 2, serde_json::json!({"Added": {"by": 7}}));
        old.event_type = "mpos.test.v1.Added".into();
        test.store
            .append(vec![opened, old], None)
            .await
            .expect("append old events");

        let upcaster = SemanticVersionEventUpcaster::new(
            "mpos.test.v1.Added",
            "2.0",
            Box::new(|payload| {
                let by = payload["Added"]["by"].clone();
                serde_json::json!({"Added": {"amount": by}})
            }),
        );
        let store = PersistedEventStore::<_, Counter>::new_event_store(EventRepository::new(
            test.store.clone(),
        ))
        .with_upcasters(vec![Box::new(upcaster)]);
        let events = store.load_events("c1").await.expect("load");
        assert_eq!(
            events[1].payload,
            CounterEvent::Added { amount: 7 },
            "{backend}"
        );
        // Without the upcaster the old payload does not deserialize: a typed error, no panic.
        let plain = PersistedEventStore::<_, Counter>::new_event_store(EventRepository::new(
            test.store.clone(),
        ));
        assert!(plain.load_events("c1").await.is_err(), "{backend}");
    }
}

fn command_metadata() -> CommandMetadata {
    CommandMetadata::from_map(&metadata())
}

/// Adds `amount` to the counter `held` holds.
async fn add(
    held: &mpos_es::Aggregates<Counter>,
    counter: &mut mpos_es::Loaded<Counter>,
    amount: u64,
) {
    held.execute(counter, CounterCommand::Add(amount), command_metadata())
        .await
        .expect("add");
}

/// An aggregate loaded once and changed by several commands (`mpos_es::Aggregates`): the
/// state it holds is the state the log yields, snapshots included, and a write by someone
/// else since the load is refused without changing what is held.
#[tokio::test]
async fn an_aggregate_held_by_a_request_changes_like_the_log_and_refuses_a_stale_write() {
    for (backend, test) in each_backend("svc").await {
        // Snapshots every 3 events, so that the commands below cross one.
        let held = mpos_es::Aggregates::<Counter>::new(&test.store, 3, ());
        let mut counter = held.load("c1").await.expect("load");
        assert_eq!(
            (counter.state(), counter.sequence()),
            (&Counter::default(), 0)
        );
        held.execute(&mut counter, CounterCommand::Open, command_metadata())
            .await
            .expect("open");
        for amount in [2, 3, 4] {
            add(&held, &mut counter, amount).await;
        }
        let expected = Counter {
            opened: true,
            total: 9,
        };
        assert_eq!(counter.state(), &expected, "{backend}");
        assert_eq!(counter.sequence(), 4, "{backend}");
        // The log (snapshot and events) yields the same state.
        let reloaded = held.load("c1").await.expect("reload");
        assert_eq!(reloaded.state(), &expected, "{backend}");
        assert_eq!(reloaded.sequence(), 4, "{backend}");
        let snapshot = test
            .store
            .snapshot(Counter::TYPE, "c1")
            .await
            .expect("snapshot")
            .expect("a snapshot was taken");
        assert_eq!(snapshot.last_sequence, 3, "{backend}");
        let read: Counter = serde_json::from_str(&snapshot.payload).expect("snapshot payload");
        assert_eq!(
            read,
            Counter {
                opened: true,
                total: 5
            },
            "{backend}"
        );

        // A refused command changes nothing.
        match held
            .execute(&mut counter, CounterCommand::Open, command_metadata())
            .await
        {
            Err(AggregateError::UserError(_)) => {}
            other => panic!("{backend}: expected the aggregate's refusal, got {other:?}"),
        }
        assert_eq!(counter.sequence(), 4, "{backend}");

        // Someone else adds meanwhile: the held state is stale and its write is refused.
        let mut other = held.load("c1").await.expect("load");
        held.execute(&mut other, CounterCommand::Add(10), command_metadata())
            .await
            .expect("the other writer");
        match held
            .execute(&mut counter, CounterCommand::Add(1), command_metadata())
            .await
        {
            Err(AggregateError::AggregateConflict) => {}
            other => panic!("{backend}: expected a conflict, got {other:?}"),
        }
        assert_eq!(
            counter.state(),
            &expected,
            "{backend}: unchanged after the conflict"
        );
        let log = held.load("c1").await.expect("reload");
        assert_eq!(
            log.state().total,
            19,
            "{backend}: the stale write left no trace"
        );
        assert_eq!(log.sequence(), 5, "{backend}");
        // Decided again on the reloaded state, it goes through.
        held.execute_retrying(&mut counter, CounterCommand::Add(1), command_metadata(), 3)
            .await
            .expect("decided again");
        assert_eq!(counter.state().total, 20, "{backend}");
        assert_eq!(counter.sequence(), 6, "{backend}");
        assert_eq!(
            held.load("c1").await.expect("reload").state().total,
            20,
            "{backend}"
        );
    }
}

/// `Aggregates::load` reads the snapshot and the events after it together; what it yields
/// is what cqrs-es's own `load_aggregate` yields at every length of the stream, snapshots
/// crossed, and a snapshot that no longer reads is passed over for the events.
#[tokio::test]
async fn a_held_load_equals_cqrs_es_own_load() {
    for (backend, test) in each_backend("svc").await {
        let held = mpos_es::Aggregates::<Counter>::new(&test.store, 3, ());
        let framework = PersistedEventStore::<_, Counter>::new_snapshot_store(
            EventRepository::new(test.store.clone()),
            3,
        );
        let mut counter = held.load("c2").await.expect("load");
        held.execute(&mut counter, CounterCommand::Open, command_metadata())
            .await
            .expect("open");
        for amount in 1..=8 {
            add(&held, &mut counter, amount).await;
            let mine = held.load("c2").await.expect("held load");
            let theirs = framework.load_aggregate("c2").await.expect("cqrs-es load");
            assert_eq!(mine.state(), &theirs.aggregate, "{backend} after +{amount}");
            assert_eq!(mine.sequence(), theirs.current_sequence, "{backend}");
            assert_eq!(mine.state(), counter.state(), "{backend}");
        }
        assert_eq!(counter.state().total, 36, "{backend}");
        assert!(
            test.store
                .snapshot(Counter::TYPE, "c2")
                .await
                .expect("snapshot")
                .is_some(),
            "{backend}: a snapshot was crossed"
        );
        // A snapshot whose shape changed (it no longer deserializes): every event is folded.
        test.execute(
            "UPDATE es_snapshots SET payload = '{\"shape\": \"changed\"}' WHERE aggregate_id = 'c2'",
        )
        .await;
        let mine = held.load("c2").await.expect("load past the snapshot");
        assert_eq!(mine.state().total, 36, "{backend}");
        assert_eq!(mine.sequence(), 9, "{backend}");
        // And an aggregate with no events is the default state.
        let none = held.load("never").await.expect("load");
        assert_eq!((none.state(), none.sequence()), (&Counter::default(), 0));
    }
}
