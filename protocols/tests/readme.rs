//! Every example in protocols/README.md is what the encoder writes: decoding a ```json block and
//! encoding it again gives the same bytes, and each ```hex frame block is a valid frame.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use rackwatch_protocols::frame::{FrameDecoder, MAX_ENCODED_LEN, encode};
use rackwatch_protocols::{
    Ack, Alert, Command, DecodeError, EncodeError, NodeConfig, OtaAck, Status, Telemetry,
};

const README: &str = include_str!("../README.md");

/// The README's fenced blocks as (info string, body).
fn blocks() -> Vec<(&'static str, &'static str)> {
    let mut blocks = Vec::new();
    let mut rest = README;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (info, body_and_rest) = after.split_once('\n').unwrap();
        let end = body_and_rest.find("```").unwrap();
        blocks.push((info.trim(), body_and_rest[..end].trim()));
        rest = &body_and_rest[end + 3..];
    }
    blocks
}

fn reencode<M>(
    json: &str,
    decode: fn(&[u8]) -> Result<M, DecodeError>,
    encode: fn(&M, &mut [u8]) -> Result<usize, EncodeError>,
) -> String {
    let message =
        decode(json.as_bytes()).unwrap_or_else(|e| panic!("README example does not decode: {e}\n{json}"));
    let mut buf = [0u8; 4096];
    let n = encode(&message, &mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn every_json_example_is_the_encoders_output() {
    let mut checked = 0;
    for (info, body) in blocks() {
        let encoded = match info {
            "json telemetry" => reencode(body, Telemetry::decode, Telemetry::encode),
            "json status" => reencode(body, Status::decode, Status::encode),
            "json command" => reencode(body, Command::decode, Command::encode),
            "json ack" => reencode(body, Ack::decode, Ack::encode),
            "json config" => reencode(body, NodeConfig::decode, NodeConfig::encode),
            "json alert" => reencode(body, Alert::decode, Alert::encode),
            "json ota_ack" => reencode(body, OtaAck::decode, OtaAck::encode),
            "json" => panic!("a ```json block in the README names no message type"),
            _ => continue,
        };
        assert_eq!(
            encoded, body,
            "README example ({info}) differs from the encoder's output"
        );
        checked += 1;
    }
    assert_eq!(checked, 17, "examples checked");
}

#[test]
fn every_frame_example_is_the_encoders_output() {
    let mut checked = 0;
    for (info, body) in blocks().into_iter().filter(|(info, _)| *info == "hex frame") {
        let line: Vec<u8> = body
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let mut decoder = FrameDecoder::<MAX_ENCODED_LEN>::new();
        let (used, frame) = decoder.feed(&line);
        assert_eq!(used, line.len(), "{info}: one frame per example");
        let frame = frame.unwrap().unwrap();
        let mut out = [0u8; 64];
        let n = encode(frame.kind, frame.tag, frame.body, &mut out).unwrap();
        assert_eq!(&out[..n], &line[..]);
        checked += 1;
    }
    assert_eq!(checked, 2);
}
