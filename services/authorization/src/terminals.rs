//! The terminal facts from this service's projection of terminal-management's events (API
//! keys, tenants, terminals and their certificates: `mpos_feed::tms`; the estate and
//! parameters: `mpos_feed::estate`) and key-injection's ([`crate::keys`]).

use async_trait::async_trait;
use mpos_errors::ServiceError;
use mpos_feed::estate::EstateView;
use mpos_feed::tms::{TerminalKind, TerminalStatus, TmsView};

use crate::checks::{TerminalContext, TerminalState};
use crate::keys::KeyView;
use crate::ports::{DeviceKind, TerminalFacts, TerminalKeyFacts, Terminals};

/// The terminal facts over the projections.
#[derive(Clone, Debug)]
pub struct ProjectedTerminals {
    /// terminal-management's documents.
    pub tms: TmsView,
    /// The estate.
    pub estate: EstateView,
    /// The keys.
    pub keys: KeyView,
}

fn state_of(status: TerminalStatus) -> TerminalState {
    match status {
        TerminalStatus::Active => TerminalState::Active,
        TerminalStatus::Bound => TerminalState::Inactive("not activated yet"),
        TerminalStatus::Suspended => TerminalState::Inactive("suspended"),
        TerminalStatus::Blacklisted => TerminalState::Inactive("blacklisted"),
        TerminalStatus::SwappedOut => TerminalState::Inactive("swapped out"),
        TerminalStatus::Decommissioned => TerminalState::Inactive("decommissioned"),
    }
}

#[async_trait]
impl Terminals for ProjectedTerminals {
    async fn by_certificate(
        &self,
        certificate_sha256: &str,
    ) -> Result<Option<(String, String)>, ServiceError> {
        Ok(self
            .tms
            .terminal_by_certificate(certificate_sha256)
            .await?
            .map(|terminal| (terminal.tenant_id, terminal.terminal_id)))
    }

    async fn facts(
        &self,
        tenant_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalFacts>, ServiceError> {
        let (terminal, estate, key, suspended) = tokio::try_join!(
            self.tms.terminal(tenant_id, terminal_id),
            self.estate.terminal_estate(tenant_id, terminal_id),
            self.keys.terminal_key(tenant_id, terminal_id),
            self.tms.tenant_suspended(tenant_id),
        )?;
        let (Some(terminal), Some(estate)) = (terminal, estate) else {
            return Ok(None);
        };
        let parameters = estate.effective();
        Ok(Some(TerminalFacts {
            kind: match terminal.kind {
                TerminalKind::Ped => DeviceKind::Ped,
                TerminalKind::SoftPos => DeviceKind::SoftPos,
            },
            certificate_sha256: terminal.certificate_sha256.clone(),
            tenant_suspended: suspended,
            context: TerminalContext {
                // terminal-management's own status wins: attestation suspensions and
                // lifecycle changes arrive there first.
                state: state_of(terminal.status),
                merchant_id: estate.merchant_id.clone(),
                terminal_group_id: estate.terminal_group_id.clone().unwrap_or_default(),
                parameters,
                parameters_version: estate.version,
            },
            key: key.map(|key| TerminalKeyFacts {
                bdk: key.bdk_hsm_key_id,
                initial_key_id: key.slot.initial_key_id,
                revoked: key.slot.revoked,
            }),
        }))
    }
}
