//! InfluxDB line protocol, written straight into a byte buffer.
//!
//! Hand-written rather than through the influxdb2 crate's `DataPoint`: that builder allocates a
//! String per tag and field of every point, and the gateway's budget is 2 µs of CPU per reading.
//! Tag values here are identifiers (`[A-Za-z0-9_.-]`, checked by `protocols` and the config), which
//! need no escaping; [`escape_tag`] still guards anything else.
//! Reference: InfluxDB v2 docs, "Line protocol" (measurement, tag set, field set, timestamp).

/// Appends a tag or measurement value, escaping commas, equals signs and spaces.
pub fn escape_tag(out: &mut Vec<u8>, value: &str) {
    if value
        .bytes()
        .all(|b| !matches!(b, b',' | b'=' | b' ' | b'\\' | b'\n' | b'\r'))
    {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for b in value.bytes() {
        match b {
            b',' | b'=' | b' ' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            // A newline would end the line: never legal in a tag.
            b'\n' | b'\r' => out.push(b'_'),
            _ => out.push(b),
        }
    }
}

/// Builds one line: `measurement,tag=v,... field=1.5,count=2i 1700000000000\n`.
#[derive(Debug)]
pub struct Line<'a> {
    out: &'a mut Vec<u8>,
    fields: usize,
}

impl<'a> Line<'a> {
    pub fn new(out: &'a mut Vec<u8>, measurement: &str) -> Self {
        escape_tag(out, measurement);
        Line { out, fields: 0 }
    }

    /// Appends a pre-built `measurement,tags` prefix (see [`crate::normalise`]'s series cache).
    pub fn with_prefix(out: &'a mut Vec<u8>, prefix: &[u8]) -> Self {
        out.extend_from_slice(prefix);
        Line { out, fields: 0 }
    }

    pub fn tag(self, key: &str, value: &str) -> Self {
        self.out.push(b',');
        escape_tag(self.out, key);
        self.out.push(b'=');
        escape_tag(self.out, value);
        self
    }

    fn field_key(&mut self, key: &str) {
        self.out.push(if self.fields == 0 { b' ' } else { b',' });
        escape_tag(self.out, key);
        self.out.push(b'=');
        self.fields += 1;
    }

    /// A float field. `value` must be finite (checked by the caller: line protocol has no NaN).
    pub fn float(mut self, key: &str, value: f64) -> Self {
        self.field_key(key);
        let mut buffer = ryu::Buffer::new();
        self.out.extend_from_slice(buffer.format_finite(value).as_bytes());
        self
    }

    pub fn int(mut self, key: &str, value: i64) -> Self {
        self.field_key(key);
        let mut buffer = itoa::Buffer::new();
        self.out.extend_from_slice(buffer.format(value).as_bytes());
        self.out.push(b'i');
        self
    }

    /// A string field: `"` and `\` escaped, as line protocol wants them.
    pub fn string(mut self, key: &str, value: &str) -> Self {
        self.field_key(key);
        self.out.push(b'"');
        for byte in value.bytes() {
            if byte == b'"' || byte == b'\\' {
                self.out.push(b'\\');
            }
            self.out.push(byte);
        }
        self.out.push(b'"');
        self
    }

    /// Ends the line with its timestamp in milliseconds (writes use `precision=ms`).
    pub fn finish(self, timestamp_ms: i64) {
        self.out.push(b' ');
        let mut buffer = itoa::Buffer::new();
        self.out.extend_from_slice(buffer.format(timestamp_ms).as_bytes());
        self.out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_full_line() {
        let mut out = Vec::new();
        Line::new(&mut out, "reading")
            .tag("node", "r01-n1")
            .float("value", 24.0625)
            .int("n", -3)
            .finish(1_700_000_000_123);
        assert_eq!(out, b"reading,node=r01-n1 value=24.0625,n=-3i 1700000000123\n");
    }

    #[test]
    fn escapes_what_line_protocol_reserves() {
        let mut out = Vec::new();
        escape_tag(&mut out, "a b,c=d\ne");
        assert_eq!(out, b"a\\ b\\,c\\=d_e");
    }

    #[test]
    fn floats_round_trip_exactly() {
        let mut out = Vec::new();
        Line::new(&mut out, "m").float("v", 0.1 + 0.2).finish(0);
        let text = String::from_utf8(out).unwrap();
        let value: f64 = text.split(['=', ' ']).nth(2).unwrap().parse().unwrap();
        assert_eq!(value, 0.1 + 0.2);
    }

    #[test]
    fn string_fields_escape_quotes_and_backslashes() {
        let mut out = Vec::new();
        Line::new(&mut out, "alert")
            .string("summary", r#"inlet "top" 30 \ C"#)
            .finish(1);
        assert_eq!(out, b"alert summary=\"inlet \\\"top\\\" 30 \\\\ C\" 1\n");
    }
}
