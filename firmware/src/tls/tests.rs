use std::println;

use super::*;

#[test]
fn tls_state_fits_its_budget() {
    let mut state = TlsState::new();
    let (pipe, buffers) = state.parts();
    let settings = TlsSettings {
        server_name: "broker.lab",
        trust: Trust::Ca(&[]),
    };
    let engine = engine(pipe, buffers, settings, rand_core::OsRng);
    let state_bytes = size_of::<TlsState>();
    let engine_bytes = size_of_val(&engine);
    println!("TLS RAM: state {state_bytes} bytes (records and pipe), engine {engine_bytes} bytes");
    // The QEMU board's 64 KiB hold the node's ~20 KiB; TLS may take at most 12 KiB of the rest.
    assert!(
        state_bytes + engine_bytes <= 12 * 1024,
        "{state_bytes} + {engine_bytes}"
    );
}

#[test]
fn a_connection_cut_inside_a_record_is_a_truncated_record() {
    let pipe = Pipe::new(READ_RECORD);
    pipe.with(|s| {
        s.restart(Phase::Handshaking);
        let n = s.cipher_in.spare().len().min(15);
        s.cipher_in.spare()[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 100]);
        s.received(n);
        s.transport_closed();
        assert_eq!(s.phase, Phase::Ended(Some(LinkFailure::TruncatedRecord)));
    });
    let pipe = Pipe::new(READ_RECORD);
    pipe.with(|s| {
        s.restart(Phase::Established);
        s.cipher_in.spare()[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 2]);
        s.received(7);
        s.transport_closed();
        assert_eq!(
            s.phase,
            Phase::Established,
            "closed at a record boundary: not truncated"
        );
    });
}

#[test]
fn a_record_longer_than_the_buffer_ends_the_connection() {
    let pipe = Pipe::new(READ_RECORD);
    pipe.with(|s| {
        s.restart(Phase::Handshaking);
        let [high, low] = u16::try_from(READ_RECORD + 1).unwrap().to_be_bytes();
        s.cipher_in.spare()[..5].copy_from_slice(&[0x17, 0x03, 0x03, high, low]);
        s.received(5);
        assert_eq!(s.phase, Phase::Ended(Some(LinkFailure::RecordTooLarge)));
    });
}
