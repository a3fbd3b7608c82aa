//! The event-sourcing kernel of the mPOS Platform.
//!
//! * [`EventStore`]: one service's log in PostgreSQL (`postgres://`) or SQLite (`sqlite://`),
//!   with optimistic concurrency per aggregate and a gap-safe global position.
//! * [`EventRepository`]: the cqrs-es persistence port on that store (aggregates, snapshots,
//!   upcasters come from cqrs-es).
//! * [`chain`]: the SHA-256 hash chain and Ed25519-signed checkpoints; [`verify()`] names the
//!   first altered, deleted, inserted or reordered event.
//! * [`ProjectionRunner`]: read models with stored checkpoints, rebuilt by replay.
//! * [`OutboxRelay`]: publishes every committed event to a bus at least once.
//! * [`Combiner`]: concurrent commands on one aggregate handled together, in one append.

pub mod chain;
mod codec;
mod combine;
mod command;
mod compare;
mod error;
mod event;
mod outbox;
mod projection;
mod range;
mod repository;
mod schema;
mod session;
mod signer;
mod sqlite_writer;
mod store;
mod tail;
mod verify;

pub use chain::{Checkpoint, EventFields, Tamper};
pub use codec::{EventCodec, ProtoEvent};
pub use combine::Combiner;
pub use command::{command_error, execute, execute_retrying, retry_conflicts, snapshot_framework};
pub use compare::{
    CompareError, Compared, apply_each, compare_read_models, live_at_checkpoints, still,
};
pub use error::StoreError;
pub use event::{
    CommandMetadata, NewEvent, PLATFORM_TENANT, StoredEvent, metadata_keys, now_micros,
};
pub use outbox::{CHECKPOINT_EVERY, OutboxRelay, RelayError};
pub use projection::{
    InOrder, Projection, ProjectionRunner, Replayed, ReplayedReadModel, digest_documents,
};
pub use range::{EventBatch, EventRange, EventView};
pub use repository::{EventRepository, to_serialized, upcast};
pub use session::{Aggregates, Loaded, fold};
pub use signer::ChainSigner;
pub use store::{BackendKind, Document, EventStore, Snapshot};
pub use tail::Horizon;
pub use verify::{VerifyReport, verify, verify_range};

/// The cqrs-es framework over an [`EventRepository`].
pub type Cqrs<A> =
    cqrs_es::CqrsFramework<A, cqrs_es::persist::PersistedEventStore<EventRepository, A>>;
