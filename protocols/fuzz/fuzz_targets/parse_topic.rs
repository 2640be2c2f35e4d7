//! The topic parser on arbitrary strings: no panic, and an accepted topic is rebuilt exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackwatch_protocols::topic::{node, parse};
use rackwatch_protocols::{NodeId, SiteId};

fuzz_target!(|data: &[u8]| {
    let Ok(topic) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = parse(topic) {
        let site = SiteId::new(parsed.site).expect("parsed site is an identifier");
        let node_id = NodeId::new(parsed.node).expect("parsed node is an identifier");
        assert_eq!(node(&site, &node_id, parsed.kind).as_str(), topic);
    }
});
