//! What `tail` prints.

use base64::Engine;
use reader_core::Message;
use serde_json::{json, Value};

fn text_or_base64(bytes: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Value::String(s.to_owned()), "utf8"),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            "base64",
        ),
    }
}

/// One message as the JSON object `tail` prints: `source`, `position`, `key`, `payload`
/// (UTF-8 text, or base64 with `"payload_encoding": "base64"`), `timestamp_ms`.
#[must_use]
pub fn message_json(m: &Message) -> Value {
    let (payload, enc) = text_or_base64(&m.payload);
    let key = m.key.as_ref().map(|k| text_or_base64(k).0);
    let ts = m.timestamp.and_then(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let mut v = json!({
        "source": &*m.source,
        "position": m.position.to_string(),
        "key": key,
        "payload": payload,
        "timestamp_ms": ts,
    });
    if enc == "base64" {
        v["payload_encoding"] = Value::String(enc.into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use reader_core::Position;

    #[test]
    fn binary_payloads_are_base64_and_text_is_text() {
        let m = Message::new(vec![0xff_u8, 0x00, 0x01], Position::None);
        let v = message_json(&m);
        assert_eq!(v["payload"], "/wAB");
        assert_eq!(v["payload_encoding"], "base64");
        let m = Message::new("hello", Position::None);
        assert_eq!(message_json(&m)["payload"], "hello");
        assert!(message_json(&m).get("payload_encoding").is_none());
    }
}
