//! The serial frame decoder on an arbitrary byte stream: no panic, bounded memory, and every frame
//! it accepts re-encodes to bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackwatch_protocols::frame::{FrameDecoder, MAX_ENCODED_LEN, encode};

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::<512>::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (used, frame) = decoder.feed(rest);
        rest = &rest[used..];
        if let Some(Ok(frame)) = frame {
            let mut line = [0u8; MAX_ENCODED_LEN];
            let n = encode(frame.kind, frame.tag, frame.body, &mut line).expect("accepted frame re-encodes");
            let mut again = FrameDecoder::<MAX_ENCODED_LEN>::new();
            let (_, decoded) = again.feed(&line[..n]);
            assert_eq!(decoded, Some(Ok(frame)));
        }
    }
});
