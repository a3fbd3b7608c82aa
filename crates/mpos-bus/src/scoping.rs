//! Per-tenant scoping of integrators on NATS: the subject permissions of a tenant's
//! integrator user, so that the server itself refuses it every other tenant's events.
//!
//! Every event subject names its tenant in a token of its own
//! (`[ns.]mpos.events.<service>.<tenant>.<aggregate_type>.<event>`), and a JetStream consumer
//! created with a filter names that filter in the subject of its creation request
//! (`$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>`, NATS 2.9+). A tenant's user may
//! therefore:
//! * create, read, pull from, acknowledge and delete only its own named durable consumers, and
//!   create them only filtered on its own tenant token;
//! * subscribe live (core NATS) only to its own tenant's subjects;
//! * receive replies only on its own inbox prefix (`_INBOX_<tenant>`, the URL's
//!   `inbox_prefix`);
//! * and nothing else: no unfiltered or other-tenant consumer, no `DIRECT.GET` or
//!   `STREAM.MSG.GET` (which read any message by sequence), no other tenant's consumer, no
//!   stream change.
//!
//! Consumer names are listed per tenant rather than matched by a prefix (NATS permissions
//! match whole tokens only), and each is `<tenant>_<name>` ([`tenant_consumer_name`]): tenant
//! ids hold no `_`, so no two tenants can be given the same consumer, and one tenant cannot
//! pull from a consumer another tenant created.

use mpos_errors::ServiceError;
use serde::Serialize;

use crate::{BusError, event_subject_prefix, stream_name, tenant_token};

/// The `permissions` block of a nats-server user (publish and subscribe allow-lists; what is
/// not allowed is denied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NatsPermissions {
    /// Subjects the user may publish to (requests to the JetStream API, acknowledgements).
    pub publish: Allow,
    /// Subjects the user may subscribe to (its tenant's events, its inbox).
    pub subscribe: Allow,
}

/// An allow-list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allow {
    /// The subjects (with `*` and `>` wildcards).
    pub allow: Vec<String>,
}

/// The durable consumer name `name` of `tenant_id`'s integrator: `<tenant>_<name>`.
pub fn tenant_consumer_name(tenant_id: &str, name: &str) -> String {
    format!("{tenant_id}_{name}")
}

/// The inbox prefix of a tenant's integrator: `_INBOX_<tenant token>`.
pub fn tenant_inbox_prefix(tenant_id: &str) -> String {
    format!("_INBOX_{}", tenant_token(tenant_id))
}

/// A tenant id as terminal-management allows them: lowercase letters, digits and `-` (never
/// `_`, which separates it from a consumer's name, nor a subject wildcard).
fn check_tenant(tenant_id: &str) -> Result<(), BusError> {
    let valid = !tenant_id.is_empty()
        && tenant_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(BusError::Rejected(ServiceError::bad_request(format!(
            "tenant {tenant_id:?}: lowercase letters, digits and '-' only"
        ))))
    }
}

/// The permissions of `tenant_id`'s integrator user over the event streams of `services`,
/// with its durable consumers `names` (each becomes [`tenant_consumer_name`]), in the
/// deployment's `namespace`. A tenant id is lowercase letters, digits and `-`; a name ASCII
/// letters, digits, `-` and `_`.
pub fn nats_tenant_permissions(
    namespace: Option<&str>,
    tenant_id: &str,
    services: &[&str],
    names: &[&str],
) -> Result<NatsPermissions, BusError> {
    check_tenant(tenant_id)?;
    for name in names {
        crate::validate_durable_name(name)?;
    }
    let consumers: Vec<String> = names
        .iter()
        .map(|name| tenant_consumer_name(tenant_id, name))
        .collect();
    let tenant = tenant_token(tenant_id);
    let mut publish = vec!["$JS.API.INFO".to_owned()];
    let mut subscribe = vec![format!("{}.>", tenant_inbox_prefix(tenant_id))];
    for service in services {
        let stream = stream_name(namespace, service);
        let prefix = event_subject_prefix(namespace, service);
        publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
        for consumer in &consumers {
            publish.push(format!(
                "$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{prefix}.{tenant}.>"
            ));
            for operation in ["INFO", "DELETE", "MSG.NEXT"] {
                publish.push(format!("$JS.API.CONSUMER.{operation}.{stream}.{consumer}"));
            }
            publish.push(format!("$JS.ACK.{stream}.{consumer}.>"));
        }
        subscribe.push(format!("{prefix}.{tenant}.>"));
    }
    Ok(NatsPermissions {
        publish: Allow { allow: publish },
        subscribe: Allow { allow: subscribe },
    })
}

/// One Kafka ACL of a tenant's integrator principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KafkaAcl {
    /// `Topic` or `Group`.
    pub resource_type: &'static str,
    /// `LITERAL` or `PREFIXED`.
    pub pattern_type: &'static str,
    /// The topic or group (prefix).
    pub name: String,
    /// `Read`, `Describe`.
    pub operations: Vec<&'static str>,
}

/// The Kafka ACLs of `tenant_id`'s integrator over the tenant topics of `services` (the bus
/// URL's `tenant_topics=true`): read and describe its own topics, literally, and read with
/// consumer groups named `[ns.]<tenant>_…` (prefixed). Nothing on the service topics, which
/// hold every tenant. Errors as [`nats_tenant_permissions`].
pub fn kafka_tenant_acls(
    namespace: Option<&str>,
    tenant_id: &str,
    services: &[&str],
) -> Result<Vec<KafkaAcl>, BusError> {
    check_tenant(tenant_id)?;
    let mut acls: Vec<KafkaAcl> = services
        .iter()
        .map(|service| KafkaAcl {
            resource_type: "Topic",
            pattern_type: "LITERAL",
            name: crate::kafka_tenant_topic(namespace, service, tenant_id),
            operations: vec!["Read", "Describe"],
        })
        .collect();
    acls.push(KafkaAcl {
        resource_type: "Group",
        pattern_type: "PREFIXED",
        name: crate::with_namespace(namespace, tenant_consumer_name(tenant_id, "")),
        operations: vec!["Read"],
    });
    Ok(acls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_allowed_its_own_subjects_only() {
        let permissions =
            nats_tenant_permissions(Some("prod"), "acme", &["routing"], &["integration"])
                .expect("permissions");
        assert_eq!(
            permissions.publish.allow,
            [
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.PROD_MPOS_EVENTS_ROUTING",
                "$JS.API.CONSUMER.CREATE.PROD_MPOS_EVENTS_ROUTING.acme_integration.prod.mpos.events.routing.acme.>",
                "$JS.API.CONSUMER.INFO.PROD_MPOS_EVENTS_ROUTING.acme_integration",
                "$JS.API.CONSUMER.DELETE.PROD_MPOS_EVENTS_ROUTING.acme_integration",
                "$JS.API.CONSUMER.MSG.NEXT.PROD_MPOS_EVENTS_ROUTING.acme_integration",
                "$JS.ACK.PROD_MPOS_EVENTS_ROUTING.acme_integration.>",
            ]
        );
        assert_eq!(
            permissions.subscribe.allow,
            ["_INBOX_acme.>", "prod.mpos.events.routing.acme.>"]
        );
        let acls = kafka_tenant_acls(Some("prod"), "acme", &["routing"]).expect("acls");
        assert_eq!(
            acls.iter()
                .map(|acl| format!("{} {} {}", acl.resource_type, acl.pattern_type, acl.name))
                .collect::<Vec<_>>(),
            [
                "Topic LITERAL prod.mpos.routing.events.v1.acme",
                "Group PREFIXED prod.acme_",
            ]
        );
        assert!(kafka_tenant_acls(None, "acme.*", &["routing"]).is_err());
        // Nothing can widen the subjects or share another tenant's consumer names.
        for (tenant, name) in [
            ("acme.>", "c"),
            ("acme_x", "c"),
            ("Acme", "c"),
            ("", "c"),
            ("acme", "c.>"),
            ("acme", ""),
        ] {
            assert!(
                nats_tenant_permissions(None, tenant, &["routing"], &[name]).is_err(),
                "{tenant} {name}"
            );
        }
    }
}
