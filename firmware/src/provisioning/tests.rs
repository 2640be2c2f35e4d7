use super::*;
use rackwatch_protocols::frame::MAX_ENCODED_LEN;

const CONFIG: &[u8] = br#"{"v":1,"node":"r01-n1","site":"fra1","location":{"room":"hall-a","rack":"a01"},"interval_ms":5000,"broker":{"host":"10.0.2.2","port":1883,"username":"r01-n1","password":"s3cret"},"channels":[{"ch":"inlet","gain":1.02,"offset":-0.5}]}"#;

fn line(kind: FrameKind, tag: u8, body: &[u8]) -> std::vec::Vec<u8> {
    let mut out = [0u8; MAX_ENCODED_LEN];
    let n = frame::encode(kind, tag, body, &mut out).unwrap();
    out[..n].to_vec()
}

fn feed_all(provisioning: &mut Provisioning, bytes: &[u8]) -> std::vec::Vec<(u8, Request)> {
    bytes.iter().filter_map(|&b| provisioning.feed(b)).collect()
}

#[test]
fn hello_get_and_set_config_are_recognised() {
    let mut p = Provisioning::new();
    assert!(!p.host_attached());
    assert_eq!(
        feed_all(&mut p, &line(FrameKind::Hello, 1, b"")),
        [(1, Request::Hello)]
    );
    assert!(p.host_attached());
    assert_eq!(
        feed_all(&mut p, &line(FrameKind::GetConfig, 2, b"")),
        [(2, Request::GetConfig)]
    );
    let got = feed_all(&mut p, &line(FrameKind::SetConfig, 3, CONFIG));
    assert_eq!(
        got,
        [(3, Request::SetConfig(NodeConfig::decode(CONFIG).unwrap()))]
    );
}

#[test]
fn a_corrupted_frame_is_dropped_and_the_next_one_read() {
    let mut p = Provisioning::new();
    let mut bad = line(FrameKind::SetConfig, 4, CONFIG);
    bad[20] ^= 0x01;
    assert_eq!(feed_all(&mut p, &bad), []);
    assert_eq!(p.dropped(), 1);
    assert_eq!(
        feed_all(&mut p, &line(FrameKind::Hello, 5, b"")),
        [(5, Request::Hello)]
    );
}

#[test]
fn out_of_range_values_are_refused() {
    let mut p = Provisioning::new();
    let slow = std::string::String::from_utf8_lossy(CONFIG).replace("5000", "99");
    assert_eq!(
        feed_all(&mut p, &line(FrameKind::SetConfig, 6, slow.as_bytes())),
        [(6, Request::Refused("interval_ms out of range"))]
    );
    assert_eq!(
        feed_all(&mut p, &line(FrameKind::SetConfig, 7, b"{\"node\":1}")),
        [(7, Request::Refused("not a valid configuration"))]
    );
}

#[test]
fn config_frame_leaves_the_password_out() {
    let config = NodeConfig::decode(CONFIG).unwrap();
    let (mut body, mut out) = ([0u8; 1024], [0u8; 1200]);
    let frame = config_frame(9, &config, &mut body, &mut out).unwrap().to_vec();
    assert_eq!(frame[0], 0, "a frame starts with a delimiter");
    let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
    let (_, parsed) = decoder.feed(&frame[1..]);
    let parsed = parsed.unwrap().unwrap();
    assert_eq!((parsed.kind, parsed.tag), (FrameKind::Config, 9));
    assert!(!std::str::from_utf8(parsed.body).unwrap().contains("s3cret"));
    let read_back = NodeConfig::decode(parsed.body).unwrap();
    assert_eq!(read_back.broker.password, None);
    assert_eq!(read_back.node, config.node);
}

#[test]
fn a_console_line_is_plain_text_until_a_host_attaches_then_a_log_frame() {
    let mut out = [0u8; 200];
    let plain = console_line(false, format_args!("boot {}", 7), &mut out).unwrap();
    assert_eq!(plain, b"boot 7\r\n");
    let framed = console_line(true, format_args!("boot {}", 7), &mut out)
        .unwrap()
        .to_vec();
    let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
    let parsed = decoder.feed(&framed[1..]).1.unwrap().unwrap();
    assert_eq!((parsed.kind, parsed.body), (FrameKind::Log, &b"boot 7"[..]));
}

#[test]
fn result_carries_the_tag_as_ack_id() {
    let (mut body, mut out) = ([0u8; 256], [0u8; 300]);
    let node = NodeId::new("r01-n1").unwrap();
    let frame = result_frame(12, node, AckResult::Rejected, Some("no"), &mut body, &mut out).unwrap();
    let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
    let parsed = decoder.feed(&frame[1..]).1.unwrap().unwrap();
    let ack = Ack::decode(parsed.body).unwrap();
    assert_eq!(
        (ack.id, ack.result, ack.detail.as_deref()),
        (12, AckResult::Rejected, Some("no"))
    );
}

mod provisioner {
    use super::*;
    use crate::config_store::RamFlash;
    use crate::{ChannelSetup, LinkError, LinkState};
    use rackwatch_hardware::{Channel, Measurement};
    use rackwatch_protocols::{ChannelName, SiteId};

    const SLOT: usize = 1024;
    type Flash = RamFlash<{ 2 * SLOT }>;

    /// A transport that is never up: provisioning does not need the broker.
    struct NoBroker;
    impl Transport for NoBroker {
        fn open(&mut self) -> Result<(), LinkError> {
            Err(LinkError)
        }
        fn state(&mut self) -> LinkState {
            LinkState::Closed
        }
        fn receive(&mut self, _: &mut [u8]) -> Result<usize, LinkError> {
            Err(LinkError)
        }
        fn send(&mut self, _: &[u8]) -> Result<usize, LinkError> {
            Err(LinkError)
        }
        fn close(&mut self) {}
    }

    fn node() -> Node<4> {
        let inlet = Channel::new(ChannelName::new("inlet").unwrap(), 0, Measurement::Temperature);
        let config = crate::NodeConfig::new(SiteId::new("lab").unwrap(), NodeId::new("lab-n0").unwrap(), 7);
        Node::new(config, &[ChannelSetup::new(inlet)]).unwrap()
    }

    fn defaults() -> NodeConfig {
        let mut config = NodeConfig::decode(CONFIG).unwrap();
        config.node = NodeId::new("lab-n0").unwrap();
        config.site = SiteId::new("lab").unwrap();
        config.channels.clear();
        config
    }

    fn provisioner(flash: Flash) -> Provisioner<Flash, SLOT> {
        Provisioner::new(
            ConfigStore::new(flash, 0).unwrap(),
            defaults(),
            check_plain_ipv4_broker,
        )
    }

    /// Feeds a `SetConfig` of `body`; returns the answer's ack and what was applied.
    fn set_config<F: NorFlash, const S: usize>(
        provisioner: &mut Provisioner<F, S>,
        node: &mut Node<4>,
        body: &[u8],
    ) -> (Ack, Option<NodeConfig>) {
        let mut sent = std::vec::Vec::new();
        let mut applied = None;
        for &byte in &line(FrameKind::SetConfig, 21, body) {
            if let Some(config) = provisioner.feed(byte, node, 1_000, &mut NoBroker, &mut |f| {
                sent.extend_from_slice(f)
            }) {
                applied = Some(config.clone());
            }
        }
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let parsed = decoder.feed(&sent[1..]).1.unwrap().unwrap();
        assert_eq!((parsed.kind, parsed.tag), (FrameKind::Result, 21));
        (Ack::decode(parsed.body).unwrap(), applied)
    }

    #[test]
    fn an_empty_store_boots_on_the_defaults_as_never_provisioned() {
        let provisioner = provisioner(Flash::new());
        assert_eq!(provisioner.origin(), ConfigOrigin::DefaultsUnprovisioned);
        assert_eq!(provisioner.in_force(), &defaults());
    }

    #[test]
    fn a_stored_configuration_is_applied_and_loaded_again_at_the_next_boot() {
        let mut node = node();
        let mut first = provisioner(Flash::new());
        let (ack, applied) = set_config(&mut first, &mut node, CONFIG);
        assert_eq!((ack.result, ack.node.as_str()), (AckResult::Ok, "r01-n1"));
        assert_eq!(applied, Some(NodeConfig::decode(CONFIG).unwrap()));
        assert_eq!(node.config().node.as_str(), "r01-n1");
        assert_eq!(node.config().config_origin, Some(ConfigOrigin::Provisioned));

        // A reset: the same flash, a new provisioner.
        let rebooted = provisioner(first.store.destroy());
        assert_eq!(rebooted.origin(), ConfigOrigin::Provisioned);
        assert_eq!(rebooted.in_force(), &NodeConfig::decode(CONFIG).unwrap());
        let mut node = self::node();
        assert_eq!(node.adopt_provisioned(rebooted.in_force(), 0), Ok(()));
        assert_eq!(
            (node.config().node.as_str(), node.config().site.as_str()),
            ("r01-n1", "fra1")
        );
    }

    #[test]
    fn both_slots_corrupt_boot_on_the_defaults_and_say_why() {
        let mut node = node();
        let mut first = provisioner(Flash::new());
        set_config(&mut first, &mut node, CONFIG);
        set_config(&mut first, &mut node, CONFIG);
        let mut flash = first.store.destroy();
        // A bit of each slot's first payload byte cleared (NOR flash can only clear bits): both
        // records fail their CRC.
        for slot in [0u32, 1] {
            flash
                .write(slot * SLOT as u32 + 12, &[0xFE, 0xFF, 0xFF, 0xFF])
                .unwrap();
        }
        let rebooted = provisioner(flash);
        assert_eq!(rebooted.origin(), ConfigOrigin::DefaultsStoreCorrupt);
        assert_eq!(rebooted.in_force(), &defaults());
    }

    #[test]
    fn a_configuration_for_a_channel_the_board_lacks_is_refused_and_not_stored() {
        let mut node = node();
        let mut provisioner = provisioner(Flash::new());
        let unknown = std::string::String::from_utf8_lossy(CONFIG).replace("\"inlet\"", "\"outlet\"");
        let (ack, applied) = set_config(&mut provisioner, &mut node, unknown.as_bytes());
        assert_eq!(
            (ack.result, ack.detail.as_deref()),
            (AckResult::Rejected, Some("unknown channel"))
        );
        assert_eq!(applied, None);
        assert_eq!(node.config().node.as_str(), "lab-n0");
        let rebooted = self::provisioner(provisioner.store.destroy());
        assert_eq!(rebooted.origin(), ConfigOrigin::DefaultsUnprovisioned);
    }

    #[test]
    fn what_the_board_cannot_do_is_refused_with_its_reason() {
        let mut node = node();
        let mut provisioner = provisioner(Flash::new());
        let named = std::string::String::from_utf8_lossy(CONFIG).replace("10.0.2.2", "broker.lan");
        let (ack, applied) = set_config(&mut provisioner, &mut node, named.as_bytes());
        assert_eq!(
            (ack.result, ack.detail.as_deref()),
            (AckResult::Rejected, Some("broker host not IPv4"))
        );
        assert_eq!(applied, None);
        assert_eq!(provisioner.in_force(), &defaults());
    }

    /// [`CONFIG`] with TLS to `broker.fra1.example`, trusting `ca` or `pin`, encoded.
    fn tls_config(ca: Option<&[u8]>, pin: Option<[u8; 32]>) -> std::vec::Vec<u8> {
        let mut config = NodeConfig::decode(CONFIG).unwrap();
        config.broker.port = 8883;
        config.broker.tls = true;
        config.broker.server_name = Some("broker.fra1.example".try_into().unwrap());
        config.broker.ca = ca.map(|der| rackwatch_protocols::CaCertificate::new(der).unwrap());
        config.broker.ca_pin = pin.map(rackwatch_protocols::CaPin);
        let mut json = [0u8; MAX_FRAME_LEN];
        let n = config.encode(&mut json).unwrap();
        json[..n].to_vec()
    }

    /// A CA-sized DER of `len` bytes (the node stores it without parsing; the handshake checks it).
    /// A P-256 CA from `openssl req` is about 450 bytes.
    fn fake_ca(len: usize) -> std::vec::Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    const TLS_SLOT: usize = 4096;
    type TlsFlash = RamFlash<{ 2 * TLS_SLOT }>;

    #[test]
    fn a_provisioned_ca_and_server_name_are_stored_read_back_and_loaded_at_the_next_boot() {
        let mut node = node();
        let store = ConfigStore::<_, TLS_SLOT>::new(TlsFlash::new(), 0).unwrap();
        let mut first = Provisioner::new(store, defaults(), check_tls_ipv4_broker);
        let json = tls_config(Some(&fake_ca(450)), None);
        let (ack, applied) = set_config(&mut first, &mut node, &json);
        assert_eq!((ack.result, ack.detail.as_deref()), (AckResult::Ok, None));
        let applied = applied.unwrap();
        assert_eq!(
            applied.broker.ca.as_ref().map(|ca| ca.der()),
            Some(&fake_ca(450)[..])
        );
        assert_eq!(applied.broker.tls_name(), "broker.fra1.example");

        // `GetConfig` shows the CA (it is public) but not the password.
        let mut body = [0u8; MAX_FRAME_LEN];
        let mut out = [0u8; MAX_ENCODED_LEN + 1];
        let frame = config_frame(3, first.in_force(), &mut body, &mut out).unwrap();
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let shown = decoder.feed(&frame[1..]).1.unwrap().unwrap();
        let shown = NodeConfig::decode(shown.body).unwrap();
        assert_eq!(
            (shown.broker.ca, shown.broker.password),
            (applied.broker.ca.clone(), None)
        );

        let rebooted = Provisioner::<_, TLS_SLOT>::new(
            ConfigStore::new(first.store.destroy(), 0).unwrap(),
            defaults(),
            check_tls_ipv4_broker,
        );
        assert_eq!(rebooted.origin(), ConfigOrigin::Provisioned);
        assert_eq!(rebooted.in_force(), &applied);
        #[cfg(feature = "tls")]
        {
            let settings = crate::tls::TlsSettings::of(&rebooted.in_force().broker).unwrap();
            assert_eq!(settings.server_name, "broker.fra1.example");
            assert_eq!(settings.trust, crate::tls::Trust::Ca(&fake_ca(450)));
        }
    }

    #[test]
    fn a_1_kib_slot_takes_a_pin_but_not_a_certificate() {
        let mut node = node();
        let mut provisioner = Provisioner::<_, SLOT>::new(
            ConfigStore::new(Flash::new(), 0).unwrap(),
            defaults(),
            check_tls_ipv4_broker,
        );
        // The largest CA a node takes: its base64 and the configuration exceed the slot.
        let with_ca = tls_config(Some(&fake_ca(rackwatch_protocols::MAX_CA_DER)), None);
        let (ack, applied) = set_config(&mut provisioner, &mut node, &with_ca);
        assert_eq!(
            (ack.result, ack.detail.as_deref()),
            (
                AckResult::Rejected,
                Some("configuration not stored (flash write failed or too large)")
            )
        );
        assert_eq!(applied, None);

        let pinned = rackwatch_protocols::CaPin::from_hex(&"ab".repeat(32)).unwrap();
        let with_pin = tls_config(None, Some(pinned.0));
        let (ack, applied) = set_config(&mut provisioner, &mut node, &with_pin);
        assert_eq!((ack.result, ack.detail.as_deref()), (AckResult::Ok, None));
        assert_eq!(applied.unwrap().broker.ca_pin, Some(pinned));
        let rebooted = Provisioner::<_, SLOT>::new(
            ConfigStore::new(provisioner.store.destroy(), 0).unwrap(),
            defaults(),
            check_tls_ipv4_broker,
        );
        assert_eq!(rebooted.in_force().broker.ca_pin, Some(pinned));
        #[cfg(feature = "tls")]
        assert_eq!(
            crate::tls::TlsSettings::of(&rebooted.in_force().broker).map(|s| s.trust),
            Some(crate::tls::Trust::Pin(pinned.0))
        );
    }

    #[test]
    fn tls_without_trust_and_tls_on_a_board_without_it_are_refused() {
        let mut node = node();
        let mut tls_board = Provisioner::<_, SLOT>::new(
            ConfigStore::new(Flash::new(), 0).unwrap(),
            defaults(),
            check_tls_ipv4_broker,
        );
        let (ack, _) = set_config(&mut tls_board, &mut node, &tls_config(None, None));
        assert_eq!(ack.detail.as_deref(), Some("tls without a CA or CA pin"));
        let (ack, _) = set_config(&mut tls_board, &mut node, CONFIG);
        assert_eq!(
            ack.detail.as_deref(),
            Some("this build speaks only TLS (provision with --tls --ca)")
        );

        let mut plain_board = provisioner(Flash::new());
        let pinned = tls_config(None, Some([0; 32]));
        let (ack, applied) = set_config(&mut plain_board, &mut node, &pinned);
        assert_eq!(
            (ack.result, ack.detail.as_deref()),
            (AckResult::Rejected, Some("no TLS on this board"))
        );
        assert_eq!(applied, None);
    }

    #[test]
    fn a_changed_trust_is_a_tls_change() {
        let with = |pin| NodeConfig::decode(&tls_config(None, Some(pin))).unwrap().broker;
        let (pin_a, pin_b) = (with([0; 32]), with([1; 32]));
        assert!(same_tls(&pin_a, &pin_a.clone()));
        assert!(!same_tls(&pin_a, &pin_b));
        assert!(!same_tls(&pin_a, &NodeConfig::decode(CONFIG).unwrap().broker));
    }
}
