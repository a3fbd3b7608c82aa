//! The `hsm-backend` aggregate: each backend's health, so that every change of rotation is
//! in the log (and on the bus) with its reason. Pure domain logic.

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use mpos_proto::hsm as pb;
use serde::{Deserialize, Serialize};

use crate::error::HsmError;

/// The aggregate type in the event log and on the bus.
pub const AGGREGATE_TYPE: &str = "hsm-backend";

/// A health report of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The backend's site.
    pub site: String,
    /// In rotation?
    pub healthy: bool,
    /// Why.
    pub reason: String,
}

mpos_es::proto_events! {
    /// Events of the hsm-backend aggregate.
    pub enum BackendEvent {
        /// The backend entered or left rotation.
        HealthChanged(pb::BackendHealthChanged) = "mpos.hsm.v1.BackendHealthChanged",
    }
}

/// A backend's last recorded health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendHealth {
    backend_id: String,
    recorded: bool,
    healthy: bool,
}

impl Aggregate for BackendHealth {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = (String, Report);
    type Event = BackendEvent;
    type Error = HsmError;
    type Services = ();

    async fn handle(
        &mut self,
        (backend_id, report): Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if self.recorded && self.healthy == report.healthy {
            return Ok(());
        }
        let event = BackendEvent::HealthChanged(pb::BackendHealthChanged {
            backend_id,
            site: report.site,
            healthy: report.healthy,
            reason: report.reason,
        });
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let BackendEvent::HealthChanged(changed) = event;
        self.backend_id = changed.backend_id;
        self.recorded = true;
        self.healthy = changed.healthy;
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use mpos_es::ProtoEvent;

    use super::*;

    fn changed(healthy: bool) -> BackendEvent {
        BackendEvent::HealthChanged(pb::BackendHealthChanged {
            backend_id: "hsm-a".into(),
            site: "fra".into(),
            healthy,
            reason: "r".into(),
        })
    }

    fn report(healthy: bool) -> (String, Report) {
        (
            "hsm-a".into(),
            Report {
                site: "fra".into(),
                healthy,
                reason: "r".into(),
            },
        )
    }

    #[test]
    fn only_changes_are_recorded() {
        BackendEvent::check_type_names().expect("names");
        TestFramework::<BackendHealth>::with(())
            .given_no_previous_events()
            .when(report(true))
            .then_expect_events(vec![changed(true)]);
        TestFramework::<BackendHealth>::with(())
            .given(vec![changed(true)])
            .when(report(true))
            .then_expect_events(vec![]);
        TestFramework::<BackendHealth>::with(())
            .given(vec![changed(true)])
            .when(report(false))
            .then_expect_events(vec![changed(false)]);
    }
}
