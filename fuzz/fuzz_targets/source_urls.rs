//! Every URL grammar: the facade's scheme dispatch and each backend's own parser.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = unireader::connector_from_url(s);
    let _ = reader_redis::RedisConfig::from_url(s);
    let _ = reader_mongo::MongoConfig::from_url(s);
    let _ = reader_kafka::KafkaConfig::from_url(s);
    for scheme in ["redis://", "rediss://", "mongodb://", "kafka://"] {
        let _ = unireader::connector_from_url(&format!("{scheme}{s}"));
    }
});
