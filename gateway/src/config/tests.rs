//! Tests of the whole file: sections together, errors naming keys, parser messages in words.

use std::time::Duration;

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

#[test]
fn every_duration_key_reads_a_duration_with_a_unit() {
    let text = format!(
        "{}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\nbucket=\"b\"\nbatch_max_age=\"200ms\"\ntimeout=\"10s\"\nmax_backoff=\"2s\"\n[http]\nwindow=\"1h\"\n[normalise]\nmax_future=\"1m\"\nmax_age=\"90d\"",
        MINIMAL.replace("[spool]", "keep_alive = \"1m\"\n[spool]\ncommit_linger = \"0s\"")
    );
    let config = Config::parse(&text).unwrap();
    let influx = config.influxdb.unwrap();
    assert_eq!(config.mqtt.unwrap().keep_alive, Duration::from_secs(60));
    assert_eq!(
        (influx.batch_max_age, influx.timeout, influx.max_backoff),
        (
            Duration::from_millis(200),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    assert_eq!(config.spool.commit_linger, Duration::ZERO);
    assert_eq!(
        (config.http.window, config.http.window_minutes()),
        (Duration::from_secs(3600), 60)
    );
    assert_eq!(
        (config.normalise.max_future, config.normalise.max_age),
        (Duration::from_secs(60), Duration::from_secs(90 * 86_400))
    );
}

#[test]
fn duration_defaults_are_unchanged_by_the_rename() {
    let config = Config::parse(&format!(
        "{MINIMAL}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\nbucket=\"b\""
    ))
    .unwrap();
    let influx = config.influxdb.unwrap();
    let mqtt = config.mqtt.unwrap();
    assert_eq!(mqtt.keep_alive, Duration::from_secs(30));
    assert_eq!(
        (mqtt.read_interval, mqtt.max_queue_delay),
        (Duration::from_millis(20), Duration::from_millis(2))
    );
    assert_eq!(
        (influx.batch_max_age, influx.timeout, influx.max_backoff),
        (
            Duration::from_millis(1000),
            Duration::from_secs(30),
            Duration::from_secs(30)
        )
    );
    assert_eq!(config.spool.commit_linger, Duration::from_millis(5));
    assert_eq!(config.http.window_minutes(), 6 * 60);
    assert_eq!(
        (config.normalise.max_future, config.normalise.max_age),
        (Duration::from_secs(300), Duration::from_secs(604_800))
    );
}

#[test]
fn duration_keys_out_of_range_name_the_key() {
    let keep_alive = MINIMAL.replace("[spool]", "keep_alive = \"2s\"\n[spool]");
    assert_eq!(error_of(&keep_alive), "mqtt.keep_alive: must be 5s to 65535s");
    let linger = format!("{MINIMAL}commit_linger = \"1500ms\"");
    assert_eq!(error_of(&linger), "spool.commit_linger: must be 0s to 1s");
    let read = MINIMAL.replace("[spool]", "read_interval = \"2s\"\n[spool]");
    assert_eq!(error_of(&read), "mqtt.read_interval: must be 0s to 1s");
    let queue = MINIMAL.replace("[spool]", "max_queue_delay = \"0s\"\n[spool]");
    assert_eq!(error_of(&queue), "mqtt.max_queue_delay: must be 1ms to 10s");
    let timeout =
        format!("{MINIMAL}\n[influxdb]\nurl=\"http://db\"\norg=\"o\"\nbucket=\"b\"\ntimeout=\"0s\"");
    assert_eq!(error_of(&timeout), "influxdb.timeout: must be more than 0s");
    let window = format!("{MINIMAL}\n[http]\nwindow=\"90s\"");
    assert_eq!(
        error_of(&window),
        "http.window: must be whole minutes (one chart point per minute), at least 1m"
    );
}

#[test]
fn a_bare_number_for_a_duration_says_what_to_write() {
    let error = error_of(&format!("{MINIMAL}commit_linger = 5"));
    assert!(
        error.contains("expected a duration with a unit, such as \"500ms\", \"30s\""),
        "{error}"
    );
}

#[test]
fn an_old_numeric_duration_key_is_refused_with_its_new_name_and_value() {
    let keep_alive = MINIMAL.replace("[spool]", "keep_alive_secs = 45\n[spool]");
    assert_eq!(
        error_of(&keep_alive),
        "mqtt.keep_alive_secs: renamed `keep_alive`, a duration with a unit: write `keep_alive = \"45s\"`"
    );
    let linger = format!("{MINIMAL}commit_linger_ms = 5");
    assert_eq!(
        error_of(&linger),
        "spool.commit_linger_ms: renamed `commit_linger`, a duration with a unit: write `commit_linger = \"5ms\"`"
    );
    for (section, old, new) in [
        ("influxdb", "batch_max_age_ms = 200", "batch_max_age = \"200ms\""),
        ("influxdb", "timeout_secs = 10", "timeout = \"10s\""),
        ("influxdb", "max_backoff_secs = 2", "max_backoff = \"2s\""),
        ("normalise", "max_future_secs = 300", "max_future = \"300s\""),
        ("normalise", "max_age_secs = 604800", "max_age = \"604800s\""),
        ("http", "window_minutes = 60", "window = \"60m\""),
    ] {
        let influx = if section == "influxdb" {
            "url=\"http://db\"\norg=\"o\"\nbucket=\"b\"\n"
        } else {
            ""
        };
        let error = error_of(&format!("{MINIMAL}\n[{section}]\n{influx}{old}"));
        let old_key = old.split(' ').next().unwrap_or_default();
        assert!(
            error.starts_with(&format!("{section}.{old_key}: renamed")),
            "{error}"
        );
        assert!(error.ends_with(&format!("write `{new}`")), "{error}");
        // The value in its new form is accepted.
        assert!(
            Config::parse(&format!("{MINIMAL}\n[{section}]\n{influx}{new}")).is_ok(),
            "{new}"
        );
    }
}

#[test]
fn the_readme_example_and_the_compose_file_are_valid_configurations() {
    let readme = include_str!("../../README.md");
    let example = readme
        .split_once("## Configuration\n\n```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .unwrap_or_default();
    let config = Config::parse(example).unwrap();
    assert_eq!(config.spool.commit_linger, Duration::from_millis(5));
    assert_eq!(config.normalise.max_age, Duration::from_secs(7 * 86_400));
    Config::parse(include_str!("../../../deploy/compose/rackwatch.toml")).unwrap();
}

/// The stages read the configuration, never the other way round: a `config` module that imported a
/// stage would close an import circle as soon as that stage reads its section.
#[test]
fn config_imports_only_model_and_itself() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
    let mut files = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        files += 1;
        for (at, _) in text.match_indices("crate::") {
            let rest = text.get(at + "crate::".len()..).unwrap_or_default();
            let module = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            assert!(
                ["model", "config"].contains(&module),
                "{} names crate::{module}",
                path.display()
            );
        }
    }
    assert!(files >= 14, "{files} files in {}", folder.display());
}
