//! Property tests: every message survives encode -> decode unchanged, the gateway's serde_json reads
//! the device encoder's bytes identically, and no input makes a decoder panic.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use proptest::collection::vec;
use proptest::prelude::*;
use rackwatch_protocols::frame::{self, FrameDecoder, FrameKind, MAX_ENCODED_LEN};
use rackwatch_protocols::{
    Ack, AckResult, Alert, AlertState, BrokerConfig, CaCertificate, CaPin, ChannelConfig, ChannelName,
    Command, CommandKind, ConfigOrigin, FanTarget, Label, LinkFailure, Location, MAX_CA_DER, MAX_READINGS,
    NodeConfig, NodeId, NodeState, Quantity, Reading, ReadingStatus, Secret, Severity, SiteId, Status,
    Telemetry, Unit,
    update::{OtaResult, Slot},
};

/// A string that satisfies the identifier rule, 1 to `N` characters.
fn ident<const N: usize>() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9_.-]{{1,{N}}}")).unwrap()
}

fn node_id() -> impl Strategy<Value = NodeId> {
    ident::<32>().prop_map(|s| NodeId::new(&s).unwrap())
}
fn label() -> impl Strategy<Value = Label> {
    ident::<32>().prop_map(|s| Label::new(&s).unwrap())
}
fn channel() -> impl Strategy<Value = ChannelName> {
    ident::<24>().prop_map(|s| ChannelName::new(&s).unwrap())
}
fn text<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    // Printable ASCII without quotes or backslashes: JSON escapes are not part of the wire format.
    proptest::string::string_regex(&format!("[ !#-\\[\\]-~]{{0,{N}}}"))
        .unwrap()
        .prop_map(|s| heapless::String::try_from(s.as_str()).unwrap())
}
fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e6..1e6f64,
        any::<f64>().prop_filter("finite", |v| v.is_finite())
    ]
}

fn quantity() -> impl Strategy<Value = Quantity> {
    proptest::sample::select(Quantity::ALL.to_vec())
}
fn unit() -> impl Strategy<Value = Unit> {
    proptest::sample::select(vec![
        Unit::Celsius,
        Unit::Fahrenheit,
        Unit::Kelvin,
        Unit::PercentRh,
        Unit::Volt,
        Unit::Millivolt,
        Unit::Ampere,
        Unit::Milliampere,
        Unit::Watt,
        Unit::Kilowatt,
        Unit::WattHour,
        Unit::KilowattHour,
        Unit::Rpm,
        Unit::Percent,
    ])
}
fn reading_status() -> impl Strategy<Value = ReadingStatus> {
    proptest::sample::select(vec![
        ReadingStatus::Ok,
        ReadingStatus::Fault,
        ReadingStatus::OutOfRange,
        ReadingStatus::NotReady,
    ])
}

prop_compose! {
    fn reading()(channel in channel(), quantity in quantity(), value in proptest::option::of(finite()),
                 unit in unit(), status in reading_status()) -> Reading {
        Reading { channel, quantity, value, unit, status }
    }
}

prop_compose! {
    fn telemetry()(node in node_id(), boot in any::<u32>(), seq in any::<u32>(),
                   timestamp_ms in proptest::option::of(any::<u64>()), uptime_ms in any::<u64>(),
                   dropped in any::<u32>(), readings in vec(reading(), 0..=MAX_READINGS)) -> Telemetry {
        Telemetry { version: 1, node, boot, seq, timestamp_ms, uptime_ms, dropped,
                    readings: heapless::Vec::from_slice(&readings).unwrap() }
    }
}

fn config_origin() -> impl Strategy<Value = ConfigOrigin> {
    prop_oneof![
        Just(ConfigOrigin::Provisioned),
        Just(ConfigOrigin::DefaultsUnprovisioned),
        Just(ConfigOrigin::DefaultsStoreCorrupt),
        Just(ConfigOrigin::DefaultsStoreUnusable),
    ]
}

fn link_failure() -> impl Strategy<Value = LinkFailure> {
    prop_oneof![
        Just(LinkFailure::UnknownCa),
        Just(LinkFailure::PinMismatch),
        Just(LinkFailure::WrongHostName),
        Just(LinkFailure::BadSignature),
        Just(LinkFailure::ProtocolVersion),
        Just(LinkFailure::Alert),
        Just(LinkFailure::TruncatedRecord),
        Just(LinkFailure::RecordTooLarge),
        Just(LinkFailure::Protocol),
    ]
}

prop_compose! {
    fn status()(node in node_id(), online in any::<bool>(), boot in any::<u32>(),
                firmware in proptest::option::of(text::<24>()), serial in proptest::option::of(text::<24>()),
                uptime_ms in proptest::option::of(any::<u64>()),
                interval_ms in proptest::option::of(any::<u32>()),
                config in proptest::option::of(config_origin()),
                channels in vec(channel(), 0..=MAX_READINGS),
                slot in proptest::option::of(prop_oneof![Just(Slot::A), Just(Slot::B)]),
                update in proptest::option::of(prop_oneof![
                    Just(OtaResult::Confirmed), Just(OtaResult::RolledBack), Just(OtaResult::Refused)]),
                link in proptest::option::of(link_failure())) -> Status {
        let state = if online { NodeState::Online } else { NodeState::Offline };
        let channels = heapless::Vec::from_slice(&channels).unwrap();
        Status { version: 1, node, state, boot, firmware, serial, uptime_ms, interval_ms, config, channels, slot, update, link }
    }
}

prop_compose! {
    fn channel_config()(channel in channel(), placement in proptest::option::of(label()),
                        gain in -100.0..100.0f32, offset in -100.0..100.0f32,
                        interval_ms in proptest::option::of(any::<u32>())) -> ChannelConfig {
        ChannelConfig { channel, placement, gain, offset, interval_ms }
    }
}

prop_compose! {
    fn node_config()(node in node_id(), site in ident::<32>(), room in proptest::option::of(label()),
                     row in proptest::option::of(label()), rack in proptest::option::of(label()),
                     unit in proptest::option::of(any::<u8>()), interval_ms in any::<u32>(),
                     host in text::<64>(), port in any::<u16>(), tls in any::<bool>(),
                     username in proptest::option::of(text::<32>()),
                     password in proptest::option::of(text::<64>()),
                     server_name in proptest::option::of(text::<64>()),
                     ca in proptest::option::of(vec(any::<u8>(), 1..=MAX_CA_DER)),
                     ca_pin in proptest::option::of(any::<[u8; 32]>()),
                     channels in vec(channel_config(), 0..4)) -> NodeConfig {
        NodeConfig {
            version: 1, node, site: SiteId::new(&site).unwrap(),
            location: Location { room, row, rack, unit }, interval_ms,
            broker: BrokerConfig { host, port, tls, server_name, username,
                                   ca: ca.and_then(|der| CaCertificate::new(&der)),
                                   ca_pin: ca_pin.map(CaPin),
                                   password: password.and_then(|p| Secret::new(&p)) },
            channels: heapless::Vec::from_slice(&channels).unwrap(),
        }
    }
}

fn command() -> impl Strategy<Value = Command> {
    let kind = prop_oneof![
        (100u32..=3_600_000).prop_map(|interval_ms| CommandKind::SetInterval { interval_ms }),
        (any::<u8>(), 0.0..=100.0f32).prop_map(|(fan, duty)| CommandKind::SetFan {
            fan,
            target: FanTarget::DutyPercent(duty)
        }),
        (any::<u8>(), any::<u16>()).prop_map(|(fan, rpm)| CommandKind::SetFan {
            fan,
            target: FanTarget::Rpm(rpm)
        }),
        any::<u16>().prop_map(|seconds| CommandKind::Identify { seconds }),
        Just(CommandKind::Reboot),
        node_config().prop_map(CommandKind::Provision),
    ];
    (any::<u32>(), kind).prop_map(|(id, kind)| Command { id, kind })
}

prop_compose! {
    fn ack()(id in any::<u32>(), node in node_id(), result in 0..4u8,
             detail in proptest::option::of(text::<64>())) -> Ack {
        let result = [AckResult::Ok, AckResult::Rejected, AckResult::Unsupported, AckResult::Failed][result as usize];
        Ack { version: 1, id, node, result, detail }
    }
}

prop_compose! {
    fn alert()(key in text::<128>(), rule in label(), critical in any::<bool>(), state in 0..3u8,
               room in proptest::option::of(label()), rack in proptest::option::of(label()),
               node in proptest::option::of(node_id()), channel in proptest::option::of(channel()),
               value in proptest::option::of(finite()), threshold in proptest::option::of(finite()),
               since_ms in any::<u64>(), summary in text::<192>()) -> Alert {
        Alert {
            version: 1, key, rule,
            severity: if critical { Severity::Critical } else { Severity::Warning },
            state: [AlertState::Pending, AlertState::Firing, AlertState::Resolved][state as usize],
            room, row: None, rack, node, channel, value, threshold, since_ms, summary,
        }
    }
}

/// Encodes with the device encoder, decodes with both decoders, and compares.
macro_rules! round_trip {
    ($name:ident, $strategy:expr, $ty:ty) => {
        proptest! {
            #[test]
            fn $name(message in $strategy) {
                let mut buf = [0u8; 4096];
                let n = message.encode(&mut buf).unwrap();
                prop_assert_eq!(&<$ty>::decode(&buf[..n]).unwrap(), &message);
                let by_serde_json: $ty = serde_json::from_slice(&buf[..n]).unwrap();
                prop_assert_eq!(&by_serde_json, &message);
            }
        }
    };
}

round_trip!(telemetry_round_trips, telemetry(), Telemetry);
round_trip!(status_round_trips, status(), Status);
round_trip!(command_round_trips, command(), Command);
round_trip!(ack_round_trips, ack(), Ack);
round_trip!(node_config_round_trips, node_config(), NodeConfig);
round_trip!(alert_round_trips, alert(), Alert);

proptest! {
    #[test]
    fn decoders_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = Telemetry::decode(&bytes);
        let _ = Status::decode(&bytes);
        let _ = Command::decode(&bytes);
        let _ = Ack::decode(&bytes);
        let _ = NodeConfig::decode(&bytes);
        let _ = Alert::decode(&bytes);
        let _ = rackwatch_protocols::topic::parse(&String::from_utf8_lossy(&bytes));
        let mut decoder = FrameDecoder::<256>::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (used, _) = decoder.feed(rest);
            rest = &rest[used..];
        }
    }

    #[test]
    fn frames_survive_any_chunking(body in vec(any::<u8>(), 0..300), tag in any::<u8>(),
                                   cuts in vec(1usize..50, 1..20)) {
        let mut line = vec![0u8; MAX_ENCODED_LEN];
        let n = frame::encode(FrameKind::Telemetry, tag, &body, &mut line).unwrap();
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let mut rest = &line[..n];
        let mut got = None;
        for cut in cuts.iter().cycle() {
            if rest.is_empty() { break; }
            let chunk = &rest[..(*cut).min(rest.len())];
            let (used, frame) = decoder.feed(chunk);
            rest = &rest[used..];
            if let Some(frame) = frame {
                let frame = frame.unwrap();
                got = Some((frame.kind, frame.tag, frame.body.to_vec()));
            }
        }
        prop_assert_eq!(got, Some((FrameKind::Telemetry, tag, body)));
    }
}
