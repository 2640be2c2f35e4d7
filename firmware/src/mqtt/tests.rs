#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use super::*;
use proptest::prelude::*;

fn round_trip(packet: Packet<'_>) -> usize {
    let mut buf = [0u8; 4096];
    let n = packet.encode(&mut buf).unwrap();
    let (decoded, used) = Packet::decode(&buf[..n]).unwrap().unwrap();
    assert_eq!(decoded, packet);
    assert_eq!(used, n);
    // Every strict prefix is "need more bytes", never an error or a wrong packet.
    for cut in 0..n {
        assert_eq!(Packet::decode(&buf[..cut]), Ok(None), "prefix of {cut} bytes");
    }
    n
}

#[test]
fn connect_matches_the_spec_example_bytes() {
    // §3.1.2.10 example: protocol name, level 4, flags, keep alive 10 s; client id "a".
    let packet = Packet::Connect(Connect {
        client_id: "a",
        keep_alive_s: 10,
        clean_session: true,
        will: None,
        user_name: None,
        password: None,
    });
    let mut buf = [0u8; 64];
    let n = packet.encode(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0b10, 0, 10, 0, 1, b'a']
    );
    round_trip(packet);
}

#[test]
fn connect_with_will_and_credentials_round_trips() {
    round_trip(Packet::Connect(Connect {
        client_id: "r01-n1",
        keep_alive_s: 30,
        clean_session: true,
        will: Some(Will {
            topic: "rackwatch/v1/lab/r01-n1/status",
            payload: br#"{"v":1,"node":"r01-n1","state":"offline","boot":9}"#,
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
        user_name: Some("r01-n1"),
        password: Some(b"secret"),
    }));
}

#[test]
fn publish_qos1_is_header_topic_id_payload() {
    let packet = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "a/b",
        packet_id: Some(0x0102),
        payload: b"hi",
    });
    let mut buf = [0u8; 64];
    let n = packet.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], &[0x3A, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'h', b'i']);
    round_trip(packet);
}

#[test]
fn remaining_length_uses_up_to_four_bytes() {
    // §2.2.3 table 2.4 boundaries.
    for (len, bytes) in [(127usize, 1usize), (128, 2), (16_383, 2), (16_384, 3)] {
        let payload = [7u8; 16_384];
        let topic = "t";
        let payload_len = len - 2 - topic.len();
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            payload: &payload[..payload_len],
        });
        let mut buf = [0u8; 20_000];
        let n = packet.encode(&mut buf).unwrap();
        assert_eq!(n, 1 + bytes + len);
        assert_eq!(Packet::decode(&buf[..n]).unwrap().unwrap().1, n);
    }
    assert!(matches!(
        Packet::decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn control_packets_round_trip() {
    for packet in [
        Packet::ConnAck {
            session_present: false,
            code: ConnectReturn::Accepted,
        },
        Packet::ConnAck {
            session_present: true,
            code: ConnectReturn::NotAuthorized,
        },
        Packet::PubAck { packet_id: 65_535 },
        Packet::Subscribe {
            packet_id: 1,
            filter: "rackwatch/v1/lab/n/cmd",
            qos: QoS::AtLeastOnce,
        },
        Packet::SubAck {
            packet_id: 1,
            granted: Some(QoS::AtLeastOnce),
        },
        Packet::SubAck {
            packet_id: 2,
            granted: None,
        },
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect,
    ] {
        round_trip(packet);
    }
    let mut buf = [0u8; 8];
    assert_eq!(Packet::PingReq.encode(&mut buf), Ok(2));
    assert_eq!(&buf[..2], &[0xC0, 0]);
}

#[test]
fn refuses_qos2_reserved_flags_and_bad_utf8() {
    assert_eq!(
        Packet::decode(&[0x34, 5, 0, 1, b't', 0, 1]),
        Err(DecodeError::Unsupported)
    );
    assert!(matches!(
        Packet::decode(&[0xC1, 0]),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        Packet::decode(&[0x30, 3, 0, 1, 0xFF]),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        Packet::decode(&[0x40, 3, 0, 1, 9]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn publish_id_must_match_qos() {
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: Some(1),
        payload: b"",
    });
    assert_eq!(packet.encode(&mut [0u8; 16]), Err(EncodeError::Invalid));
    assert_eq!(
        Packet::PingReq.encode(&mut [0u8; 1]),
        Err(EncodeError::BufferTooSmall)
    );
}

proptest! {
    #[test]
    fn publish_round_trips(
        topic in "[a-z/]{1,40}",
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        id in 1u16..,
        qos1 in any::<bool>(),
        dup in any::<bool>(),
        retain in any::<bool>(),
    ) {
        let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        round_trip(Packet::Publish(Publish {
            dup: dup && qos1,
            qos,
            retain,
            topic: &topic,
            packet_id: qos1.then_some(id),
            payload: &payload,
        }));
    }

    #[test]
    fn connect_round_trips(
        client_id in "[a-z0-9-]{0,23}",
        keep_alive_s in any::<u16>(),
        will_payload in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        user in proptest::option::of("[a-z]{1,10}"),
        password in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
    ) {
        round_trip(Packet::Connect(Connect {
            client_id: &client_id,
            keep_alive_s,
            clean_session: keep_alive_s % 2 == 0,
            will: will_payload.as_deref().map(|payload| Will {
                topic: "w/t",
                payload,
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            user_name: user.as_deref(),
            password: password.as_deref(),
        }));
    }

    #[test]
    fn decode_never_panics_and_never_overreads(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(Some((_, used))) = Packet::decode(&bytes) {
            prop_assert!(used <= bytes.len());
        }
    }
}
