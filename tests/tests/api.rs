//! The OpenAPI description the gateway serves is checked against its real responses: for every read
//! route and every acting route, with and without the token, the body validates against the schema
//! the document gives for that path, method and status.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::time::Duration;

use rackwatch_tests::room::{INLET_HOT_RULE, Room, within};
use rackwatch_tests::{Gateway, GatewaySettings, Mosquitto};
use serde_json::{Value, json};

const GATEWAY: &str = env!("CARGO_BIN_EXE_rackwatch-e2e");
const TOKEN: &str = "api-test-token";

struct Api {
    base: String,
    http: reqwest::Client,
    document: Value,
    checked: usize,
}

impl Api {
    /// Sends a request and validates the response body against the document's schema for it.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        template: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "get" => self.http.get(url),
            "post" => self.http.post(url),
            "delete" => self.http.delete(url),
            _ => unreachable!(),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let operation = &self.document["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the OpenAPI document"
        );
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path} answered {status}, which the document does not list: {text}"
        );
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if let Some(schema) = documented["content"]["application/json"].get("schema") {
            let mut rooted = schema.clone();
            rooted["components"] = self.document["components"].clone();
            let validator = jsonschema::validator_for(&rooted).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{} at {}", e, e.instance_path))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} ({status}) does not match the document: {errors:?}\nbody: {text}"
            );
            self.checked += 1;
        }
        (status, value)
    }
}

/// A stand-in node that acks every command on its topic with `ok`; returns once subscribed.
async fn acking_node(port: u16, site: &str, node: &str) -> tokio::task::JoinHandle<()> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new(format!("ack-{node}"), "127.0.0.1", port), 16);
    let commands = format!("rackwatch/v1/{site}/{node}/cmd");
    client.subscribe(&commands, QoS::AtLeastOnce).await.unwrap();
    while !matches!(
        eventloop.poll().await.unwrap(),
        Event::Incoming(Packet::SubAck(_))
    ) {}
    let node = rackwatch_protocols::NodeId::new(node).unwrap();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let command = rackwatch_protocols::Command::decode(&p.payload).unwrap();
                let ack = rackwatch_protocols::Ack::new(
                    command.id,
                    node.clone(),
                    rackwatch_protocols::AckResult::Ok,
                );
                let mut buf = [0u8; 256];
                let n = ack.encode(&mut buf).unwrap();
                let topic = format!("{}/ack", p.topic);
                client
                    .publish(topic, QoS::AtLeastOnce, false, buf[..n].to_vec())
                    .await
                    .unwrap();
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_openapi_document_says() {
    let broker = Mosquitto::start();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let room = Room::new("api", &[("r01", "a01"), ("r01", "a02")]);
    let mut settings = GatewaySettings::new("api");
    settings.mqtt_url = Some(broker.url());
    settings.http_extra = format!("token = {{ file = \"{}\" }}", token_file.display());
    settings.extra = format!("{}\n{INLET_HOT_RULE}", room.inventory());
    let gateway = Gateway::start(GATEWAY, &settings);
    let publisher = room.start(broker.port());
    room.set_hot("a02", true);

    let base = format!("http://127.0.0.1:{}", gateway.http_port());
    let document: Value = reqwest::get(format!("{base}/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served_file: Value = serde_json::from_str(include_str!("../../gateway/openapi.json")).unwrap();
    assert_eq!(document, served_file, "the gateway serves gateway/openapi.json");
    let mut api = Api {
        base,
        http: reqwest::Client::new(),
        document,
        checked: 0,
    };

    // Wait until the hot rack's alert fires, so every list below has content to check.
    let fired = within(Duration::from_secs(15), || {
        let http = api.http.clone();
        let url = format!("{}/api/alerts", api.base);
        async move {
            let alerts: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            alerts
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["state"] == "firing"))
        }
    })
    .await;
    assert!(fired.is_some(), "the hot rack's alert never fired");

    let (status, room_body) = api.call("get", "/api/room", "/api/room", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(room_body["racks"].as_array().unwrap().len(), 2);
    let (status, rack) = api
        .call("get", "/api/racks/hall-a.r01.a02", "/api/racks/{id}", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(rack["inlet_max"], 36.5);
    assert_eq!(rack["probes"].as_array().unwrap().len(), 4);
    let (status, _) = api
        .call("get", "/api/racks/nowhere", "/api/racks/{id}", None, None)
        .await;
    assert_eq!(status, 404);
    let (status, history) = api
        .call(
            "get",
            "/api/racks/hall-a.r01.a02/history?range=1h&metric=inlet",
            "/api/racks/{id}/history",
            None,
            None,
        )
        .await;
    assert_eq!((status, &history["metric"]), (200, &json!("inlet")));
    let (status, _) = api
        .call(
            "get",
            "/api/racks/hall-a.r01.a02/history?range=2w",
            "/api/racks/{id}/history",
            None,
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, nodes) = api.call("get", "/api/nodes", "/api/nodes", None, None).await;
    assert_eq!((status, nodes.as_array().unwrap().len()), (200, 2));
    let (status, firmware) = api
        .call("get", "/api/firmware", "/api/firmware", None, None)
        .await;
    assert_eq!((status, firmware.as_array().unwrap().len()), (200, 2));

    let (status, alerts) = api.call("get", "/api/alerts", "/api/alerts", None, None).await;
    assert_eq!(status, 200);
    let key = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"] == "firing")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = format!("/api/alerts/{key}");
    assert_eq!(
        api.call("get", &one, "/api/alerts/{key}", None, None).await.0,
        200
    );
    assert_eq!(
        api.call("get", "/api/alerts/none", "/api/alerts/{key}", None, None)
            .await
            .0,
        404
    );

    // Acting: refused without the token or with a wrong one, done with it.
    let ack = format!("/api/alerts/{key}/ack");
    let by = Some(json!({ "by": "api test" }));
    assert_eq!(
        api.call("post", &ack, "/api/alerts/{key}/ack", None, by.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        api.call("post", &ack, "/api/alerts/{key}/ack", Some("wrong"), by.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        api.call("post", &ack, "/api/alerts/{key}/ack", Some(TOKEN), by)
            .await
            .0,
        204
    );
    // The read view follows the engine asynchronously.
    let shown = within(Duration::from_secs(5), || {
        let request = api.http.get(format!("{}{one}", api.base));
        async move {
            let alert: Value = request.send().await.unwrap().json().await.unwrap();
            alert["acknowledged"]["by"] == "api test"
        }
    })
    .await;
    assert!(shown.is_some(), "the acknowledgement does not show in GET {one}");
    let (_, acknowledged) = api.call("get", &one, "/api/alerts/{key}", None, None).await;
    assert_eq!(acknowledged["acknowledged"]["by"], "api test");

    let silence = Some(json!({ "matchers": { "rack": "a01" }, "minutes": 30, "created_by": "api test" }));
    assert_eq!(
        api.call("post", "/api/silences", "/api/silences", None, silence.clone())
            .await
            .0,
        401
    );
    let (status, created) = api
        .call("post", "/api/silences", "/api/silences", Some(TOKEN), silence)
        .await;
    assert_eq!(status, 201);
    let bad = Some(json!({ "matchers": {}, "minutes": 30, "ends_ms": 5 }));
    assert_eq!(
        api.call("post", "/api/silences", "/api/silences", Some(TOKEN), bad)
            .await
            .0,
        400
    );
    let (status, silences) = api
        .call("get", "/api/silences", "/api/silences", None, None)
        .await;
    assert_eq!((status, silences.as_array().unwrap().len()), (200, 1));
    let remove = format!("/api/silences/{}", created["id"]);
    assert_eq!(
        api.call("delete", &remove, "/api/silences/{id}", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        api.call("delete", &remove, "/api/silences/{id}", Some(TOKEN), None)
            .await
            .0,
        204
    );

    // Commanding a node: refused without the token, 504 when the node never answers, the node's
    // ack when it does (a stand-in for node n-a01 acks every command).
    let commands = "/api/nodes/n-a01/commands";
    let identify = Some(json!({ "action": "identify", "seconds": 5, "timeout": "1s" }));
    assert_eq!(
        api.call(
            "post",
            commands,
            "/api/nodes/{id}/commands",
            None,
            identify.clone()
        )
        .await
        .0,
        401
    );
    assert_eq!(
        api.call(
            "post",
            commands,
            "/api/nodes/{id}/commands",
            Some(TOKEN),
            identify.clone()
        )
        .await
        .0,
        504
    );
    let bad = Some(json!({ "action": "set_interval", "interval": "1ms" }));
    assert_eq!(
        api.call("post", commands, "/api/nodes/{id}/commands", Some(TOKEN), bad)
            .await
            .0,
        400
    );
    let _node = acking_node(broker.port(), "api", "n-a01").await;
    let (status, ack) = api
        .call(
            "post",
            commands,
            "/api/nodes/{id}/commands",
            Some(TOKEN),
            identify,
        )
        .await;
    assert_eq!(
        (status, &ack["result"], &ack["node"]),
        (200, &json!("ok"), &json!("n-a01"))
    );

    assert!(
        api.checked >= 15,
        "only {} bodies were checked against a schema",
        api.checked
    );
    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_only_when_a_certificate_is_configured() {
    // A CA and a server certificate it signs (webpki refuses a CA certificate as a server's own).
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    std::fs::write(
        file("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = rackwatch_tests::find_binary("openssl", "openssl");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&openssl)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "1",
            "-subj",
            "/CN=rackwatch test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let (cert, key) = (file("cert.pem"), file("key.pem"));
    let broker = Mosquitto::start();
    let mut settings = GatewaySettings::new("tls");
    settings.mqtt_url = Some(broker.url());
    settings.tls = Some((cert, key));
    let gateway = Gateway::start(GATEWAY, &settings);

    let ca = reqwest::Certificate::from_pem(&std::fs::read(file("ca.pem")).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/health", gateway.http_port());
    let body = within(Duration::from_secs(10), || {
        let request = https.get(url.clone());
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    assert!(
        body.is_some(),
        "no answer over HTTPS; gateway log:\n{}",
        gateway.log()
    );
    let plain = reqwest::get(format!("http://127.0.0.1:{}/health", gateway.http_port())).await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be served"
    );
}
