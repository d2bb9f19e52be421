//! Field-value typing and number conversion: floats, `i`/`u` integers,
//! booleans and timestamps checked without converting, and converted (eight
//! digits per step) only where a caller asks.

use super::FieldKind;
use crate::ingest::line_protocol::LineErrorReason;

/// The type of an unquoted field value, or why it is invalid.
#[inline(always)]
pub(super) fn field_kind(token: &[u8]) -> Result<FieldKind, LineErrorReason> {
    let Some((&last, init)) = token.split_last() else {
        return Err(LineErrorReason::MissingFieldValue);
    };
    match token.first() {
        Some(b'0'..=b'9' | b'-' | b'.') => {}
        _ => {
            return match token {
                b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false" | b"False" | b"FALSE" => {
                    Ok(FieldKind::Bool)
                }
                _ => Err(LineErrorReason::InvalidFieldValue),
            }
        }
    }
    match last {
        b'i' => match signed_value(init) {
            Digits::Value(_) => Ok(FieldKind::Int),
            Digits::OutOfRange => Err(LineErrorReason::IntegerOutOfRange),
            Digits::Invalid => Err(LineErrorReason::InvalidFieldValue),
        },
        b'u' => match digits_value(init) {
            Digits::Value(_) => Ok(FieldKind::UInt),
            Digits::OutOfRange => Err(LineErrorReason::IntegerOutOfRange),
            Digits::Invalid => Err(LineErrorReason::InvalidFieldValue),
        },
        _ => check_float(token).map(|()| FieldKind::Float),
    }
}

/// `-?(digits[.digits]|.digits)([eE][+-]?digits)?` with a finite value. Only
/// literals that could overflow (an exponent, or more than 308 integer
/// digits) are converted to find out.
#[inline]
fn check_float(token: &[u8]) -> Result<(), LineErrorReason> {
    let mut rest = match token.split_first() {
        Some((b'-', rest)) => rest,
        _ => token,
    };
    let mut integer_digits = 0;
    while let Some((b'0'..=b'9', tail)) = rest.split_first() {
        integer_digits += 1;
        rest = tail;
    }
    let mut fraction_digits = 0;
    if let Some((b'.', tail)) = rest.split_first() {
        rest = tail;
        while let Some((b'0'..=b'9', tail)) = rest.split_first() {
            fraction_digits += 1;
            rest = tail;
        }
    }
    if integer_digits + fraction_digits == 0 {
        return Err(LineErrorReason::InvalidFieldValue);
    }
    match rest.split_first() {
        None if integer_digits <= 308 => Ok(()),
        None => check_finite(token),
        Some((b'e' | b'E', exponent)) => {
            let exponent = match exponent.split_first() {
                Some((b'+' | b'-', digits)) => digits,
                _ => exponent,
            };
            if exponent.is_empty() || !exponent.iter().all(u8::is_ascii_digit) {
                return Err(LineErrorReason::InvalidFieldValue);
            }
            check_finite(token)
        }
        Some(_) => Err(LineErrorReason::InvalidFieldValue),
    }
}

/// A well-formed float literal that may overflow: converted to find out.
#[inline(never)]
fn check_finite(token: &[u8]) -> Result<(), LineErrorReason> {
    let value: f64 =
        std::str::from_utf8(token).ok().and_then(|text| text.parse().ok()).ok_or(LineErrorReason::InvalidFieldValue)?;
    if value.is_finite() {
        Ok(())
    } else {
        Err(LineErrorReason::FloatOutOfRange)
    }
}

/// A digit string's value, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Digits<T> {
    Value(T),
    /// Well-formed, but the value does not fit.
    OutOfRange,
    /// Empty, or not all ASCII digits.
    Invalid,
}

/// Eight ASCII digits (first in the lowest byte) as their value, or `None`.
/// A byte below `'0'` borrows into bit 7 of its lane, one above `'9'` carries
/// into it after adding 0x76: either sets a high bit.
#[inline(always)]
pub(super) fn eight_digit_value(word: u64) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let digits = word.wrapping_sub(ONES * u64::from(b'0'));
    if (digits | digits.wrapping_add(ONES * 0x76)) & (ONES * 0x80) != 0 {
        return None;
    }
    // Adjacent digits into 2-digit lanes, then 4, then 8 (fixed-point multiplies).
    let pairs = (digits.wrapping_mul(10) + (digits >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    Some((quads.wrapping_mul(10_000) + (quads >> 32)) & 0xffff_ffff)
}

/// `digits` (one or more ASCII digits) as a u64.
#[inline]
pub(super) fn digits_value(digits: &[u8]) -> Digits<u64> {
    if digits.is_empty() {
        return Digits::Invalid;
    }
    if digits.len() > 19 {
        return long_digits_value(digits);
    }
    // Up to 19 digits cannot overflow (10^19 - 1 < 2^64): whole words first
    // (a nanosecond timestamp is two words and three digits), no checks.
    let mut value: u64 = 0;
    let mut rest = digits;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        match eight_digit_value(u64::from_le_bytes(*word)) {
            Some(v) => value = value * 100_000_000 + v,
            None => return Digits::Invalid,
        }
        rest = tail;
    }
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Digits::Invalid;
        }
        value = value * 10 + u64::from(d);
    }
    Digits::Value(value)
}

/// [`digits_value`] of more than 19 digits: every byte checked before an
/// overflow is reported (malformed beats out of range).
#[inline(never)]
fn long_digits_value(digits: &[u8]) -> Digits<u64> {
    if !digits.iter().all(u8::is_ascii_digit) {
        return Digits::Invalid;
    }
    digits
        .iter()
        .try_fold(0u64, |value, &b| value.checked_mul(10)?.checked_add(u64::from(b - b'0')))
        .map_or(Digits::OutOfRange, Digits::Value)
}

/// `-?digits` as an i64.
#[inline]
pub(super) fn signed_value(token: &[u8]) -> Digits<i64> {
    let (negative, digits) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };
    match digits_value(digits) {
        Digits::Value(magnitude) if negative => {
            0i64.checked_sub_unsigned(magnitude).map_or(Digits::OutOfRange, Digits::Value)
        }
        Digits::Value(magnitude) => i64::try_from(magnitude).map_or(Digits::OutOfRange, Digits::Value),
        Digits::OutOfRange => Digits::OutOfRange,
        Digits::Invalid => Digits::Invalid,
    }
}
