//! Relaxed Extended JSON written straight from raw BSON, in one pass into a `Vec<u8>`.
//!
//! The output is byte for byte what `Bson::into_relaxed_extjson` serialised by `serde_json`
//! gives (the conversion this crate used before, through an owned `Document`, a `Bson` tree
//! and a `serde_json::Value` tree: three allocations per value and most of a change event's
//! CPU). Numbers and strings are written by `serde_json` itself (same float formatting, same
//! escapes), so only the structure is ours. The rare shapes whose exact old rendering is not
//! worth re-implementing go through the old conversion for that value only: regular
//! expressions (their options are sorted), code with scope, DB pointers, and a document with
//! a repeated key (an owned `Document` keeps the first position and the last value).

use std::collections::HashSet;

use base64::Engine;
use mongodb::bson::{Bson, Document, RawArray, RawBsonRef, RawDocument};
use reader_core::ReadError;

use crate::event::decode_error;

/// Above this many keys in one document, repeated keys are looked for with a hash set
/// instead of a linear scan.
const LINEAR_KEYS: usize = 32;

/// The largest `DateTime` (milliseconds since the epoch) rendered as an RFC 3339 string:
/// 9999-12-31T23:59:59.999Z. Beyond it, and before the epoch, `{"$numberLong": ...}`.
const MAX_RFC3339_MILLIS: i64 = 253_402_300_799_999;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append the relaxed Extended JSON of `doc` to `out`.
pub(crate) fn write_document(doc: &RawDocument, out: &mut Vec<u8>) -> Result<(), ReadError> {
    let mut keys = Vec::new();
    document(doc, out, &mut keys)
}

/// Append the relaxed Extended JSON of one value to `out`.
pub(crate) fn write_value(value: RawBsonRef<'_>, out: &mut Vec<u8>) -> Result<(), ReadError> {
    let mut keys = Vec::new();
    self::value(value, out, &mut keys)
}

/// `keys` is a stack shared by the nesting levels: each document pushes its keys above its
/// parent's and truncates back when it ends, so `keys[start..]` are this document's.
fn document<'d>(
    doc: &'d RawDocument,
    out: &mut Vec<u8>,
    keys: &mut Vec<&'d str>,
) -> Result<(), ReadError> {
    let out_start = out.len();
    let keys_start = keys.len();
    let mut seen: Option<HashSet<&'d str>> = None;
    out.push(b'{');
    for item in doc {
        let (k, v) = item.map_err(|e| decode_error("document", e))?;
        let repeated = match &mut seen {
            Some(set) => !set.insert(k),
            None if keys.len() - keys_start >= LINEAR_KEYS => {
                let mut set: HashSet<&'d str> = keys[keys_start..].iter().copied().collect();
                let repeated = !set.insert(k);
                seen = Some(set);
                repeated
            }
            None => keys[keys_start..].contains(&k),
        };
        if repeated {
            out.truncate(out_start);
            keys.truncate(keys_start);
            let owned = Document::try_from(doc).map_err(|e| decode_error("document", e))?;
            return old_conversion(Bson::Document(owned), out);
        }
        if keys.len() > keys_start {
            out.push(b',');
        }
        keys.push(k);
        string(k, out)?;
        out.push(b':');
        value(v, out, keys)?;
    }
    keys.truncate(keys_start);
    out.push(b'}');
    Ok(())
}

fn array<'d>(
    arr: &'d RawArray,
    out: &mut Vec<u8>,
    keys: &mut Vec<&'d str>,
) -> Result<(), ReadError> {
    out.push(b'[');
    for (i, item) in arr.into_iter().enumerate() {
        let v = item.map_err(|e| decode_error("array", e))?;
        if i > 0 {
            out.push(b',');
        }
        value(v, out, keys)?;
    }
    out.push(b']');
    Ok(())
}

fn value<'d>(
    v: RawBsonRef<'d>,
    out: &mut Vec<u8>,
    keys: &mut Vec<&'d str>,
) -> Result<(), ReadError> {
    match v {
        RawBsonRef::Double(f) if f.is_nan() => {
            let s: &[u8] = if f.is_sign_negative() {
                b"-NaN"
            } else {
                b"NaN"
            };
            wrapped_literal(b"{\"$numberDouble\":\"", s, b"\"}", out);
        }
        RawBsonRef::Double(f) if f.is_infinite() => {
            let s: &[u8] = if f.is_sign_negative() {
                b"-Infinity"
            } else {
                b"Infinity"
            };
            wrapped_literal(b"{\"$numberDouble\":\"", s, b"\"}", out);
        }
        RawBsonRef::Double(f) => json(&f, out)?,
        RawBsonRef::String(s) => string(s, out)?,
        RawBsonRef::Array(a) => array(a, out, keys)?,
        RawBsonRef::Document(d) => document(d, out, keys)?,
        RawBsonRef::Boolean(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        RawBsonRef::Null => out.extend_from_slice(b"null"),
        RawBsonRef::JavaScriptCode(code) => {
            out.extend_from_slice(b"{\"$code\":");
            string(code, out)?;
            out.push(b'}');
        }
        RawBsonRef::Int32(i) => json(&i, out)?,
        RawBsonRef::Int64(i) => json(&i, out)?,
        RawBsonRef::Timestamp(ts) => {
            out.extend_from_slice(b"{\"$timestamp\":{\"t\":");
            json(&ts.time, out)?;
            out.extend_from_slice(b",\"i\":");
            json(&ts.increment, out)?;
            out.extend_from_slice(b"}}");
        }
        RawBsonRef::Binary(bin) => {
            out.extend_from_slice(b"{\"$binary\":{\"base64\":\"");
            let at = out.len();
            let len = base64::encoded_len(bin.bytes.len(), true)
                .ok_or_else(|| decode_error("binary", "too large to encode"))?;
            out.resize(at + len, 0);
            base64::engine::general_purpose::STANDARD
                .encode_slice(bin.bytes, &mut out[at..])
                .map_err(|e| decode_error("binary", e))?;
            let subtype = u8::from(bin.subtype);
            out.extend_from_slice(b"\",\"subType\":\"");
            out.push(HEX[usize::from(subtype >> 4)]);
            out.push(HEX[usize::from(subtype & 0xf)]);
            out.extend_from_slice(b"\"}}");
        }
        RawBsonRef::ObjectId(oid) => {
            out.extend_from_slice(b"{\"$oid\":\"");
            for b in oid.bytes() {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            out.extend_from_slice(b"\"}");
        }
        RawBsonRef::DateTime(dt) => {
            let ms = dt.timestamp_millis();
            let rfc3339 = if (0..=MAX_RFC3339_MILLIS).contains(&ms) {
                dt.try_to_rfc3339_string().ok()
            } else {
                None
            };
            match rfc3339 {
                Some(s) => {
                    out.extend_from_slice(b"{\"$date\":");
                    string(&s, out)?;
                    out.push(b'}');
                }
                None => {
                    out.extend_from_slice(b"{\"$date\":{\"$numberLong\":\"");
                    json(&ms, out)?;
                    out.extend_from_slice(b"\"}}");
                }
            }
        }
        RawBsonRef::Symbol(s) => {
            out.extend_from_slice(b"{\"$symbol\":");
            string(s, out)?;
            out.push(b'}');
        }
        RawBsonRef::Decimal128(d) => {
            out.extend_from_slice(b"{\"$numberDecimal\":");
            string(&d.to_string(), out)?;
            out.push(b'}');
        }
        RawBsonRef::Undefined => out.extend_from_slice(b"{\"$undefined\":true}"),
        RawBsonRef::MaxKey => out.extend_from_slice(b"{\"$maxKey\":1}"),
        RawBsonRef::MinKey => out.extend_from_slice(b"{\"$minKey\":1}"),
        RawBsonRef::RegularExpression(_)
        | RawBsonRef::JavaScriptCodeWithScope(_)
        | RawBsonRef::DbPointer(_) => {
            let owned = Bson::try_from(v.to_raw_bson()).map_err(|e| decode_error("a value", e))?;
            old_conversion(owned, out)?;
        }
    }
    Ok(())
}

fn wrapped_literal(open: &[u8], s: &[u8], close: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(open);
    out.extend_from_slice(s);
    out.extend_from_slice(close);
}

/// A string with `serde_json`'s escapes.
fn string(s: &str, out: &mut Vec<u8>) -> Result<(), ReadError> {
    json(s, out)
}

/// A number or a string, written by `serde_json` (no allocation: it writes into `out`).
fn json<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), ReadError> {
    serde_json::to_writer(&mut *out, v).map_err(|e| decode_error("JSON", e))
}

/// The conversion this module replaces, for the shapes it leaves to it.
fn old_conversion(v: Bson, out: &mut Vec<u8>) -> Result<(), ReadError> {
    json(&v.into_relaxed_extjson(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{
        doc, oid::ObjectId, spec::BinarySubtype, Binary, DateTime, Decimal128,
        JavaScriptCodeWithScope, RawDocumentBuf, Regex, Timestamp,
    };

    /// The conversion this module replaced, verbatim.
    fn old(raw: &RawDocument) -> Vec<u8> {
        let doc = Document::try_from(raw).unwrap();
        serde_json::to_vec(&Bson::Document(doc).into_relaxed_extjson()).unwrap()
    }

    fn new(raw: &RawDocument) -> Vec<u8> {
        let mut out = Vec::new();
        write_document(raw, &mut out).unwrap();
        out
    }

    #[track_caller]
    fn same(raw: &RawDocument) {
        let (o, n) = (old(raw), new(raw));
        assert_eq!(
            String::from_utf8_lossy(&n),
            String::from_utf8_lossy(&o),
            "new writer (left) differs from the old conversion (right)"
        );
        // and the value of every element alone, as the key of a message is written
        for item in raw {
            let (_, v) = item.unwrap();
            let mut one = Vec::new();
            write_value(v, &mut one).unwrap();
            let bson = Bson::try_from(v.to_raw_bson()).unwrap();
            assert_eq!(
                one,
                serde_json::to_vec(&bson.into_relaxed_extjson()).unwrap()
            );
        }
    }

    fn raw(d: Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&d).unwrap()
    }

    fn every_type() -> Document {
        let oid = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let mut d = doc! {
            "double": 1.5, "whole": 3.0, "tiny": 5e-324, "big": 1.7976931348623157e308,
            "neg_zero": -0.0, "exp": 1e21, "third": 1.0 / 3.0,
            "nan": f64::NAN, "neg_nan": -f64::NAN,
            "inf": f64::INFINITY, "neg_inf": f64::NEG_INFINITY,
            "string": "plain", "empty": "",
            "escapes": "quote \" backslash \\ slash / nl \n cr \r tab \t bell \u{7} nul \u{0} del \u{7f}",
            "unicode": "héllo wörld — 日本語 🦀 \u{2028}\u{2029} \u{feff}",
            "doc": { "a": 1, "b": { "c": [1, 2, { "d": null }] } },
            "empty_doc": {}, "empty_arr": [],
            "arr": [1_i32, 2_i64, "three", 4.5, true, null, [[]], {}],
            "true": true, "false": false, "null": null,
            "regex": Regex { pattern: "^a.*b$".into(), options: "xmi".into() },
            "code": "function() { return 1; }",
            "code_js": Bson::JavaScriptCode("return \"x\"".into()),
            "code_scope": Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code: "x + y".into(),
                scope: doc! { "x": 1, "y": { "z": oid } },
            }),
        };
        d.extend(doc! {
            "i32": 42_i32, "i32_min": i32::MIN, "i32_max": i32::MAX,
            "i64": 42_i64, "i64_min": i64::MIN, "i64_max": i64::MAX,
            "ts": Timestamp { time: 1_700_000_000, increment: 7 },
            "ts_max": Timestamp { time: u32::MAX, increment: u32::MAX },
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: b"hello\x00\xff".to_vec() },
            "bin_empty": Binary { subtype: BinarySubtype::Generic, bytes: vec![] },
            "bin_1": Binary { subtype: BinarySubtype::Generic, bytes: vec![0xfb] },
            "bin_2": Binary { subtype: BinarySubtype::Generic, bytes: vec![0xfb, 0xff] },
            "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: (0..16).collect() },
            "md5": Binary { subtype: BinarySubtype::Md5, bytes: vec![1; 16] },
            "user": Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: vec![2; 3] },
            "old_bin": Binary { subtype: BinarySubtype::BinaryOld, bytes: vec![3; 5] },
        });
        d.extend(doc! {
            "oid": oid,
            "date": DateTime::from_millis(1_700_000_000_123),
            "date_epoch": DateTime::from_millis(0),
            "date_whole_s": DateTime::from_millis(1_700_000_000_000),
            "date_pre_epoch": DateTime::from_millis(-1),
            "date_last_9999": DateTime::from_millis(MAX_RFC3339_MILLIS),
            "date_10000": DateTime::from_millis(MAX_RFC3339_MILLIS + 1),
            "date_max": DateTime::MAX, "date_min": DateTime::MIN,
            "symbol": Bson::Symbol("sym\"bol".into()),
            "dec": Decimal128::from_bytes([0; 16]),
            "dec_1": "1.5".parse::<Decimal128>().unwrap(),
            "dec_neg": "-1234567890123456789012345678.90".parse::<Decimal128>().unwrap(),
            "dec_exp": "1.23E+6000".parse::<Decimal128>().unwrap(),
            "dec_nan": "NaN".parse::<Decimal128>().unwrap(),
            "dec_inf": "-Infinity".parse::<Decimal128>().unwrap(),
            "undefined": Bson::Undefined, "min": Bson::MinKey, "max": Bson::MaxKey,
            "key \"with\" \\ escapes \u{1} é 🦀": 1,
            "": "empty key",
        });
        d
    }

    #[test]
    fn every_bson_type_is_written_as_the_old_conversion_wrote_it() {
        let d = every_type();
        same(&raw(d.clone()));
        // nested inside documents and arrays, several levels deep
        let nested = doc! { "a": [d.clone(), [d.clone()]], "b": { "c": { "d": d } } };
        same(&raw(nested));
    }

    #[test]
    fn a_change_event_is_written_as_the_old_conversion_wrote_it() {
        let d = doc! {
            "_id": { "_data": "8265A1B2C3000000012B022C0100296E5A1004" },
            "operationType": "update",
            "clusterTime": Timestamp { time: 1_700_000_000, increment: 1 },
            "wallTime": DateTime::from_millis(1_700_000_000_123),
            "ns": { "db": "shop", "coll": "orders" },
            "documentKey": { "_id": ObjectId::new() },
            "updateDescription": {
                "updatedFields": { "n": 2, "tags.1": "x" },
                "removedFields": ["old"],
                "truncatedArrays": [{ "field": "arr", "newSize": 3 }],
            },
            "fullDocument": {
                "_id": 1_i64, "t": 1_700_000_000_000_000_i64,
                "payload": Binary { subtype: BinarySubtype::Generic, bytes: vec![b'x'; 100] },
            },
        };
        same(&raw(d));
    }

    #[test]
    fn a_db_pointer_is_written_as_the_old_conversion_wrote_it() {
        // No public constructor: the element by hand (type 0x0C, key, string, ObjectId).
        let mut bytes = vec![0, 0, 0, 0, 0x0c];
        bytes.extend_from_slice(b"ptr\0");
        bytes.extend_from_slice(&8_i32.to_le_bytes());
        bytes.extend_from_slice(b"db.coll\0");
        bytes.extend_from_slice(&[0xab; 12]);
        bytes.push(0);
        let len = i32::try_from(bytes.len()).unwrap().to_le_bytes();
        bytes[..4].copy_from_slice(&len);
        let d = RawDocumentBuf::from_bytes(bytes).unwrap();
        same(&d);
        assert!(String::from_utf8(new(&d)).unwrap().contains("$dbPointer"));
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_its_last_value_as_before() {
        for n in [2, LINEAR_KEYS - 1, LINEAR_KEYS, LINEAR_KEYS + 5, 100] {
            let mut d = RawDocumentBuf::new();
            d.append("first", 1);
            for i in 0..n {
                d.append(format!("k{i}"), i32::try_from(i).unwrap());
            }
            d.append("first", "last value");
            let mut inner = RawDocumentBuf::new();
            inner.append("x", 1);
            inner.append("y", 2);
            inner.append("x", 3);
            d.append("inner", inner.clone());
            let mut outer = RawDocumentBuf::new();
            outer.append("before", "v");
            outer.append("d", d.clone());
            outer.append("after", inner);
            same(&d);
            same(&outer);
            let v: serde_json::Value = serde_json::from_slice(&new(&outer)).unwrap();
            assert_eq!(v["d"]["first"], "last value");
            assert_eq!(v["after"]["x"], 3);
        }
    }

    /// A small deterministic generator (xorshift), so the test needs no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            usize::try_from(self.next() % n).unwrap()
        }
        fn string(&mut self) -> String {
            const PARTS: &[&str] = &[
                "a", "Z", "0", " ", "\"", "\\", "\n", "\u{1}", "é", "日", "🦀", "/", "\u{7f}",
            ];
            (0..self.below(8))
                .map(|_| PARTS[self.below(PARTS.len() as u64)])
                .collect()
        }
        fn value(&mut self, depth: u32) -> Bson {
            let kinds = if depth >= 4 { 14 } else { 16 };
            match self.below(kinds) {
                0 => Bson::Double(f64::from_bits(self.next())),
                1 => Bson::Double((self.next() % 2000) as f64 / 8.0 - 100.0),
                2 => Bson::String(self.string()),
                3 => Bson::Boolean(self.next() % 2 == 0),
                4 => Bson::Null,
                5 => Bson::Int32(self.next() as i32),
                6 => Bson::Int64(self.next() as i64),
                7 => Bson::Timestamp(Timestamp {
                    time: self.next() as u32,
                    increment: self.next() as u32,
                }),
                8 => Bson::Binary(Binary {
                    subtype: BinarySubtype::from(self.next() as u8),
                    bytes: (0..self.below(40)).map(|_| self.next() as u8).collect(),
                }),
                9 => Bson::ObjectId(ObjectId::from_bytes([self.next() as u8; 12])),
                10 => Bson::DateTime(DateTime::from_millis(match self.below(3) {
                    0 => self.next() as i64,
                    1 => (self.next() % (MAX_RFC3339_MILLIS as u64 + 1000)) as i64,
                    _ => (self.next() % 4_000_000_000_000) as i64 - 1_000_000_000_000,
                })),
                11 => {
                    let mut b = [0u8; 16];
                    b.iter_mut().for_each(|x| *x = self.next() as u8);
                    Bson::Decimal128(Decimal128::from_bytes(b))
                }
                12 => Bson::RegularExpression(Regex {
                    pattern: self.string(),
                    options: "smix".into(),
                }),
                13 => [
                    Bson::Undefined,
                    Bson::MinKey,
                    Bson::MaxKey,
                    Bson::Symbol(self.string()),
                    Bson::JavaScriptCode(self.string()),
                ][self.below(5)]
                .clone(),
                14 => Bson::Array((0..self.below(5)).map(|_| self.value(depth + 1)).collect()),
                _ => Bson::Document(self.document(depth + 1)),
            }
        }
        fn document(&mut self, depth: u32) -> Document {
            (0..self.below(7))
                .map(|i| (format!("{}{i}", self.string()), self.value(depth)))
                .collect()
        }
    }

    #[test]
    fn random_documents_are_written_as_the_old_conversion_wrote_them() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let d = rng.document(0);
            same(&raw(d));
        }
    }

    #[test]
    fn malformed_bson_is_a_decode_error_not_a_panic() {
        let mut bytes = raw(doc! { "a": "text", "b": 1 }).into_bytes();
        // the string's length says more bytes than the document holds
        bytes[9] = 0x7f;
        let d = RawDocument::from_bytes(&bytes).unwrap();
        let mut out = Vec::new();
        let e = write_document(d, &mut out).unwrap_err();
        assert!(e.is_permanent(), "{e}");
        assert!(
            Document::try_from(d).is_err(),
            "the old conversion failed too"
        );
    }
}
