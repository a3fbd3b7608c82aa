//! Who calls an admin API: the platform operator (its token) or a tenant's API key issued by
//! terminal-management (`mpk_…`, known from terminal-management's events, see
//! [`TmsView::api_key`]). Admin and operator keys change their own tenant, read-only keys
//! read it, and another tenant's data answers exactly like missing data.

use axum::http::HeaderMap;
use mpos_errors::ServiceError;
use mpos_http::OperatorAuth;
use mpos_http::api_key::PresentedKey;
use mpos_proto::terminal_management as pb;

use crate::tms::TmsView;

/// Who calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The platform operator.
    Operator,
    /// A tenant API key.
    Tenant {
        /// Its tenant.
        tenant_id: String,
        /// Its id.
        key_id: String,
        /// Its role.
        role: pb::ApiKeyRole,
    },
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Reading the tenant's data.
    Read,
    /// Changing it.
    Write,
}

impl Principal {
    /// Whether it may act on `tenant_id`; another tenant's data is "not found".
    pub fn authorize(&self, tenant_id: &str, need: Need) -> Result<(), ServiceError> {
        match self {
            Self::Operator => Ok(()),
            Self::Tenant {
                tenant_id: own,
                role,
                ..
            } => {
                if own != tenant_id {
                    return Err(ServiceError::not_found("tenant not found"));
                }
                if need == Need::Write && *role == pb::ApiKeyRole::ReadOnly {
                    return Err(ServiceError::forbidden(
                        "a read-only key cannot change anything",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The actor recorded in events: `operator:platform` or `api-key:{key_id}`.
    pub fn actor_name(&self) -> String {
        match self {
            Self::Operator => "operator:platform".to_owned(),
            Self::Tenant { key_id, .. } => format!("api-key:{key_id}"),
        }
    }
}

/// The caller of a request, from its `Authorization: Bearer` header: the operator's token, or
/// a tenant API key that is neither revoked nor of a suspended tenant.
pub async fn authenticate(
    view: &TmsView,
    operator: &OperatorAuth,
    headers: &HeaderMap,
) -> Result<Principal, ServiceError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ServiceError::unauthenticated("a bearer token is required"))?;
    if operator.accepts(token) {
        return Ok(Principal::Operator);
    }
    let refused = || ServiceError::unauthenticated("the bearer token is not valid");
    let presented = PresentedKey::parse(token).ok_or_else(refused)?;
    let key = view.api_key(&presented.key_id).await?.ok_or_else(refused)?;
    if key.revoked || !presented.matches(&key.secret_sha256) {
        return Err(refused());
    }
    if view.tenant_suspended(&key.tenant_id).await? {
        return Err(ServiceError::forbidden("the tenant is suspended"));
    }
    Ok(Principal::Tenant {
        tenant_id: key.tenant_id,
        key_id: presented.key_id,
        role: pb::ApiKeyRole::try_from(key.role).unwrap_or(pb::ApiKeyRole::ReadOnly),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::HeaderValue;
    use device_identity::TrustStore;
    use mpos_errors::ErrorCode;
    use mpos_es::Document;
    use secrecy::SecretString;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::testing::sqlite;

    const OPERATOR_TOKEN: &str = "operator-token-for-the-auth-tests-0123456789";
    const KEY_ID: &str = "0123456789abcdef";

    fn tenant(role: pb::ApiKeyRole) -> Principal {
        Principal::Tenant {
            tenant_id: "acme".to_owned(),
            key_id: KEY_ID.to_owned(),
            role,
        }
    }

    #[test]
    fn a_tenant_key_acts_on_its_own_tenant_within_its_role() {
        let operator = Principal::Operator;
        assert!(operator.authorize("acme", Need::Write).is_ok());
        assert_eq!(operator.actor_name(), "operator:platform");

        let admin = tenant(pb::ApiKeyRole::Admin);
        assert!(admin.authorize("acme", Need::Write).is_ok());
        assert_eq!(admin.actor_name(), format!("api-key:{KEY_ID}"));
        let other = admin.authorize("other", Need::Read).unwrap_err();
        assert_eq!(other.code, ErrorCode::NotFound);
        assert_eq!(other.message, "tenant not found");

        let reader = tenant(pb::ApiKeyRole::ReadOnly);
        assert!(reader.authorize("acme", Need::Read).is_ok());
        let write = reader.authorize("acme", Need::Write).unwrap_err();
        assert_eq!(write.code, ErrorCode::Forbidden);
    }

    fn headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    async fn put(store: &mpos_es::EventStore, id: &str, tenant_id: &str, payload: String) {
        let document = Document {
            id: id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            position: 1,
            payload,
        };
        store.put_documents("auth-test", &[document]).await.unwrap();
    }

    #[tokio::test]
    async fn callers_are_the_operator_or_valid_tenant_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir, "follower").await;
        let view = TmsView::new(store.clone(), TrustStore::new(), "auth-test");
        let operator = OperatorAuth::new(&SecretString::from(OPERATOR_TOKEN));
        let secret = "5e".repeat(32);
        let key = |revoked: bool| {
            serde_json::json!({
                "tenant_id": "acme",
                "role": i32::from(pb::ApiKeyRole::Operator),
                "secret_sha256": hex::encode(Sha256::digest(secret.as_bytes())),
                "revoked": revoked,
            })
            .to_string()
        };
        put(&store, &format!("api-key/{KEY_ID}"), "acme", key(false)).await;
        put(
            &store,
            "tenant/acme",
            "acme",
            r#"{"suspended":false}"#.to_owned(),
        )
        .await;
        let token = format!("mpk_{KEY_ID}_{secret}");

        let code = |result: Result<Principal, ServiceError>| result.unwrap_err().code;
        assert_eq!(
            authenticate(&view, &operator, &headers(OPERATOR_TOKEN))
                .await
                .unwrap(),
            Principal::Operator
        );
        assert_eq!(
            authenticate(&view, &operator, &headers(&token))
                .await
                .unwrap(),
            tenant(pb::ApiKeyRole::Operator)
        );
        assert_eq!(
            code(authenticate(&view, &operator, &HeaderMap::new()).await),
            ErrorCode::Unauthenticated
        );
        assert_eq!(
            code(authenticate(&view, &operator, &headers("not-a-key")).await),
            ErrorCode::Unauthenticated
        );
        let wrong_secret = format!("mpk_{KEY_ID}_{}", "00".repeat(32));
        assert_eq!(
            code(authenticate(&view, &operator, &headers(&wrong_secret)).await),
            ErrorCode::Unauthenticated
        );

        put(
            &store,
            "tenant/acme",
            "acme",
            r#"{"suspended":true}"#.to_owned(),
        )
        .await;
        assert_eq!(
            code(authenticate(&view, &operator, &headers(&token)).await),
            ErrorCode::Forbidden
        );
        put(&store, &format!("api-key/{KEY_ID}"), "acme", key(true)).await;
        assert_eq!(
            code(authenticate(&view, &operator, &headers(&token)).await),
            ErrorCode::Unauthenticated
        );
    }
}
