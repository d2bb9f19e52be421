//! Field values, integers, floats and timestamps: the typed half of the
//! grammar, with the SWAR digit and short-decimal fast paths that must agree
//! with `str::parse`.

use super::scan::{scan_string, Cursor, VALUE_STOP};
use super::LineErrorReason;
use crate::ingest::record::FieldValue;

/// Parses a field value at the cursor: a quoted string or an unquoted token.
pub(super) fn parse_field_value<'a>(cursor: &mut Cursor<'a>) -> Result<FieldValue<'a>, LineErrorReason> {
    if cursor.peek() == Some(b'"') {
        let value = scan_string(cursor)?;
        return match cursor.peek() {
            None | Some(b',' | b' ' | b'\n') => Ok(FieldValue::Str(value)),
            Some(b'\r') if cursor.at_line_end() => Ok(FieldValue::Str(value)),
            Some(_) => Err(LineErrorReason::GarbageAfterString),
        };
    }
    let start = cursor.pos;
    cursor.skip_until(&VALUE_STOP);
    let token = cursor.slice(start, cursor.pos);
    parse_unquoted_value(token)
}

/// `-?digits`, nothing else (no `+`, no spaces).
pub(crate) fn is_integer_literal(digits: &[u8]) -> bool {
    let digits = digits.strip_prefix(b"-").unwrap_or(digits);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// InfluxDB float syntax: `-?(digits[.digits*]|.digits)([eE][+-]?digits)?`.
pub(crate) fn is_float_literal(token: &[u8]) -> bool {
    let rest = token.strip_prefix(b"-").unwrap_or(token);
    let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest.get(int_len..).unwrap_or(&[]);
    let (frac_len, rest) = match rest.strip_prefix(b".") {
        Some(after_dot) => {
            let n = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
            (n, after_dot.get(n..).unwrap_or(&[]))
        }
        None => (0, rest),
    };
    if int_len + frac_len == 0 {
        return false;
    }
    match rest.first() {
        None => true,
        Some(b'e' | b'E') => {
            let exp = rest.get(1..).unwrap_or(&[]);
            let exp = exp.strip_prefix(b"+").or_else(|| exp.strip_prefix(b"-")).unwrap_or(exp);
            !exp.is_empty() && exp.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    }
}

fn parse_unquoted_value<'a>(token: &[u8]) -> Result<FieldValue<'a>, LineErrorReason> {
    if token.is_empty() {
        return Err(LineErrorReason::MissingFieldValue);
    }
    match token {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => return Ok(FieldValue::Bool(true)),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(digits) = token.strip_suffix(b"i") {
        return parse_signed(digits)
            .value_or(LineErrorReason::IntegerOutOfRange, LineErrorReason::InvalidFieldValue)
            .map(FieldValue::Int);
    }
    if let Some(digits) = token.strip_suffix(b"u") {
        return parse_digits(digits)
            .value_or(LineErrorReason::IntegerOutOfRange, LineErrorReason::InvalidFieldValue)
            .map(FieldValue::UInt);
    }
    if let Some(value) = parse_short_decimal(token) {
        return Ok(FieldValue::Float(value));
    }
    if !is_float_literal(token) {
        return Err(LineErrorReason::InvalidFieldValue);
    }
    // Every accepted float literal is ASCII, so from_utf8 cannot fail on it.
    fn as_str(digits: &[u8]) -> Result<&str, LineErrorReason> {
        std::str::from_utf8(digits).map_err(|_| LineErrorReason::InvalidFieldValue)
    }
    let value: f64 = as_str(token)?.parse().map_err(|_| LineErrorReason::InvalidFieldValue)?;
    if !value.is_finite() {
        return Err(LineErrorReason::FloatOutOfRange);
    }
    Ok(FieldValue::Float(value))
}

pub(super) fn parse_timestamp(token: &[u8]) -> Result<i64, LineErrorReason> {
    parse_signed(token).value_or(LineErrorReason::TimestampOutOfRange, LineErrorReason::InvalidTimestamp)
}

/// An integer token, classified like `is_integer_literal` then `str::parse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IntLiteral<T> {
    Value(T),
    /// Well-formed digits whose value does not fit.
    OutOfRange,
    /// Not `-?digits` (for unsigned: not `digits`).
    Invalid,
}

impl<T> IntLiteral<T> {
    /// The value, or the caller's reason for each way the token can fail.
    #[inline]
    fn value_or(self, out_of_range: LineErrorReason, invalid: LineErrorReason) -> Result<T, LineErrorReason> {
        match self {
            IntLiteral::Value(v) => Ok(v),
            IntLiteral::OutOfRange => Err(out_of_range),
            IntLiteral::Invalid => Err(invalid),
        }
    }
}

/// `digits` (at least one ASCII digit, nothing else) as a `u64`; every byte is
/// checked before an overflow is reported, so malformed beats out-of-range.
pub(super) fn parse_digits(digits: &[u8]) -> IntLiteral<u64> {
    if digits.is_empty() {
        return IntLiteral::Invalid;
    }
    // Up to 19 digits cannot overflow a u64 (10^19 - 1 < 2^64): no checks needed
    // (this covers nanosecond timestamps).
    if digits.len() <= 19 {
        let mut value: u64 = 0;
        let mut chunks = digits.chunks_exact(8);
        for chunk in &mut chunks {
            let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { break };
            match eight_digits(bytes) {
                Some(v) => value = value * 100_000_000 + v,
                None => return IntLiteral::Invalid,
            }
        }
        for &b in chunks.remainder() {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return IntLiteral::Invalid;
            }
            value = value * 10 + u64::from(d);
        }
        return IntLiteral::Value(value);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return IntLiteral::Invalid;
        }
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))) {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow {
        IntLiteral::OutOfRange
    } else {
        IntLiteral::Value(value)
    }
}

/// Eight ASCII digits (first digit in `bytes[0]`) as their value, or `None` if
/// any byte is not a digit: the SWAR check and reduction used by simdjson and
/// fast_float (each byte must be `0x3_` and stay `0x3_` after adding 6; a carry
/// out of a byte only happens for bytes >= 0xFA, which already fail).
pub(super) fn eight_digits(bytes: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(bytes);
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    if (v & HIGH_NIBBLES) | ((v.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = v - 0x3030_3030_3030_3030;
    // Pairs of digits, then quads, then all eight.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    Some(((v & MASK).wrapping_mul(MUL1).wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))) >> 32)
}

/// `-?digits` as an `i64` (the same accepted set and range as `str::parse::<i64>`
/// after `is_integer_literal`).
pub(super) fn parse_signed(token: &[u8]) -> IntLiteral<i64> {
    let (negative, digits) = match token.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    match parse_digits(digits) {
        IntLiteral::Value(magnitude) if negative => match 0i64.checked_sub_unsigned(magnitude) {
            Some(v) => IntLiteral::Value(v),
            None => IntLiteral::OutOfRange,
        },
        IntLiteral::Value(magnitude) => match i64::try_from(magnitude) {
            Ok(v) => IntLiteral::Value(v),
            Err(_) => IntLiteral::OutOfRange,
        },
        IntLiteral::OutOfRange => IntLiteral::OutOfRange,
        IntLiteral::Invalid => IntLiteral::Invalid,
    }
}

/// Exact fast path for the common float shape `-?digits[.digits]` with at most
/// 15 digits in all (Clinger): the digits form an integer `m < 10^15 < 2^53`
/// and the divisor `10^k` (`k <= 15`) is exact in an `f64`, so the single IEEE
/// division is correctly rounded, i.e. equal to `str::parse::<f64>`. `None`
/// for anything else (exponents, long mantissas, invalid text): use the slow path.
pub(super) fn parse_short_decimal(token: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, rest) = match token.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac_digits = 0usize;
    let mut seen_dot = false;
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            mantissa = mantissa * 10 + u64::from(d);
            digits += 1;
            frac_digits += usize::from(seen_dot);
            if digits > 15 {
                return None;
            }
        } else if b == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            return None;
        }
    }
    if digits == 0 {
        return None;
    }
    // `mantissa < 10^15` is exact as f64; `POW10[frac_digits]` is exact.
    #[allow(clippy::cast_precision_loss)]
    let value = mantissa as f64 / *POW10.get(frac_digits)?;
    Some(if negative { -value } else { value })
}
