//! Resume tokens as bytes: what a [`Position::ResumeToken`](reader_core::Position) holds is the
//! raw BSON of the token document (`{"_data": "82…"}`), exactly as the server sent it as the
//! event's `_id`.

use bytes::Bytes;
use mongodb::bson::{doc, RawDocument, Timestamp};
use mongodb::change_stream::event::ResumeToken;

/// The raw BSON bytes of a token document `{"_data": hex}` (the form `mongosh` shows).
///
/// # Errors
/// When `hex` is empty or not hexadecimal.
pub fn from_data_hex(hex: &str) -> Result<Bytes, String> {
    if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{hex:?} is not the hexadecimal `_data` string of a resume token"
        ));
    }
    let mut out = Vec::new();
    doc! { "_data": hex }
        .to_writer(&mut out)
        .map_err(|e| format!("cannot encode the token: {e}"))?;
    Ok(Bytes::from(out))
}

/// The `_data` string of a token, when it has one.
#[must_use]
pub fn data_hex(token: &[u8]) -> Option<String> {
    RawDocument::from_bytes(token)
        .ok()?
        .get_str("_data")
        .ok()
        .map(str::to_owned)
}

/// The cluster time a token points at, decoded from its `_data` (a key string whose first
/// value, type byte `0x82`, is the timestamp: 4 bytes of seconds, 4 of increment, big-endian).
/// `None` for token formats this does not know.
#[must_use]
pub fn cluster_time(token: &[u8]) -> Option<Timestamp> {
    let hex = data_hex(token)?;
    if hex.len() < 18 || !hex[..2].eq_ignore_ascii_case("82") {
        return None;
    }
    let time = u32::from_str_radix(hex.get(2..10)?, 16).ok()?;
    let increment = u32::from_str_radix(hex.get(10..18)?, 16).ok()?;
    Some(Timestamp { time, increment })
}

/// A driver token from raw bytes.
///
/// # Errors
/// When the bytes are not a BSON document.
pub fn to_driver(token: &[u8]) -> Result<ResumeToken, String> {
    mongodb::bson::from_slice::<ResumeToken>(token)
        .map_err(|e| format!("the saved resume token is not a BSON document: {e}"))
}

/// Raw bytes of a driver token (`None` if it is not a document, which servers never send).
#[must_use]
pub fn from_driver(token: &ResumeToken) -> Option<Bytes> {
    mongodb::bson::to_vec(token).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_hex_round_trips_through_the_driver_type() {
        let hex = "8265A1B2C3000000072B022C0100296E5A1004";
        let raw = from_data_hex(hex).unwrap();
        assert_eq!(data_hex(&raw).as_deref(), Some(hex));
        let t = to_driver(&raw).unwrap();
        assert_eq!(from_driver(&t).unwrap(), raw);
        assert_eq!(
            cluster_time(&raw),
            Some(Timestamp {
                time: 0x65A1_B2C3,
                increment: 7
            })
        );
        assert!(to_driver(b"\x01\x02").is_err());
        assert!(from_data_hex("xyz").is_err());
        assert!(from_data_hex("").is_err());
        assert_eq!(cluster_time(&from_data_hex("0102").unwrap()), None);
    }
}
