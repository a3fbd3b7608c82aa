//! Following another service's event stream: [`follow`] runs a projection of the stream's
//! events into documents with a checkpoint, from the bus or (in the all-in-one `mposd`) from
//! the service's own log, and hands each event's work to a [`follow::Follower`]. [`tms`] holds
//! terminal-management's documents (tenants, API keys, manufacturer CAs, terminals) that
//! several services keep, [`estate`] the estate behind every terminal (its merchant, store
//! and terminal group, its effective risk parameters and their version, as terminal-management
//! computes them) for the services that act for a terminal, and [`auth`] the tenant/operator
//! principal of admin APIs, checked against those documents.

pub mod auth;
pub mod estate;
pub mod follow;
pub mod tms;

#[cfg(test)]
mod testing;
