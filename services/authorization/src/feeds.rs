//! The streams authorization follows, each into its own projection with a checkpoint:
//! terminal-management's (terminals, certificates, tenants, API keys, the estate and its
//! parameters), key-injection's (BDKs and key slots), and routing's (reversals acknowledged
//! by the acquirer, which conclude the payments they reverse).

use std::sync::Arc;

use mpos_bus::EventEnvelope;
use mpos_errors::ServiceError;
use mpos_es::Document;
use mpos_feed::estate::{EstateView, estate_documents};
use mpos_feed::follow::{Applied, FeedNames, Follower, Overlay};
use mpos_feed::tms::{TMS_SOURCE, TmsView, tms_documents};
use mpos_proto::routing as rpb;
use prost::Message as _;

use crate::engine::Authorizer;
use crate::keys::{KI_SOURCE, KeyView};
use crate::terminals::FactsCache;

/// terminal-management's feed.
pub const TMS_FEED: FeedNames = FeedNames {
    source: TMS_SOURCE,
    projection: "auth-tms",
    consumer: "auth-tms-feed",
    durable: "authorization-tms",
    event_type: None,
};

/// key-injection's feed.
pub const KI_FEED: FeedNames = FeedNames {
    source: KI_SOURCE,
    projection: "auth-ki",
    consumer: "auth-ki-feed",
    durable: "authorization-ki",
    event_type: None,
};

/// routing's feed: only the reversals the acquirer acknowledged, the one event it acts on
/// (a sparse feed; the broker sends no other routing event).
pub const ROUTING_FEED: FeedNames = FeedNames {
    source: "routing",
    projection: "auth-routing",
    consumer: "auth-routing-feed",
    // Not "authorization-routing", the durable consumer of every routing event it replaces:
    // a durable consumer's filter cannot be changed on NATS 2.9.
    durable: "authorization-routing-reversals",
    event_type: Some(REVERSAL_ACKNOWLEDGED),
};

/// The event of routing's that concludes a reversed payment.
const REVERSAL_ACKNOWLEDGED: &str = "mpos.routing.v1.ReversalAcknowledged";

/// Keeps terminal-management's documents and the estate.
#[derive(Debug)]
pub struct TmsFollower {
    /// terminal-management's documents.
    pub tms: TmsView,
    /// The estate.
    pub estate: EstateView,
    /// Read again after every commit.
    pub cache: Arc<FactsCache>,
}

impl Follower for TmsFollower {
    type Work = ();

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<()>, ServiceError> {
        let mut documents = tms_documents(&self.tms, overlay, envelope).await?;
        // The estate reads what this event wrote to the overlay too.
        let mut overlay = overlay.clone();
        for document in &documents {
            overlay.insert(document.id.clone(), document.clone());
        }
        documents.extend(estate_documents(&self.estate, &overlay, envelope).await?);
        Ok((documents, None))
    }

    async fn work(&self, _: &Overlay, _: &str, _: Vec<()>) -> Result<(), ServiceError> {
        Ok(())
    }

    async fn committed(&self, documents: &[Document], _: &[String]) -> Result<(), ServiceError> {
        if !documents.is_empty() {
            self.cache.invalidate();
        }
        if mpos_feed::tms::changes_trust(documents) {
            self.tms.reload_trust().await?;
        }
        Ok(())
    }
}

/// Keeps key-injection's key documents.
#[derive(Debug)]
pub struct KeyFollower {
    /// The key documents.
    pub keys: KeyView,
    /// Read again after every commit.
    pub cache: Arc<FactsCache>,
}

impl Follower for KeyFollower {
    type Work = ();

    async fn apply(
        &self,
        overlay: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<()>, ServiceError> {
        Ok((self.keys.documents(overlay, envelope).await?, None))
    }

    async fn work(&self, _: &Overlay, _: &str, _: Vec<()>) -> Result<(), ServiceError> {
        Ok(())
    }

    async fn committed(&self, documents: &[Document], _: &[String]) -> Result<(), ServiceError> {
        if !documents.is_empty() {
            self.cache.invalidate();
        }
        Ok(())
    }
}

/// Concludes payments whose reversal the acquirer acknowledged.
#[derive(Debug)]
pub struct RoutingFollower {
    /// The payment operations.
    pub authorizer: Arc<Authorizer>,
}

impl Follower for RoutingFollower {
    type Work = rpb::ReversalAcknowledged;

    async fn apply(
        &self,
        _: &Overlay,
        envelope: &EventEnvelope,
    ) -> Result<Applied<rpb::ReversalAcknowledged>, ServiceError> {
        if envelope.event_type != REVERSAL_ACKNOWLEDGED {
            return Ok((Vec::new(), None));
        }
        let acknowledged = rpb::ReversalAcknowledged::decode(envelope.payload.as_slice())
            .map_err(|_| ServiceError::internal("undecodable routing event"))?;
        let key = format!("{}/{}", acknowledged.tenant_id, acknowledged.payment_id);
        Ok((Vec::new(), Some((key, acknowledged))))
    }

    async fn work(
        &self,
        _: &Overlay,
        _: &str,
        items: Vec<rpb::ReversalAcknowledged>,
    ) -> Result<(), ServiceError> {
        for acknowledged in items {
            self.authorizer.reversal_acknowledged(&acknowledged).await?;
        }
        Ok(())
    }

    async fn committed(&self, _: &[Document], _: &[String]) -> Result<(), ServiceError> {
        Ok(())
    }
}

/// The feeds whose read models a replay can rebuild from the followed log alone: their
/// followers change nothing but their documents (`auth-routing` concludes payments: not one
/// of them).
pub const REPLAYABLE_FEEDS: [FeedNames; 2] = [TMS_FEED, KI_FEED];

/// Runs one of [`REPLAYABLE_FEEDS`] (by its projection's name) over `source` into `store`,
/// with the same follower as the service, until `cancel`: a fresh copy of the feed's read
/// model for `mposctl replay --read-model`. Any other name does nothing.
pub async fn run_replayable(
    store: mpos_es::EventStore,
    projection: &str,
    source: mpos_feed::follow::FeedSource,
    cancel: tokio_util::sync::CancellationToken,
) {
    let cache = Arc::new(FactsCache::default());
    if projection == TMS_FEED.projection {
        let follower = TmsFollower {
            tms: TmsView::new(
                store.clone(),
                device_identity::TrustStore::new(),
                TMS_FEED.projection,
            ),
            estate: EstateView::new(store.clone(), TMS_FEED.projection),
            cache,
        };
        mpos_feed::follow::run(store, TMS_FEED, source, Arc::new(follower), cancel).await;
    } else if projection == KI_FEED.projection {
        let follower = KeyFollower {
            keys: KeyView::new(store.clone(), KI_FEED.projection),
            cache,
        };
        mpos_feed::follow::run(store, KI_FEED, source, Arc::new(follower), cancel).await;
    }
}
