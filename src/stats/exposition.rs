//! Prometheus text exposition of counter structs, without allocating.
//!
//! `/metrics` is rendered on a worker lcore, once per scrape. Going through
//! `serde_json::Value` built a map (and a string per name) for every struct
//! on every scrape: the "maps allocated on every metrics call" class of
//! leak-in-slow-motion. Here a counter struct's derived `Serialize` is
//! walked by a tiny serializer that hands each integer field to a closure
//! ([`for_each_u64_field`]), sums over workers go into a fixed array, and
//! names are written piece by piece into the caller's (pooled) buffer.

use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};
use std::fmt::Write as _;

/// Prometheus text exposition (format 0.0.4): every sample with its `# HELP`
/// and `# TYPE`, names `metricsstream_<section>_<field>`, counters ending in
/// `_total`, nanosecond counters in seconds (base units, as promtool wants).
pub struct Exposition<'a> {
    out: &'a mut String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Most integer fields one section may have (the largest struct has ~45).
const MAX_FIELDS: usize = 96;

impl<'a> Exposition<'a> {
    pub fn new(out: &'a mut String) -> Exposition<'a> {
        Exposition { out }
    }

    /// One sample; `name` without the `metricsstream_` prefix or `_total`.
    pub fn sample(&mut self, name: &str, help: &str, kind: MetricKind, value: f64) {
        self.write_sample(&[name], help, kind, value);
    }

    /// Every integer field of a counter struct: gauges are the fields
    /// [`is_gauge`] names, the rest are counters.
    pub fn section<T: Serialize>(&mut self, section: &str, counters: &T) {
        self.section_sum(section, std::iter::once(counters));
    }

    /// Like [`Exposition::section`], each field summed over `parts` (one
    /// struct per worker, all of the same type).
    pub fn section_sum<T: Serialize>(&mut self, section: &str, parts: impl IntoIterator<Item = T>) {
        let mut fields = [("", 0u64); MAX_FIELDS];
        let mut len = 0;
        for part in parts {
            let mut i = 0;
            for_each_u64_field(&part, &mut |name, n| {
                if let Some(slot) = fields.get_mut(i) {
                    *slot = (name, slot.1 + n);
                }
                i += 1;
            });
            debug_assert!(i <= MAX_FIELDS, "{section}: {i} fields, raise MAX_FIELDS");
            len = i.min(MAX_FIELDS);
        }
        for &(field, n) in &fields[..len] {
            let kind = if is_gauge(field) { MetricKind::Gauge } else { MetricKind::Counter };
            match field.strip_suffix("_ns") {
                Some(base) => self.write_sample(&[section, "_", base, "_seconds"], field, kind, n as f64 / 1e9),
                None => self.write_sample(&[section, "_", field], field, kind, n as f64),
            }
        }
    }

    /// A Prometheus histogram named by the concatenation of `name` (base
    /// units, e.g. ending in `_seconds`): `buckets` are (`le` label,
    /// cumulative count) in increasing order without `+Inf`, which is `count`.
    pub fn histogram<'b>(
        &mut self,
        name: &[&str],
        help: &str,
        buckets: impl IntoIterator<Item = (&'b str, u64)>,
        count: u64,
        sum: f64,
    ) {
        let out = &mut *self.out;
        out.push_str("# HELP ");
        push_name(out, name, "");
        out.push(' ');
        out.push_str(help);
        out.push_str("\n# TYPE ");
        push_name(out, name, "");
        out.push_str(" histogram\n");
        for (le, n) in buckets {
            push_name(out, name, "_bucket{le=\"");
            out.push_str(le);
            let _ = writeln!(out, "\"}} {n}");
        }
        push_name(out, name, "_bucket{le=\"+Inf\"}");
        let _ = writeln!(out, " {count}");
        push_name(out, name, "_sum");
        let _ = writeln!(out, " {sum}");
        push_name(out, name, "_count");
        let _ = writeln!(out, " {count}");
    }

    /// Writes one sample named by the concatenation of `name`. Without a
    /// `help` of its own, a field's help is `<section>: <field in words>`.
    fn write_sample(&mut self, name: &[&str], help: &str, kind: MetricKind, value: f64) {
        let (kind, suffix) = match kind {
            MetricKind::Counter => ("counter", "_total"),
            MetricKind::Gauge => ("gauge", ""),
        };
        let out = &mut *self.out;
        let full_name = |out: &mut String| push_name(out, name, suffix);
        out.push_str("# HELP ");
        full_name(out);
        out.push(' ');
        if name.len() > 1 {
            // A section's field: "<section>: <field in words>".
            out.push_str(name[0]);
            out.push_str(": ");
            out.extend(help.chars().map(|c| if c == '_' { ' ' } else { c }));
            if help.ends_with("_ns") {
                out.push_str(" (in seconds)");
            }
        } else {
            out.push_str(help);
        }
        out.push_str("\n# TYPE ");
        full_name(out);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        full_name(out);
        let _ = writeln!(out, " {value}");
    }
}

/// `metricsstream_` + the pieces of `name` + `suffix`.
fn push_name(out: &mut String, name: &[&str], suffix: &str) {
    out.push_str("metricsstream_");
    name.iter().for_each(|p| out.push_str(p));
    out.push_str(suffix);
}

/// Fields that are a current level rather than a running total.
pub fn is_gauge(field: &str) -> bool {
    const LEVELS: [&str; 9] = [
        "_open",
        "_in_use",
        "_high_water",
        "_allocated",
        "_occupancy",
        "_lag_records",
        "_reserved",
        "_reserved_bytes",
        "_free",
    ];
    const NAMES: [&str; 5] = ["held", "flows", "free", "slots", "storage_fault"];
    NAMES.contains(&field) || LEVELS.iter().any(|s| field.ends_with(s))
}

/// Calls `f(name, value)` for every unsigned integer field of a struct with
/// a derived `Serialize`, in declaration order, without allocating. Fields
/// of other types (nested structs, arrays, floats) are skipped.
pub fn for_each_u64_field<T: Serialize + ?Sized>(value: &T, f: &mut dyn FnMut(&'static str, u64)) {
    let _ = value.serialize(Fields { f });
}

/// Anything but what the walk understands: skipped.
#[derive(Debug)]
struct Skip;

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a counter")
    }
}

impl std::error::Error for Skip {}

impl ser::Error for Skip {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Skip
    }
}

/// Serializer methods that refuse their input (`Skip`).
macro_rules! skip {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Skip> { Err(Skip) })*
    };
}

/// Methods of the serializer traits that every walker here refuses.
macro_rules! skip_compound {
    () => {
        type SerializeSeq = Impossible<Self::Ok, Skip>;
        type SerializeTuple = Impossible<Self::Ok, Skip>;
        type SerializeTupleStruct = Impossible<Self::Ok, Skip>;
        type SerializeTupleVariant = Impossible<Self::Ok, Skip>;
        type SerializeMap = Impossible<Self::Ok, Skip>;
        type SerializeStructVariant = Impossible<Self::Ok, Skip>;
        skip!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_unit_variant(&'static str, u32, &'static str),
        );
        fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<Self::Ok, Skip> {
            Err(Skip)
        }
        fn serialize_newtype_struct<V: Serialize + ?Sized>(self, _: &'static str, _: &V) -> Result<Self::Ok, Skip> {
            Err(Skip)
        }
        fn serialize_newtype_variant<V: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &V,
        ) -> Result<Self::Ok, Skip> {
            Err(Skip)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Skip> {
            Err(Skip)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Skip> {
            Err(Skip)
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Skip> {
            Err(Skip)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Skip> {
            Err(Skip)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Skip> {
            Err(Skip)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Skip> {
            Err(Skip)
        }
    };
}

/// Walks a struct's fields.
struct Fields<'f> {
    f: &'f mut dyn FnMut(&'static str, u64),
}

impl Serializer for Fields<'_> {
    type Ok = ();
    type Error = Skip;
    type SerializeStruct = Self;
    skip_compound!();
    skip!(serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64));

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Skip> {
        Ok(self)
    }
}

impl SerializeStruct for Fields<'_> {
    type Ok = ();
    type Error = Skip;

    fn serialize_field<V: Serialize + ?Sized>(&mut self, key: &'static str, value: &V) -> Result<(), Skip> {
        if let Ok(n) = value.serialize(Unsigned) {
            (self.f)(key, n);
        }
        Ok(())
    }

    fn end(self) -> Result<(), Skip> {
        Ok(())
    }
}

/// Reads one unsigned integer.
struct Unsigned;

impl Serializer for Unsigned {
    type Ok = u64;
    type Error = Skip;
    type SerializeStruct = Impossible<u64, Skip>;
    skip_compound!();

    fn serialize_u8(self, v: u8) -> Result<u64, Skip> {
        Ok(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<u64, Skip> {
        Ok(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<u64, Skip> {
        Ok(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<u64, Skip> {
        Ok(v)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Skip> {
        Err(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct C {
        requests: u64,
        connections_open: u64,
        fsync_ns: u64,
        nested: [u64; 2],
        ratio: f64,
    }

    fn c(requests: u64) -> C {
        C { requests, connections_open: 2, fsync_ns: 1_500_000_000, nested: [7, 7], ratio: 0.5 }
    }

    #[test]
    fn integer_fields_in_declaration_order_others_skipped() {
        let mut seen = Vec::new();
        for_each_u64_field(&c(3), &mut |k, v| seen.push((k, v)));
        assert_eq!(seen, [("requests", 3), ("connections_open", 2), ("fsync_ns", 1_500_000_000)]);
        for_each_u64_field(&5u64, &mut |_, _| panic!("not a struct"));
    }

    #[test]
    fn exposition_has_help_type_and_base_units() {
        let mut out = String::new();
        Exposition::new(&mut out).section("x", &c(3));
        assert!(out.contains("# HELP metricsstream_x_requests_total x: requests\n"), "{out}");
        assert!(out.contains("# TYPE metricsstream_x_requests_total counter\nmetricsstream_x_requests_total 3\n"));
        assert!(out.contains("# TYPE metricsstream_x_connections_open gauge\nmetricsstream_x_connections_open 2\n"));
        assert!(out.contains("# HELP metricsstream_x_fsync_seconds_total x: fsync ns (in seconds)\n"), "{out}");
        assert!(out.contains("metricsstream_x_fsync_seconds_total 1.5\n"), "{out}");
        assert_eq!(out.matches("# HELP ").count(), 3);
        let mut one = String::new();
        Exposition::new(&mut one).sample("mbufs_in_use", "mbufs taken", MetricKind::Gauge, 4.0);
        assert_eq!(
            one,
            "# HELP metricsstream_mbufs_in_use mbufs taken\n# TYPE metricsstream_mbufs_in_use gauge\nmetricsstream_mbufs_in_use 4\n"
        );
    }

    #[test]
    fn histogram_has_cumulative_buckets_inf_sum_and_count() {
        let mut out = String::new();
        Exposition::new(&mut out).histogram(&["w", "_lat_seconds"], "latency", [("0.001", 2), ("0.01", 5)], 6, 0.25);
        assert_eq!(
            out,
            "# HELP metricsstream_w_lat_seconds latency\n# TYPE metricsstream_w_lat_seconds histogram\n\
             metricsstream_w_lat_seconds_bucket{le=\"0.001\"} 2\nmetricsstream_w_lat_seconds_bucket{le=\"0.01\"} 5\n\
             metricsstream_w_lat_seconds_bucket{le=\"+Inf\"} 6\nmetricsstream_w_lat_seconds_sum 0.25\n\
             metricsstream_w_lat_seconds_count 6\n"
        );
    }

    #[test]
    fn section_sum_adds_each_field_over_the_parts() {
        let mut out = String::new();
        Exposition::new(&mut out).section_sum("x", [c(3), c(4)]);
        assert!(out.contains("metricsstream_x_requests_total 7\n"), "{out}");
        assert!(out.contains("metricsstream_x_connections_open 4\n"), "{out}");
        assert!(out.contains("metricsstream_x_fsync_seconds_total 3\n"), "{out}");
    }
}
