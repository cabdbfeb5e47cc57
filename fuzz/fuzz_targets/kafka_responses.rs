//! Broker responses of our own group protocol, and consumer-protocol blobs from other members.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, body)) = data.split_first() {
        reader_kafka::fuzzing::decode_response(selector, body);
        reader_kafka::fuzzing::decode_consumer_protocol(body);
    }
});
