//! Text renderings of decoded records: InfluxDB line protocol (for `dump`
//! and the VictoriaMetrics shipper, of version-1 records: version-2 records
//! are written as stored) and one-JSON-object-per-line (for `dump --format json`).
//!
//! Line protocol escaping follows the InfluxDB reference: measurement escapes
//! comma and space; tag keys, tag values and field keys escape comma, equals
//! sign and space; string field values escape `"` and `\`. Line protocol has
//! no escape for a newline, so a newline inside any text is written as the
//! two characters `\n` (lossy, but keeps one record per line).

use std::io::Write as _;

use crate::ingest::record::{FieldValue, Record};

fn escape_into(out: &mut Vec<u8>, s: &str, specials: &[u8]) {
    for &b in s.as_bytes() {
        if b == b'\n' {
            out.extend_from_slice(b"\\n");
            continue;
        }
        if specials.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends `record` as one line of line protocol, with a trailing newline.
pub fn write_line_protocol(out: &mut Vec<u8>, record: &Record) {
    escape_into(out, &record.measurement, b", ");
    for t in &record.tags {
        out.push(b',');
        escape_into(out, &t.key, b",= ");
        out.push(b'=');
        escape_into(out, &t.value, b",= ");
    }
    for (i, f) in record.fields.iter().enumerate() {
        out.push(if i == 0 { b' ' } else { b',' });
        escape_into(out, &f.key, b",= ");
        out.push(b'=');
        // `write!` into a Vec cannot fail.
        match &f.value {
            FieldValue::Int(v) => {
                let _ = write!(out, "{v}i");
            }
            FieldValue::UInt(v) => {
                let _ = write!(out, "{v}u");
            }
            FieldValue::Float(v) => {
                // `{:?}` keeps full precision and always reads back as a float.
                let _ = write!(out, "{v:?}");
            }
            FieldValue::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
            FieldValue::Str(s) => {
                out.push(b'"');
                escape_into(out, s, b"\"\\");
                out.push(b'"');
            }
        }
    }
    let _ = writeln!(out, " {}", record.timestamp_ns);
}

/// One JSON object (no trailing newline):
/// `{"id":N,"client":"..","measurement":"..","tags":{..},"fields":{..},"timestamp_ns":N}`.
/// Unsigned and signed integers stay exact; non-finite floats become `null`.
pub fn json_value(id: u64, client: &str, record: &Record) -> serde_json::Value {
    use serde_json::{Map, Value};
    let tags: Map<String, Value> =
        record.tags.iter().map(|t| (t.key.to_string(), Value::String(t.value.to_string()))).collect();
    let fields: Map<String, Value> = record
        .fields
        .iter()
        .map(|f| {
            let v = match &f.value {
                FieldValue::Int(v) => Value::from(*v),
                FieldValue::UInt(v) => Value::from(*v),
                FieldValue::Float(v) => serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number),
                FieldValue::Bool(v) => Value::Bool(*v),
                FieldValue::Str(s) => Value::String(s.to_string()),
            };
            (f.key.to_string(), v)
        })
        .collect();
    serde_json::json!({
        "id": id,
        "client": client,
        "measurement": record.measurement,
        "tags": tags,
        "fields": fields,
        "timestamp_ns": record.timestamp_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::record::{Field, Tag};

    #[test]
    fn line_protocol_escaping() {
        let r = Record {
            measurement: "my meas,x".into(),
            tags: vec![Tag { key: "t k".into(), value: "a=b,c d".into() }],
            fields: vec![
                Field { key: "f=1".into(), value: FieldValue::Str("say \"hi\" \\ now\n".into()) },
                Field { key: "i".into(), value: FieldValue::Int(-3) },
                Field { key: "u".into(), value: FieldValue::UInt(7) },
                Field { key: "x".into(), value: FieldValue::Float(1.0) },
                Field { key: "b".into(), value: FieldValue::Bool(true) },
            ],
            timestamp_ns: 1_700_000_000_000_000_000,
        };
        let mut s = Vec::new();
        write_line_protocol(&mut s, &r);
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "my\\ meas\\,x,t\\ k=a\\=b\\,c\\ d f\\=1=\"say \\\"hi\\\" \\\\ now\\n\",i=-3i,u=7u,x=1.0,b=true 1700000000000000000\n"
        );
        let j = json_value(5, "c", &r);
        assert_eq!(j["fields"]["u"], 7);
        assert_eq!(j["tags"]["t k"], "a=b,c d");
    }
}
