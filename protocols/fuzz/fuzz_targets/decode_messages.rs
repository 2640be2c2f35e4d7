//! Every JSON decoder on arbitrary bytes: no panic, and whatever decodes re-encodes and decodes to
//! the same message (the encoder and decoder are inverses on everything the decoder accepts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackwatch_protocols::{Ack, Alert, Command, NodeConfig, Status, Telemetry};

macro_rules! check {
    ($ty:ty, $data:expr) => {
        if let Ok(message) = <$ty>::decode($data) {
            let mut buf = [0u8; 8192];
            if let Ok(n) = message.encode(&mut buf) {
                let again = <$ty>::decode(&buf[..n]).expect("re-encoded message decodes");
                assert_eq!(again, message);
            }
        }
    };
}

fuzz_target!(|data: &[u8]| {
    check!(Telemetry, data);
    check!(Status, data);
    check!(Command, data);
    check!(Ack, data);
    check!(NodeConfig, data);
    check!(Alert, data);
});
