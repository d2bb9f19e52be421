//! The line-protocol encoder: [`write_line_protocol`] escapes a record so the
//! parser reads back the same record.

use super::scan::{is_string_escapable, Element};
use crate::ingest::record::{FieldValue, RecordRef};

/// Why a record cannot be written as line protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("empty measurement, tag key, tag value or field key")]
    EmptyName,
    #[error("measurement starts with '#' or a tab (would read back as a comment or be trimmed)")]
    AmbiguousMeasurementStart,
    #[error("newline in a measurement, tag or field key (line protocol cannot escape it)")]
    NewlineInName,
    #[error("record has no fields")]
    NoFields,
    #[error("non-finite float field value")]
    NonFiniteFloat,
}

fn write_escaped(out: &mut Vec<u8>, text: &str, element: Element) -> Result<(), EncodeError> {
    if text.is_empty() {
        return Err(EncodeError::EmptyName);
    }
    for &b in text.as_bytes() {
        if b == b'\n' {
            return Err(EncodeError::NewlineInName);
        }
        if element.is_escapable(b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    Ok(())
}

/// Appends `record` as one line (with `\n`) of line protocol, escaped so that
/// [`LineProtocolParser`](super::LineProtocolParser) reads back the same record; the timestamp is always
/// written, in nanoseconds. On error `out` is left as it was.
pub fn write_line_protocol(record: &RecordRef<'_, '_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start_len = out.len();
    let result = write_line_protocol_inner(record, out);
    if result.is_err() {
        out.truncate(start_len);
    }
    result
}

fn write_line_protocol_inner(record: &RecordRef<'_, '_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    use std::io::Write as _;
    if matches!(record.measurement.as_bytes().first(), Some(b'#' | b'\t')) {
        return Err(EncodeError::AmbiguousMeasurementStart);
    }
    write_escaped(out, record.measurement, Element::Measurement)?;
    for tag in record.tags {
        out.push(b',');
        write_escaped(out, &tag.key, Element::TagKey)?;
        out.push(b'=');
        write_escaped(out, &tag.value, Element::TagValue)?;
    }
    if record.fields.is_empty() {
        return Err(EncodeError::NoFields);
    }
    for (i, field) in record.fields.iter().enumerate() {
        out.push(if i == 0 { b' ' } else { b',' });
        write_escaped(out, &field.key, Element::FieldKey)?;
        out.push(b'=');
        // Writing into a Vec cannot fail; the io::Result is only a formality.
        let _ = match &field.value {
            FieldValue::Int(v) => write!(out, "{v}i"),
            FieldValue::UInt(v) => write!(out, "{v}u"),
            FieldValue::Float(v) if !v.is_finite() => return Err(EncodeError::NonFiniteFloat),
            // `{:?}` prints the shortest round-tripping form and keeps a `.0` or exponent.
            FieldValue::Float(v) => write!(out, "{v:?}"),
            FieldValue::Bool(v) => write!(out, "{v}"),
            FieldValue::Str(s) => {
                out.push(b'"');
                for &b in s.as_bytes() {
                    if is_string_escapable(b) {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
                Ok(())
            }
        };
    }
    let _ = writeln!(out, " {}", record.timestamp_ns);
    Ok(())
}
