//! Running commands through cqrs-es the way every service does: one framework per aggregate
//! type over the service's store, and aggregate errors mapped to the shared error codes.

use std::sync::Arc;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use mpos_errors::ServiceError;

use crate::{CommandMetadata, Cqrs, EventRepository, EventStore};

/// A framework for `A` over `store`, snapshotting every `snapshot_every` events.
pub fn snapshot_framework<A>(store: &EventStore, snapshot_every: usize) -> Arc<Cqrs<A>>
where
    A: Aggregate<Services = ()>,
{
    Arc::new(CqrsFramework::new(
        PersistedEventStore::new_snapshot_store(
            EventRepository::new(store.clone()),
            snapshot_every,
        ),
        vec![],
        (),
    ))
}

/// An aggregate's refusal as the aggregate says it; a concurrent change as `conflict`; the
/// store's failures as `unavailable` or (logged) `internal`.
pub fn command_error<E>(error: AggregateError<E>) -> ServiceError
where
    E: Into<ServiceError> + std::error::Error,
{
    match error {
        AggregateError::UserError(error) => error.into(),
        AggregateError::AggregateConflict => {
            ServiceError::conflict("changed concurrently by another request; retry")
        }
        AggregateError::DatabaseConnectionError(error) => {
            ServiceError::unavailable(format!("event store unavailable: {error}"))
        }
        AggregateError::DeserializationError(error) | AggregateError::UnexpectedError(error) => {
            tracing::error!(%error, "command failed");
            ServiceError::internal("unexpected error")
        }
    }
}

/// Runs `command` on the aggregate `aggregate_id`, its events carrying `metadata`.
pub async fn execute<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: CommandMetadata,
) -> Result<(), ServiceError>
where
    A: Aggregate,
    A::Error: Into<ServiceError>,
{
    cqrs.execute_with_metadata(aggregate_id, command, metadata.into_map())
        .await
        .map_err(command_error)
}

/// [`execute`], retried (up to `attempts` times in all) when another writer changed the
/// aggregate meanwhile: the command is decided again on the new state. For commands that are
/// safe to decide again — idempotent ones, and allocations that take the next free value.
pub async fn execute_retrying<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: CommandMetadata,
    attempts: u32,
) -> Result<(), ServiceError>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: Into<ServiceError>,
{
    retry_conflicts(cqrs, aggregate_id, command, metadata, attempts)
        .await
        .map_err(command_error)
}

/// The retry loop of [`execute_retrying`], answering the framework's own error for callers
/// that map it to their own error type.
pub async fn retry_conflicts<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: CommandMetadata,
    attempts: u32,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate,
    A::Command: Clone,
{
    let mut attempt = 1;
    loop {
        match cqrs
            .execute_with_metadata(aggregate_id, command.clone(), metadata.clone().into_map())
            .await
        {
            Err(AggregateError::AggregateConflict) if attempt < attempts => {
                attempt += 1;
                // A short, growing pause lets the other writer finish.
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt) * 2)).await;
            }
            result => return result,
        }
    }
}
