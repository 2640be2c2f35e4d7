//! Tests of the whole file: sections together, errors naming keys, parser messages in words.

use rackwatch_protocols::Quantity;

use super::*;

const MINIMAL: &str = r#"
    site = "fra1"
    [mqtt]
    url = "mqtt://127.0.0.1:1883"
    [spool]
    dir = "/tmp/spool"
"#;

fn error_of(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_takes_defaults() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.mqtt.unwrap().client_id, "rackwatch-gateway");
    assert_eq!(config.http.listen, "127.0.0.1:9180".parse().unwrap());
    assert_eq!(
        config.normalise.plausible(Quantity::RelativeHumidity),
        Range { min: 0.0, max: 100.0 }
    );
}

#[test]
fn errors_name_the_key() {
    let bad_url = MINIMAL.replace("mqtt://127.0.0.1:1883", "http://x");
    assert!(
        error_of(&bad_url).starts_with("mqtt.url:"),
        "{}",
        error_of(&bad_url)
    );
    let bad_batch =
        format!("{MINIMAL}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\nbucket=\"b\"\nbatch_max_lines=0");
    assert!(error_of(&bad_batch).starts_with("influxdb.batch_max_lines:"));
    let both = MINIMAL.replace("[spool]", "password = { env = \"A\", file = \"/b\" }\n[spool]");
    assert!(error_of(&both).starts_with("mqtt.password:"));
    let calibration = format!("{MINIMAL}\n[nodes.n1.calibration.inlet_top]\ngain = 0.0");
    assert_eq!(
        error_of(&calibration),
        "nodes.n1.calibration.inlet_top: gain and offset must be finite and gain non-zero"
    );
}

#[test]
fn each_write_api_takes_its_own_keys() {
    let v1 = format!(
        "{MINIMAL}\n[influxdb]\nurl=\"http://db\"\napi=\"v1\"\ndatabase=\"racks\"\nusername=\"gw\"\npassword={{ env = \"P\" }}"
    );
    let influx = Config::parse(&v1).unwrap().influxdb.unwrap();
    assert_eq!(
        (influx.api, influx.database.as_deref()),
        (InfluxApi::V1, Some("racks"))
    );
    assert_eq!(
        error_of(&v1.replace("database=\"racks\"", "")),
        "influxdb.database: required with api = \"v1\""
    );
    assert!(
        error_of(&format!("{v1}\nbucket=\"b\"")).starts_with("influxdb.bucket: not a key of api = \"v1\"")
    );
    assert_eq!(
        error_of(&v1.replace("username=\"gw\"", "")),
        "influxdb.password: username and password go together"
    );
    let v2 = format!("{MINIMAL}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\ndatabase=\"racks\"");
    assert_eq!(error_of(&v2), "influxdb.bucket: required with api = \"v2\"");
}

#[test]
fn client_ids_with_every_suffix_stay_within_23_characters() {
    let with_id = |id: &str| MINIMAL.replace("[spool]", &format!("client_id = \"{id}\"\n[spool]"));
    assert!(Config::parse(&with_id("abcdefghijklmnopqrstu")).is_ok());
    assert_eq!(
        error_of(&with_id("abcdefghijklmnopqrstuv")),
        "mqtt.client_id: must be 1 to 21 characters: the gateway connects as `abcdefghijklmnopqrstuv-c` too (24 characters), and MQTT 3.1.1 servers need accept only 23"
    );
    let cluster = "[cluster]\npartition = 0\npartitions = [[\"r01\"], [\"r02\"]]\n";
    let config = format!("{}\n{cluster}", with_id("abcdefghijklmnopqrs"));
    assert!(
        error_of(&config).contains("`abcdefghijklmnopqrs-p1-c`"),
        "{}",
        error_of(&config)
    );
    let mut served = Config::parse(&format!("{MINIMAL}\n{cluster}")).unwrap();
    served.serve_partition(1).unwrap();
    assert_eq!(served.mqtt.unwrap().client_id, "rackwatch-gateway-p1");
}

#[test]
fn unknown_keys_and_bad_identifiers_are_refused() {
    assert!(error_of(&format!("{MINIMAL}\nsurprise = 1")).contains("surprise"));
    assert!(error_of(&MINIMAL.replace("fra1", "fra 1")).contains("identifier"));
}

#[test]
fn parse_errors_speak_of_the_file_not_of_rust_types() {
    let number = MINIMAL.replace("[spool]", "max_pending = \"many\"\n[spool]");
    let error = error_of(&number);
    assert!(error.contains("expected a whole number"), "{error}");
    assert!(!error.contains("usize"), "{error}");
    let secret = MINIMAL.replace("[spool]", "password = \"hunter2\"\n[spool]");
    let error = error_of(&secret);
    assert!(error.contains("{ env = \"VARIABLE\" }"), "{error}");
    assert!(!error.contains("SecretSource"), "{error}");
    let table = format!("normalise = 5\n{MINIMAL}");
    let error = error_of(&table);
    assert!(error.contains("expected a table"), "{error}");
}
