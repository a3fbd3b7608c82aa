//! The acquirer links: one [`Link`] per (tenant, acquirer), built from the acquirer's
//! settings when first used (the builtin spec by name, framing from `length_prefix` and
//! `header_hex`, field 64 MACs through the hsm-proxy under the tenant's `zone_mac_key` when
//! one is set, the response timeout and echo interval), rebuilt when the settings it was
//! built from are no longer the current ones, and stopped when the acquirer is removed or
//! the service stops.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use acquirer_link::framing::{Framing, LengthPrefix};
use acquirer_link::{HsmMac, Link, LinkConfig, LinkState};
use hsm_proxy::rpc::HsmClient;
use iso8583::Spec;
use mpos_errors::ServiceError;
use mpos_proto::routing as pb;
use tokio_util::sync::CancellationToken;

/// How links reconnect (the same for every link of the process).
#[derive(Clone, Copy, Debug)]
pub struct LinkTuning {
    /// The connect timeout.
    pub connect_timeout: Duration,
    /// The first pause before reconnecting.
    pub reconnect_min: Duration,
    /// The longest pause between reconnections.
    pub reconnect_max: Duration,
}

impl Default for LinkTuning {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
        }
    }
}

struct Entry {
    settings: pb::AcquirerSettings,
    link: Link,
    cancel: CancellationToken,
    /// The next STAN of the link.
    stan: u32,
}

/// The links of every tenant, by (tenant, acquirer).
pub struct LinkRegistry {
    links: Mutex<HashMap<(String, String), Entry>>,
    hsm: HsmClient,
    tuning: LinkTuning,
    cancel: CancellationToken,
}

impl std::fmt::Debug for LinkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkRegistry")
            .field("links", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// A STAN seeded from the clock: the seconds of the UTC day times ten, so that a restart
/// later in the day starts above the numbers used before it unless more than ten requests
/// a second went over the link in between (STANs must be unique per link per day).
fn seed_stan() -> u32 {
    let seconds = chrono::Utc::now().timestamp().rem_euclid(86_400);
    u32::try_from(seconds * 10 % 999_999).unwrap_or(0) + 1
}

/// The link's configuration from an acquirer's settings.
pub fn link_config(
    tenant_id: &str,
    acquirer_id: &str,
    settings: &pb::AcquirerSettings,
    hsm: &HsmClient,
    tuning: LinkTuning,
) -> Result<LinkConfig, ServiceError> {
    let spec = Spec::builtin(&settings.spec).map_err(|error| {
        ServiceError::bad_request(format!("acquirer {acquirer_id}: spec: {error}"))
    })?;
    let prefix = LengthPrefix::from_str(&settings.length_prefix).map_err(|error| {
        ServiceError::bad_request(format!("acquirer {acquirer_id}: length_prefix: {error}"))
    })?;
    let header = hex::decode(&settings.header_hex).map_err(|_| {
        ServiceError::bad_request(format!("acquirer {acquirer_id}: header_hex: not hex"))
    })?;
    let mut config = LinkConfig::new(
        format!("{tenant_id}/{acquirer_id}"),
        settings.address.clone(),
        Arc::new(spec),
        Framing { prefix, header },
    );
    config.response_timeout = Duration::from_millis(u64::from(settings.response_timeout_ms.max(1)));
    config.echo_interval = Duration::from_secs(u64::from(settings.echo_interval_seconds));
    config.connect_timeout = tuning.connect_timeout;
    config.reconnect_min = tuning.reconnect_min;
    config.reconnect_max = tuning.reconnect_max;
    if !settings.zone_mac_key.is_empty() {
        config = config.with_mac(Arc::new(HsmMac::new(
            hsm.clone(),
            tenant_id,
            settings.zone_mac_key.clone(),
        )));
    }
    Ok(config)
}

impl LinkRegistry {
    /// An empty registry; every link stops when `cancel` fires.
    pub fn new(hsm: HsmClient, tuning: LinkTuning, cancel: CancellationToken) -> Self {
        Self {
            links: Mutex::new(HashMap::new()),
            hsm,
            tuning,
            cancel,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The link of an acquirer with `settings`: the running one when it was built from the
    /// same settings, else a new one (the old one is stopped), given up to the connect
    /// timeout to connect (a link that was up and is down is not waited for: the caller
    /// gets `unavailable` at once and routes elsewhere).
    pub async fn link(
        &self,
        tenant_id: &str,
        acquirer_id: &str,
        settings: &pb::AcquirerSettings,
    ) -> Result<Link, ServiceError> {
        let (link, fresh) = self.link_now(tenant_id, acquirer_id, settings)?;
        if fresh {
            link.wait_for(LinkState::Connected, self.tuning.connect_timeout)
                .await;
        }
        Ok(link)
    }

    fn link_now(
        &self,
        tenant_id: &str,
        acquirer_id: &str,
        settings: &pb::AcquirerSettings,
    ) -> Result<(Link, bool), ServiceError> {
        let key = (tenant_id.to_owned(), acquirer_id.to_owned());
        let mut links = self.lock();
        if let Some(entry) = links.get(&key)
            && entry.settings == *settings
        {
            return Ok((entry.link.clone(), false));
        }
        let config = link_config(tenant_id, acquirer_id, settings, &self.hsm, self.tuning)?;
        let cancel = self.cancel.child_token();
        let link = Link::start(config, cancel.clone());
        tracing::info!(tenant = %tenant_id, acquirer = %acquirer_id, "acquirer link started");
        let stan = links.get(&key).map_or_else(seed_stan, |entry| entry.stan);
        if let Some(old) = links.insert(
            key,
            Entry {
                settings: settings.clone(),
                link: link.clone(),
                cancel,
                stan,
            },
        ) {
            old.cancel.cancel();
        }
        Ok((link, true))
    }

    /// The next STAN of the acquirer's link (1 to 999999, wrapping).
    pub fn next_stan(&self, tenant_id: &str, acquirer_id: &str) -> u32 {
        let key = (tenant_id.to_owned(), acquirer_id.to_owned());
        let mut links = self.lock();
        let Some(entry) = links.get_mut(&key) else {
            return seed_stan();
        };
        let stan = entry.stan;
        entry.stan = if stan >= 999_999 { 1 } else { stan + 1 };
        stan
    }

    /// Stops and forgets an acquirer's link.
    pub fn remove(&self, tenant_id: &str, acquirer_id: &str) {
        if let Some(entry) = self
            .lock()
            .remove(&(tenant_id.to_owned(), acquirer_id.to_owned()))
        {
            entry.cancel.cancel();
            tracing::info!(tenant = %tenant_id, acquirer = %acquirer_id, "acquirer link stopped");
        }
    }

    /// The state of every link, `(tenant, acquirer, state)`.
    pub fn states(&self) -> Vec<(String, String, &'static str)> {
        self.lock()
            .iter()
            .map(|((tenant, acquirer), entry)| {
                (
                    tenant.clone(),
                    acquirer.clone(),
                    entry.link.state().as_str(),
                )
            })
            .collect()
    }
}

/// The RRN of a request: `YDDDHH` (last digit of the year, day of the year, hour, UTC) and
/// the six-digit STAN, 12 characters, so unique per link as long as STANs are unique per
/// day.
pub fn rrn(at: chrono::DateTime<chrono::Utc>, stan: u32) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{}{:03}{:02}{:06}",
        at.year().rem_euclid(10),
        at.ordinal(),
        at.hour(),
        stan % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn rrns_are_twelve_characters() {
        let at = chrono::Utc
            .with_ymd_and_hms(2025, 2, 3, 7, 8, 9)
            .single()
            .expect("time");
        assert_eq!(super::rrn(at, 42), "503407000042");
        assert_eq!(super::rrn(at, 999_999).len(), 12);
        let stan = super::seed_stan();
        assert!((1..=999_999).contains(&stan));
    }
}
