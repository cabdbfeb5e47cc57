//! A structural check of a response body before `kafka-protocol` decodes it.
//!
//! `kafka-protocol`'s decoders trust length prefixes: an array announcing 2³¹ elements makes
//! them reserve that much memory up front (`Vec::with_capacity`), and a failed allocation
//! aborts the process — a broken or malicious broker could kill the reader. So every body is
//! first walked against a description of its layout ([`Node`]): every length must fit in
//! the bytes that are actually there. Once the walk succeeds, decoding allocates at most in
//! proportion to the frame, and any other problem is an ordinary decoding error.

/// One field of a message layout.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// 1 byte.
    I8,
    /// 2 bytes.
    I16,
    /// 4 bytes.
    I32,
    /// 8 bytes.
    I64,
    /// A string, nullable or not (i16 length, or compact in flexible versions).
    Str,
    /// Bytes, nullable or not (i32 length, or compact in flexible versions).
    Bytes,
    /// An array of structs with these fields (tagged fields follow each element in flexible
    /// versions).
    Structs(Vec<Node>),
    /// An array of one primitive per element.
    ArrayOf(Box<Node>),
}

/// Walk `buf` as a struct of `fields` (with its trailing tagged fields when `flexible`).
/// Returns how many bytes the struct took.
pub(crate) fn check(buf: &[u8], fields: &[Node], flexible: bool) -> Result<usize, String> {
    let mut c = Cursor { buf, pos: 0 };
    c.walk_struct(fields, flexible)?;
    Ok(c.pos)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} needs {n} bytes at offset {}, only {} remain",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2, "an int16")?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4, "an int32")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self) -> Result<u32, String> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.take(1, "a varint")?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 4 && b > 0x0f {
                    return Err("varint overflows 32 bits".into());
                }
                return Ok(value);
            }
        }
        Err("varint longer than 5 bytes".into())
    }

    /// The element count of an array, `None` for a null array.
    fn array_len(&mut self, flexible: bool) -> Result<Option<usize>, String> {
        let n = if flexible {
            match self.uvarint()? {
                0 => return Ok(None),
                n => (n - 1) as usize,
            }
        } else {
            match self.i32()? {
                -1 => return Ok(None),
                n if n < 0 => return Err(format!("negative array length {n}")),
                n => n as usize,
            }
        };
        // Every element takes at least one byte.
        if n > self.remaining() {
            return Err(format!(
                "array announces {n} elements but only {} bytes remain",
                self.remaining()
            ));
        }
        Ok(Some(n))
    }

    fn walk_struct(&mut self, fields: &[Node], flexible: bool) -> Result<(), String> {
        for f in fields {
            self.walk(f, flexible)?;
        }
        if flexible {
            self.walk_tagged()?;
        }
        Ok(())
    }

    fn walk_tagged(&mut self) -> Result<(), String> {
        let n = self.uvarint()? as usize;
        if n > self.remaining() {
            return Err(format!("{n} tagged fields announced, too few bytes remain"));
        }
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size, "a tagged field")?;
        }
        Ok(())
    }

    fn walk(&mut self, node: &Node, flexible: bool) -> Result<(), String> {
        match node {
            Node::I8 => self.take(1, "an int8").map(|_| ()),
            Node::I16 => self.take(2, "an int16").map(|_| ()),
            Node::I32 => self.take(4, "an int32").map(|_| ()),
            Node::I64 => self.take(8, "an int64").map(|_| ()),
            Node::Str | Node::Bytes => {
                let len = if flexible {
                    match self.uvarint()? {
                        0 => return Ok(()),
                        n => (n - 1) as usize,
                    }
                } else if matches!(node, Node::Str) {
                    match self.i16()? {
                        -1 => return Ok(()),
                        n if n < 0 => return Err(format!("negative string length {n}")),
                        n => n as usize,
                    }
                } else {
                    match self.i32()? {
                        -1 => return Ok(()),
                        n if n < 0 => return Err(format!("negative bytes length {n}")),
                        n => n as usize,
                    }
                };
                self.take(len, "a string or bytes field").map(|_| ())
            }
            Node::Structs(fields) => {
                if let Some(n) = self.array_len(flexible)? {
                    for _ in 0..n {
                        self.walk_struct(fields, flexible)?;
                    }
                }
                Ok(())
            }
            Node::ArrayOf(elem) => {
                if let Some(n) = self.array_len(flexible)? {
                    for _ in 0..n {
                        self.walk(elem, flexible)?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_array_lengths_are_refused_before_decoding() {
        // An array of 2^31-1 structs in 8 bytes.
        let mut b = vec![0x7f, 0xff, 0xff, 0xff];
        b.extend_from_slice(&[0, 0, 0, 0]);
        let e = check(&b, &[Node::Structs(vec![Node::I32])], false).unwrap_err();
        assert!(e.contains("announces"), "{e}");
        // Compact: varint of u32::MAX.
        let b = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(check(&b, &[Node::ArrayOf(Box::new(Node::I32))], true).is_err());
        // Over-long varint.
        let b = [0xff; 8];
        assert!(check(&b, &[Node::Str], true).is_err());
    }

    #[test]
    fn nulls_and_tagged_fields_walk() {
        // null string, null bytes (non-flexible)
        let b = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(check(&b, &[Node::Str, Node::Bytes], false).unwrap(), 6);
        // flexible: null compact string, then 1 tagged field of 2 bytes
        let b = [0x00, 0x01, 0x05, 0x02, 0xaa, 0xbb];
        assert_eq!(check(&b, &[Node::Str], true).unwrap(), 6);
        // truncated tagged field
        let b = [0x00, 0x01, 0x05, 0x09, 0xaa];
        assert!(check(&b, &[Node::Str], true).is_err());
    }
}
