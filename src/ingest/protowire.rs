//! Protocol Buffers wire format, read in place: a field iterator over a
//! message's bytes that borrows every length-delimited value from the input,
//! so a decoder built on it allocates nothing. The protobuf decoders
//! (remote_write) use it for the messages on the hot path instead of prost's
//! derived decoder, which allocates a `String` per string field and a `Vec`
//! per repeated message on every request (measured in BENCHMARKS.md, #17).
//! prost stays the reference: the decoders' tests decode the same bytes
//! with both and compare.
//!
//! What is checked is what prost checks: varints of at most 10 bytes (the
//! 10th at most 1), keys within `u32`, field number >= 1, wire types 0-5,
//! lengths within the input, groups skipped with matching end tags and a
//! nesting limit of 100.

/// One field's value, as the wire type carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    /// A group (proto2; skipped whole, never decoded).
    Group,
}

/// Bytes that are not a well-formed protobuf message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated message")]
    Truncated,
    #[error("invalid varint")]
    Varint,
    #[error("invalid key")]
    Key,
    #[error("invalid wire type {0}")]
    WireType(u8),
    #[error("unbalanced group")]
    Group,
    #[error("groups nested too deep")]
    Depth,
    #[error("invalid wire type for field {0}")]
    UnexpectedWireType(u32),
    #[error("invalid UTF-8 in a string field")]
    Utf8,
}

const MAX_GROUP_DEPTH: u32 = 100;

/// The fields of one message, in wire order.
#[derive(Clone, Debug)]
pub struct FieldReader<'a> {
    rest: &'a [u8],
}

impl<'a> FieldReader<'a> {
    pub fn new(message: &'a [u8]) -> FieldReader<'a> {
        FieldReader { rest: message }
    }

    /// The next field (number, value), `None` at the end of the message.
    #[inline]
    #[allow(clippy::should_implement_trait)] // fallible: an Iterator of Results reads worse at every call site
    pub fn next(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (field, wire_type) = self.key()?;
        let value = self.value(field, wire_type, 0)?;
        Ok(Some((field, value)))
    }

    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| WireError::Key)?;
        let field = key >> 3;
        if field == 0 {
            return Err(WireError::Key);
        }
        Ok((field, (key & 7) as u8))
    }

    fn value(&mut self, field: u32, wire_type: u8, depth: u32) -> Result<WireValue<'a>, WireError> {
        Ok(match wire_type {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.take_array()?)),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                WireValue::Bytes(self.take(len)?)
            }
            3 => {
                self.skip_group(field, depth)?;
                WireValue::Group
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.take_array()?)),
            4 => return Err(WireError::Group),
            other => return Err(WireError::WireType(other)),
        })
    }

    /// Skips fields up to the end tag of group `field`.
    fn skip_group(&mut self, field: u32, depth: u32) -> Result<(), WireError> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(WireError::Depth);
        }
        loop {
            if self.rest.is_empty() {
                return Err(WireError::Truncated);
            }
            let (inner, wire_type) = self.key()?;
            if wire_type == 4 {
                return if inner == field { Ok(()) } else { Err(WireError::Group) };
            }
            self.value(inner, wire_type, depth + 1)?;
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &b) in self.rest.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return Err(WireError::Varint);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(if self.rest.len() >= 10 { WireError::Varint } else { WireError::Truncated })
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.rest.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let head = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
}

impl<'a> WireValue<'a> {
    /// A length-delimited field's bytes (string, bytes, message).
    #[inline]
    pub fn bytes(self, field: u32) -> Result<&'a [u8], WireError> {
        match self {
            WireValue::Bytes(b) => Ok(b),
            _ => Err(WireError::UnexpectedWireType(field)),
        }
    }

    /// A `string` field: UTF-8, as prost requires.
    #[inline]
    pub fn str(self, field: u32) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes(field)?).map_err(|_| WireError::Utf8)
    }

    /// An `int64` field (varint, two's complement).
    #[inline]
    pub fn int64(self, field: u32) -> Result<i64, WireError> {
        match self {
            WireValue::Varint(v) => Ok(v as i64),
            _ => Err(WireError::UnexpectedWireType(field)),
        }
    }

    /// A `double` field (fixed64).
    #[inline]
    pub fn double(self, field: u32) -> Result<f64, WireError> {
        match self {
            WireValue::Fixed64(v) => Ok(f64::from_bits(v)),
            _ => Err(WireError::UnexpectedWireType(field)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        let mut r = FieldReader::new(bytes);
        let mut out = Vec::new();
        while let Some(f) = r.next()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_every_wire_type() {
        let msg = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: bytes "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
            0x2b, 0x08, 0x01, 0x2c, // 5: group holding 1: varint 1
        ];
        assert_eq!(
            fields(&msg).unwrap(),
            [
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (3, WireValue::Bytes(b"hi")),
                (4, WireValue::Fixed32(2)),
                (5, WireValue::Group)
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(fields(&[0x0a, 0x05, 1]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x08]), Err(WireError::Truncated));
        assert_eq!(fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), Err(WireError::Varint));
        assert_eq!(fields(&[0x00, 0x00]), Err(WireError::Key), "field number 0");
        assert_eq!(fields(&[0x80, 0x80, 0x80, 0x80, 0x10]), Err(WireError::Key), "key beyond u32");
        assert_eq!(fields(&[0x0e]), Err(WireError::WireType(6)));
        assert_eq!(fields(&[0x0c]), Err(WireError::Group), "an end tag with no group");
        assert_eq!(fields(&[0x0b, 0x14]), Err(WireError::Group), "group 1 ended by 2");
        assert_eq!(fields(&[0x0b]), Err(WireError::Truncated));
        let deep = [0x0b; 101];
        assert_eq!(fields(&deep), Err(WireError::Depth));
        assert_eq!(WireValue::Varint(1).bytes(7), Err(WireError::UnexpectedWireType(7)));
        assert_eq!(WireValue::Bytes(&[0xc3, 0x28]).str(1), Err(WireError::Utf8));
        assert_eq!(WireValue::Varint(u64::MAX).int64(2), Ok(-1));
    }
}
