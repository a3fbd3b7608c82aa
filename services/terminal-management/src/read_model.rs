//! The tenants read model: one document per tenant.

use mpos_es::{Projection, StoreError, StoredEvent};
use mpos_proto::terminal_management as pb;

use crate::tenant::{AGGREGATE_TYPE, TenantEvent};

/// Builds [`pb::Tenant`] documents from tenant events.
#[derive(Clone, Copy, Debug, Default)]
pub struct TenantsProjection;

impl Projection for TenantsProjection {
    type View = pb::Tenant;

    fn name(&self) -> &'static str {
        "tenants"
    }

    fn document_id(&self, event: &StoredEvent) -> Option<String> {
        (event.event.aggregate_type == AGGREGATE_TYPE).then(|| event.event.aggregate_id.clone())
    }

    fn apply(&self, view: &mut pb::Tenant, event: &StoredEvent) -> Result<(), StoreError> {
        match serde_json::from_str::<TenantEvent>(&event.event.payload)? {
            TenantEvent::Created(created) => {
                view.tenant_id = created.tenant_id;
                view.name = created.name;
                view.status = pb::TenantStatus::Active.into();
            }
            TenantEvent::Renamed(renamed) => view.name = renamed.new_name,
            TenantEvent::Suspended(_) => view.status = pb::TenantStatus::Suspended.into(),
            TenantEvent::Reactivated(_) => view.status = pb::TenantStatus::Active.into(),
            // API keys are listed from the estate model, not on the tenant document.
            TenantEvent::ApiKeyIssued(_)
            | TenantEvent::ApiKeyRevoked(_)
            | TenantEvent::ParametersSet(_) => {}
        }
        view.version = event.event.sequence;
        Ok(())
    }
}
