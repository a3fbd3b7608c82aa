//! The acquirer aggregate (id `<tenant>/<acquirer id>`): one acquirer link of a tenant, its
//! settings and its circuit breaker's changes. Settings are validated field by field before
//! they are recorded; a change equal to the stored settings writes nothing. Pure domain
//! logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_errors::ServiceError;
use mpos_proto::routing as pb;
use serde::{Deserialize, Serialize};

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "acquirer";

/// The length prefixes an acquirer link may use (`iso8583::framing::LengthPrefix`).
pub const LENGTH_PREFIXES: [&str; 5] = ["binary2", "binary4", "ascii4", "bcd2", "none"];

/// Why an acquirer command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcquirerError {
    /// A setting is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The acquirer is not configured.
    #[error("acquirer not found")]
    NotFound,
}

impl From<AcquirerError> for ServiceError {
    fn from(error: AcquirerError) -> Self {
        let message = error.to_string();
        match error {
            AcquirerError::Invalid(_) => ServiceError::bad_request(message),
            AcquirerError::NotFound => ServiceError::not_found(message),
        }
    }
}

/// What can be asked of an acquirer.
#[derive(Clone, Debug, PartialEq)]
pub enum AcquirerCommand {
    /// Create or change its settings.
    Configure {
        /// The tenant.
        tenant_id: String,
        /// The acquirer.
        acquirer_id: String,
        /// Its settings.
        settings: pb::AcquirerSettings,
        /// The message specs the platform has (`iso8583::Spec::builtin_names`).
        known_specs: Vec<String>,
    },
    /// Remove it (rules that name it must be changed first; the service checks).
    Remove,
    /// Record a change of its breaker.
    RecordHealth(pb::AcquirerHealthChanged),
}

mpos_es::proto_events! {
    /// Events of the acquirer aggregate.
    pub enum AcquirerEvent {
        /// Created or changed.
        Configured(pb::AcquirerConfigured) = "mpos.routing.v1.AcquirerConfigured",
        /// Removed.
        Removed(pb::AcquirerRemoved) = "mpos.routing.v1.AcquirerRemoved",
        /// Its breaker changed state.
        HealthChanged(pb::AcquirerHealthChanged) = "mpos.routing.v1.AcquirerHealthChanged",
    }
}

/// An acquirer's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acquirer {
    /// The tenant.
    pub tenant_id: String,
    /// The acquirer.
    pub acquirer_id: String,
    /// Its settings (None before the first configuration and after removal).
    pub settings: Option<pb::AcquirerSettings>,
    /// The breaker's state as last recorded (`HealthState` as a number).
    pub health: i32,
}

/// An identifier: 1-64 characters of `A-Z a-z 0-9 . _ -`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// A key reference: an hsm-proxy key id or `alias/<name>`.
fn valid_key_reference(key: &str) -> bool {
    let name = key.strip_prefix("alias/").unwrap_or(key);
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'/'))
}

/// Checks `settings` field by field and fills in defaults (timeouts, health policy).
pub fn validate_settings(
    settings: &pb::AcquirerSettings,
    known_specs: &[String],
) -> Result<pb::AcquirerSettings, AcquirerError> {
    let invalid = |message: String| Err(AcquirerError::Invalid(message));
    let mut out = settings.clone();
    out.name = out.name.trim().to_owned();
    if out.name.chars().count() > 100 {
        return invalid("name: at most 100 characters".into());
    }
    let Some((host, port)) = out.address.rsplit_once(':') else {
        return invalid("address: must be host:port".into());
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
        return invalid("address: must be host:port with a port of 1-65535".into());
    }
    if !known_specs.iter().any(|spec| spec == &out.spec) {
        return invalid(format!(
            "spec: {:?} is not one of {}",
            out.spec,
            known_specs.join(", ")
        ));
    }
    if !LENGTH_PREFIXES.contains(&out.length_prefix.as_str()) {
        return invalid(format!(
            "length_prefix: {:?} is not one of {}",
            out.length_prefix,
            LENGTH_PREFIXES.join(", ")
        ));
    }
    if hex::decode(&out.header_hex).is_err() || out.header_hex.len() > 64 {
        return invalid("header_hex: at most 32 bytes as hex digits".into());
    }
    if out.acquiring_institution_id.len() > 11
        || !out
            .acquiring_institution_id
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return invalid("acquiring_institution_id: at most 11 digits".into());
    }
    for (field, key) in [
        ("zone_pin_key", &out.zone_pin_key),
        ("zone_mac_key", &out.zone_mac_key),
    ] {
        if !key.is_empty() && !valid_key_reference(key) {
            return invalid(format!("{field}: an hsm-proxy key id or alias/<name>"));
        }
    }
    if out.response_timeout_ms == 0 {
        out.response_timeout_ms = 5_000;
    }
    if !(50..=60_000).contains(&out.response_timeout_ms) {
        return invalid("response_timeout_ms: 50 to 60000".into());
    }
    if out.echo_interval_seconds == 0 {
        out.echo_interval_seconds = 60;
    }
    if out.echo_interval_seconds > 3_600 {
        return invalid("echo_interval_seconds: at most 3600".into());
    }
    let health = out.health.get_or_insert_with(pb::HealthPolicy::default);
    for (field, value, default, range) in [
        (
            "health.window_seconds",
            &mut health.window_seconds,
            30,
            1..=3_600,
        ),
        (
            "health.min_requests",
            &mut health.min_requests,
            20,
            1..=1_000_000,
        ),
        (
            "health.max_error_percent",
            &mut health.max_error_percent,
            50,
            1..=100,
        ),
        (
            "health.max_timeout_percent",
            &mut health.max_timeout_percent,
            30,
            1..=100,
        ),
        (
            "health.cool_down_seconds",
            &mut health.cool_down_seconds,
            30,
            1..=86_400,
        ),
        (
            "health.half_open_probes",
            &mut health.half_open_probes,
            3,
            1..=1_000,
        ),
    ] {
        if *value == 0 {
            *value = default;
        }
        if !range.contains(value) {
            return invalid(format!("{field}: {} to {}", range.start(), range.end()));
        }
    }
    Ok(out)
}

impl Acquirer {
    fn decide(&self, command: AcquirerCommand) -> Result<Vec<AcquirerEvent>, AcquirerError> {
        match command {
            AcquirerCommand::Configure {
                tenant_id,
                acquirer_id,
                settings,
                known_specs,
            } => {
                if !valid_id(&acquirer_id) {
                    return Err(AcquirerError::Invalid(
                        "acquirer id: 1-64 characters of A-Z a-z 0-9 . _ -".into(),
                    ));
                }
                let settings = validate_settings(&settings, &known_specs)?;
                if self.settings.as_ref() == Some(&settings) {
                    return Ok(Vec::new());
                }
                Ok(vec![AcquirerEvent::Configured(pb::AcquirerConfigured {
                    tenant_id,
                    acquirer_id,
                    settings: Some(settings),
                })])
            }
            AcquirerCommand::Remove => {
                if self.settings.is_none() {
                    return Err(AcquirerError::NotFound);
                }
                Ok(vec![AcquirerEvent::Removed(pb::AcquirerRemoved {
                    tenant_id: self.tenant_id.clone(),
                    acquirer_id: self.acquirer_id.clone(),
                })])
            }
            AcquirerCommand::RecordHealth(changed) => {
                if self.settings.is_none() {
                    return Err(AcquirerError::NotFound);
                }
                Ok(vec![AcquirerEvent::HealthChanged(changed)])
            }
        }
    }
}

impl Aggregate for Acquirer {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = AcquirerCommand;
    type Event = AcquirerEvent;
    type Error = AcquirerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AcquirerEvent::Configured(configured) => {
                self.tenant_id = configured.tenant_id;
                self.acquirer_id = configured.acquirer_id;
                self.settings = configured.settings;
            }
            AcquirerEvent::Removed(_) => {
                self.settings = None;
            }
            AcquirerEvent::HealthChanged(changed) => {
                self.health = changed.to;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Test = TestFramework<Acquirer>;

    fn settings() -> pb::AcquirerSettings {
        pb::AcquirerSettings {
            name: "Acquirer A".into(),
            address: "127.0.0.1:9101".into(),
            spec: "ascii-1987".into(),
            length_prefix: "binary2".into(),
            acquiring_institution_id: "123456".into(),
            zone_pin_key: "alias/acq-a-zpk".into(),
            zone_mac_key: "alias/acq-a-zak".into(),
            ..pb::AcquirerSettings::default()
        }
    }

    fn configure(settings: pb::AcquirerSettings) -> AcquirerCommand {
        AcquirerCommand::Configure {
            tenant_id: "acme".into(),
            acquirer_id: "acq-a".into(),
            settings,
            known_specs: vec!["ascii-1987".into(), "bcd-1987".into()],
        }
    }

    fn with_defaults(mut settings: pb::AcquirerSettings) -> pb::AcquirerSettings {
        settings.response_timeout_ms = 5_000;
        settings.echo_interval_seconds = 60;
        settings.health = Some(pb::HealthPolicy {
            window_seconds: 30,
            min_requests: 20,
            max_error_percent: 50,
            max_timeout_percent: 30,
            cool_down_seconds: 30,
            half_open_probes: 3,
        });
        settings
    }

    fn configured(settings: pb::AcquirerSettings) -> AcquirerEvent {
        AcquirerEvent::Configured(pb::AcquirerConfigured {
            tenant_id: "acme".into(),
            acquirer_id: "acq-a".into(),
            settings: Some(settings),
        })
    }

    #[test]
    fn configuring_fills_defaults_and_an_equal_change_writes_nothing() {
        Test::with(())
            .given_no_previous_events()
            .when(configure(settings()))
            .then_expect_events(vec![configured(with_defaults(settings()))]);
        Test::with(())
            .given(vec![configured(with_defaults(settings()))])
            .when(configure(settings()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Edit = fn(&mut pb::AcquirerSettings);
        let cases: Vec<(Edit, &str)> = vec![
            (|s| s.address = "nowhere".into(), "address"),
            (|s| s.address = "host:0".into(), "address"),
            (|s| s.spec = "cobol".into(), "spec"),
            (|s| s.length_prefix = "ascii2".into(), "length_prefix"),
            (|s| s.header_hex = "6000zz".into(), "header_hex"),
            (
                |s| s.acquiring_institution_id = "12a".into(),
                "acquiring_institution_id",
            ),
            (|s| s.zone_pin_key = "alias/".into(), "zone_pin_key"),
            (|s| s.response_timeout_ms = 10, "response_timeout_ms"),
            (
                |s| {
                    s.health = Some(pb::HealthPolicy {
                        max_error_percent: 101,
                        ..pb::HealthPolicy::default()
                    })
                },
                "health.max_error_percent",
            ),
        ];
        for (edit, field) in cases {
            let mut bad = settings();
            edit(&mut bad);
            let result = Acquirer::default().decide(configure(bad));
            match result {
                Err(AcquirerError::Invalid(message)) => {
                    assert!(message.starts_with(field), "{field}: {message}")
                }
                other => panic!("{field}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn removal_and_health_need_a_configured_acquirer() {
        Test::with(())
            .given_no_previous_events()
            .when(AcquirerCommand::Remove)
            .then_expect_error(AcquirerError::NotFound);
        Test::with(())
            .given(vec![configured(with_defaults(settings()))])
            .when(AcquirerCommand::Remove)
            .then_expect_events(vec![AcquirerEvent::Removed(pb::AcquirerRemoved {
                tenant_id: "acme".into(),
                acquirer_id: "acq-a".into(),
            })]);
    }
}
