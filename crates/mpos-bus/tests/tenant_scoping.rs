//! Per-tenant scoping of integrators.
//!
//! On Kafka (`MPOS_TEST_KAFKA_URL`, tansu): with `tenant_topics=true` every event is also on
//! its tenant's topic, which holds nothing else, and a tenant's subscription reads that topic
//! (the topic a tenant principal is given a Kafka ACL for; tansu does not enforce ACLs).
//!
//! On NATS, enforced by the server: a nats-server of its own, configured
//! with a platform user and one integrator user per tenant whose permissions
//! `nats_tenant_permissions` wrote. The platform publishes two tenants' events; each
//! integrator reads its own through its durable consumer and live subscription, and the
//! server refuses it the other tenant's consumer, filter, subjects and messages by sequence.
//!
//! Runs where `nats-server` is installed (`infra/nats.sh` installs it; CI has it): set
//! `MPOS_TEST_NATS_SERVER` to the binary, else `/usr/sbin/nats-server` is used if present.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use mpos_bus::{
    Bus, EventEnvelope, SubscribeOptions, connect, nats_tenant_permissions, tenant_consumer_name,
    tenant_inbox_prefix,
};

const NAMESPACE: &str = "scoped";
const SERVICE: &str = "routing";
const PLATFORM_PASSWORD: &str = "platform-password-0123456789";

fn nats_server() -> Option<PathBuf> {
    std::env::var_os("MPOS_TEST_NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|path| path.exists()))
}

/// A nats-server on a free port with JetStream in `dir` and the users of `config_users`.
struct Server {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn password(tenant: &str) -> String {
    format!("{tenant}-password-0123456789")
}

async fn start_server(binary: &PathBuf) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut users = vec![serde_json::json!({"user": "platform", "password": PLATFORM_PASSWORD})];
    for tenant in ["acme", "globex"] {
        let permissions = nats_tenant_permissions(
            Some(NAMESPACE),
            tenant,
            &[SERVICE],
            &["integration", "spare"],
        )
        .expect("permissions");
        users.push(serde_json::json!({
            "user": tenant,
            "password": password(tenant),
            "permissions": permissions,
        }));
    }
    // nats-server's configuration format reads JSON.
    let config = serde_json::json!({
        "listen": format!("127.0.0.1:{port}"),
        "jetstream": {"store_dir": dir.path().join("js").display().to_string()},
        "authorization": {"users": users},
    });
    let config_path = dir.path().join("nats.conf");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let child = std::process::Command::new(binary)
        .arg("-c")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server {
        child,
        port,
        _dir: dir,
    }
}

fn envelope(position: u64, tenant: &str) -> EventEnvelope {
    EventEnvelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.to_owned(),
        aggregate_type: "exchange".to_owned(),
        aggregate_id: format!("{tenant}-{position}"),
        sequence: 1,
        global_position: position,
        event_type: "mpos.routing.v1.RouteDecided".to_owned(),
        event_version: "1.0".to_owned(),
        payload: vec![1, 2, 3],
        previous_hash: vec![0; 32],
        hash: vec![1; 32],
        service: SERVICE.to_owned(),
        ..EventEnvelope::default()
    }
}

async fn integrator(server: &Server, tenant: &str) -> Bus {
    connect(&format!(
        "nats://{tenant}:{}@127.0.0.1:{}?namespace={NAMESPACE}&inbox_prefix={}",
        password(tenant),
        server.port,
        tenant_inbox_prefix(tenant)
    ))
    .await
    .expect("the integrator connects")
}

/// The tenants of every event `stream` delivers until it is quiet for a second.
async fn drain(stream: &mut mpos_bus::EventStream) -> Vec<String> {
    let mut tenants = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await
    {
        let delivery = delivery.expect("delivery");
        tenants.push(delivery.envelope.tenant_id.clone());
        delivery.ack().await.expect("ack");
    }
    tenants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrator_reads_its_own_tenants_events_and_nothing_else() {
    let Some(binary) = nats_server() else {
        assert!(
            std::env::var_os("MPOS_TEST_NATS_URL").is_none(),
            "MPOS_TEST_NATS_URL is set but no nats-server binary is found (MPOS_TEST_NATS_SERVER)"
        );
        eprintln!("skipped: no nats-server binary");
        return;
    };
    let server = start_server(&binary).await;
    let platform = connect(&format!(
        "nats://platform:{PLATFORM_PASSWORD}@127.0.0.1:{}?namespace={NAMESPACE}",
        server.port
    ))
    .await
    .expect("the platform connects");
    let events: Vec<EventEnvelope> = ["acme", "globex", "acme", "globex", "acme"]
        .iter()
        .zip(1..)
        .map(|(tenant, position)| envelope(position, tenant))
        .collect();
    platform.publisher.publish(&events).await.expect("publish");

    // Wrong password: refused.
    assert!(
        connect(&format!(
            "nats://acme:wrong-password@127.0.0.1:{}?namespace={NAMESPACE}",
            server.port
        ))
        .await
        .is_err()
    );

    let acme = integrator(&server, "acme").await;
    let globex = integrator(&server, "globex").await;
    let own = |tenant: &str| SubscribeOptions {
        tenant_id: Some(tenant.to_owned()),
        ..SubscribeOptions::new(SERVICE, tenant_consumer_name(tenant, "integration"))
    };
    // Each reads its own tenant's events through its own durable consumer.
    let mut acme_stream = acme.subscriber.subscribe(own("acme")).await.expect("acme");
    assert_eq!(drain(&mut acme_stream).await, ["acme", "acme", "acme"]);
    let mut globex_stream = globex
        .subscriber
        .subscribe(own("globex"))
        .await
        .expect("globex");
    assert_eq!(drain(&mut globex_stream).await, ["globex", "globex"]);

    // The server refuses acme, by permission alone: its spare consumer (a name it was given,
    // not created yet) filtered on globex or not filtered, globex's consumer (JetStream would
    // hand it over: same config), a consumer name not given to acme.
    let refused = [
        SubscribeOptions {
            tenant_id: Some("globex".to_owned()),
            ..SubscribeOptions::new(SERVICE, tenant_consumer_name("acme", "spare"))
        },
        SubscribeOptions::new(SERVICE, tenant_consumer_name("acme", "spare")),
        own("globex"),
        SubscribeOptions {
            tenant_id: Some("acme".to_owned()),
            ..SubscribeOptions::new(SERVICE, "acme_other")
        },
    ];
    let attempts = refused
        .into_iter()
        .map(|options| {
            let acme = acme.subscriber.clone();
            async move {
                let label = format!(
                    "{} filtered on {:?}",
                    options.durable_name, options.tenant_id
                );
                match acme.subscribe(options).await {
                    Err(_) => None,
                    Ok(mut stream) => {
                        let got = drain(&mut stream).await;
                        Some(format!("{label}: {got:?}"))
                    }
                }
            }
        })
        .collect::<Vec<_>>();
    let allowed: Vec<String> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(allowed.is_empty(), "the server let acme: {allowed:?}");
    // The same spare name filtered on acme is allowed: the refusals above were the filter's.
    let spare = SubscribeOptions {
        tenant_id: Some("acme".to_owned()),
        ..SubscribeOptions::new(SERVICE, tenant_consumer_name("acme", "spare"))
    };
    let mut spare = acme
        .subscriber
        .subscribe(spare)
        .await
        .expect("acme's spare");
    assert_eq!(drain(&mut spare).await, ["acme", "acme", "acme"]);

    // Live, on core NATS: acme's wildcard subscription to every tenant's subjects gets
    // nothing; its own tenant's subjects get its own events.
    let client =
        async_nats::ConnectOptions::with_user_and_password("acme".to_owned(), password("acme"))
            .custom_inbox_prefix(tenant_inbox_prefix("acme"))
            .connect(format!("nats://127.0.0.1:{}", server.port))
            .await
            .expect("core client");
    let prefix = format!("{NAMESPACE}.mpos.events.{SERVICE}");
    let mut everything = client
        .subscribe(format!("{prefix}.>"))
        .await
        .expect("subscribe");
    let mut own_live = client
        .subscribe(format!("{prefix}.acme.>"))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    platform
        .publisher
        .publish(&[envelope(6, "globex"), envelope(7, "acme")])
        .await
        .expect("publish");
    let live = tokio::time::timeout(Duration::from_secs(2), own_live.next())
        .await
        .expect("acme's own event, live")
        .expect("message");
    assert!(
        live.subject
            .as_str()
            .starts_with(&format!("{prefix}.acme."))
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), everything.next())
            .await
            .is_err(),
        "the wildcard subscription delivered something"
    );

    // Messages by sequence (which would bypass every filter) are refused.
    let stream = mpos_bus::stream_name(Some(NAMESPACE), SERVICE);
    for subject in [
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
    ] {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subject.clone(), r#"{"seq":2}"#.into()),
        )
        .await;
        let leaked = matches!(&answer, Ok(Ok(message)) if message.payload.windows(6).any(|w| w == b"globex"));
        assert!(!leaked, "{subject} answered globex's event");
        assert!(
            !matches!(&answer, Ok(Ok(_))),
            "{subject} answered: {answer:?}"
        );
    }
}

/// On Kafka with tenant topics: each tenant's topic holds exactly its events, a tenant's
/// subscription and follower read it, and the service topic still holds every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tenant_topics_hold_one_tenant_each() {
    use rdkafka::Message as _;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let Ok(base) = std::env::var("MPOS_TEST_KAFKA_URL") else {
        eprintln!("skipped: MPOS_TEST_KAFKA_URL names no Kafka");
        return;
    };
    let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let url = format!("{base}?namespace={namespace}&tenant_topics=true");
    let platform = connect(&url).await.expect("kafka");
    let events: Vec<EventEnvelope> = ["acme", "globex", "acme", "globex", "acme"]
        .iter()
        .zip(1..)
        .map(|(tenant, position)| envelope(position, tenant))
        .collect();
    platform.publisher.publish(&events).await.expect("publish");

    // The raw topics: each tenant's holds its own events only; the service's holds all.
    let bootstrap = base
        .trim_start_matches("kafka://")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let tenants_on = |topic: String, count: usize| {
        let bootstrap = bootstrap.clone();
        async move {
            let consumer: StreamConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", format!("raw-{}", uuid::Uuid::new_v4().simple()))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()
                .expect("consumer");
            consumer.subscribe(&[topic.as_str()]).expect("subscribe");
            let mut tenants = Vec::new();
            for _ in 0..count {
                let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
                    .await
                    .expect("a record in time")
                    .expect("record");
                use rdkafka::message::Headers as _;
                let tenant = message
                    .headers()
                    .and_then(|headers| {
                        headers
                            .iter()
                            .find(|header| header.key == "ce_tenantid")
                            .and_then(|header| header.value)
                    })
                    .map(|value| String::from_utf8_lossy(value).into_owned())
                    .unwrap_or_default();
                tenants.push(tenant);
            }
            // Nothing more.
            let more = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
            assert!(more.is_err(), "{topic} holds more than {count} records");
            tenants
        }
    };
    let ns = Some(namespace.as_str());
    assert_eq!(
        tenants_on(mpos_bus::kafka_tenant_topic(ns, SERVICE, "acme"), 3).await,
        ["acme", "acme", "acme"]
    );
    assert_eq!(
        tenants_on(mpos_bus::kafka_tenant_topic(ns, SERVICE, "globex"), 2).await,
        ["globex", "globex"]
    );
    assert_eq!(
        tenants_on(mpos_bus::kafka_topic(ns, SERVICE), 5).await,
        ["acme", "globex", "acme", "globex", "acme"]
    );

    // A tenant's subscription (group <tenant>_<name>, as its ACL allows) and follower read
    // its own topic.
    let acme = connect(&url).await.expect("kafka");
    let mut stream = acme
        .subscriber
        .subscribe(SubscribeOptions {
            tenant_id: Some("acme".to_owned()),
            ..SubscribeOptions::new(SERVICE, tenant_consumer_name("acme", "integration"))
        })
        .await
        .expect("subscribe");
    let mut got = Vec::new();
    while got.len() < 3 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("delivery");
        got.push(delivery.envelope.tenant_id.clone());
        delivery.ack().await.expect("ack");
    }
    assert_eq!(got, ["acme", "acme", "acme"]);
    let acls = mpos_bus::kafka_tenant_acls(ns, "acme", &[SERVICE]).expect("acls");
    assert_eq!(
        acls[0].name,
        mpos_bus::kafka_tenant_topic(ns, SERVICE, "acme")
    );
    assert_eq!(acls[1].name, format!("{namespace}.acme_"));
}
