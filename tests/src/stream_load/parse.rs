//! Stream Load request parsing for the fake StarRocks: Basic auth, load headers (with the
//! BE's exact error messages), the `columns` mapping, and CSV / JSON bodies turned into
//! row operations for a [`TableSchema`]. Pure: no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use serde_json::Value;

use super::model::{ApplyMode, RowOp, TableSchema, convert};

/// Request headers with lowercase names.
pub type Headers = BTreeMap<String, String>;

/// Decodes `Authorization: Basic ...` into `(user, password)`.
pub fn basic_auth(headers: &Headers) -> Option<(String, String)> {
    let value = headers.get("authorization")?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// One entry of the `columns` header: a source column, or `name=expr`.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnItem {
    Source(String),
    Derived(String, Expr),
}

/// The expressions the fake evaluates: a literal or a reference to another column.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    Column(String),
}

/// Parsed load options (the headers the BE checks before reading the body).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    pub label: Option<String>,
    pub format: Format,
    pub columns: Option<Vec<ColumnItem>>,
    pub column_separator: String,
    pub row_delimiter: String,
    pub skip_header: usize,
    pub trim_space: bool,
    pub strip_outer_array: bool,
    pub jsonpaths: Option<Vec<String>>,
    pub ignore_json_size: bool,
    pub max_filter_ratio: f64,
    pub strict_mode: bool,
    pub timeout_secs: Option<u64>,
    /// Body compression (`compression` or `Content-Encoding` header).
    pub compression: Option<BodyCompression>,
    pub mode: ApplyMode,
}

/// Supported body compressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCompression {
    Gzip,
}

/// Decompresses a body per the load options.
pub fn decode_body<'a>(body: &'a [u8], opts: &LoadOptions) -> Result<Cow<'a, [u8]>, String> {
    match opts.compression {
        None => Ok(Cow::Borrowed(body)),
        Some(BodyCompression::Gzip) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("failed to decompress gzip body: {e}"))?;
            Ok(Cow::Owned(out))
        }
    }
}

fn parse_bool(headers: &Headers, name: &str, what: &str) -> Result<bool, String> {
    match headers.get(name).map(|v| v.trim()) {
        None => Ok(false),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(format!("Invalid {what} format. Must be bool type")),
    }
}

/// Decodes `\xNN` escapes in separators.
fn unescape_separator(raw: &str) -> String {
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(hex) = raw.get(i + 2..i + 4)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits on commas outside single/double quotes.
fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for ch in s.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, '\'' | '"') => {
                quote = Some(ch);
                current.push(ch);
            }
            (None, ',') => parts.push(std::mem::take(&mut current)),
            _ => current.push(ch),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn strip_backticks(s: &str) -> String {
    s.trim().trim_matches('`').to_string()
}

/// Parses the `columns` header.
pub fn parse_columns(raw: &str) -> Result<Vec<ColumnItem>, String> {
    split_top_level(raw)
        .into_iter()
        .map(|item| match item.split_once('=') {
            None => Ok(ColumnItem::Source(strip_backticks(&item))),
            Some((name, expr)) => {
                let expr = expr.trim();
                let parsed = if (expr.starts_with('\'') && expr.ends_with('\'') && expr.len() >= 2)
                    || (expr.starts_with('"') && expr.ends_with('"') && expr.len() >= 2)
                {
                    Expr::Literal(Value::String(expr[1..expr.len() - 1].to_string()))
                } else if let Ok(n) = expr.parse::<i64>() {
                    Expr::Literal(Value::from(n))
                } else if expr
                    .trim_matches('`')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    Expr::Column(strip_backticks(expr))
                } else {
                    return Err(format!(
                        "column expression not supported by the test server: {item}"
                    ));
                };
                Ok(ColumnItem::Derived(strip_backticks(name), parsed))
            }
        })
        .collect()
}

/// Whether a label matches `^[-\w]{1,128}$`.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 128
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl LoadOptions {
    /// Parses the format/option headers, with the BE's messages for invalid values.
    pub fn from_headers(headers: &Headers) -> Result<LoadOptions, String> {
        let format = match headers.get("format").map(|f| f.trim().to_ascii_lowercase()) {
            None => Format::Csv,
            Some(f) if f == "csv" => Format::Csv,
            Some(f) if f == "json" => Format::Json,
            Some(f) => return Err(format!("unknown data format, format={f}")),
        };
        let timeout_secs = match headers.get("timeout") {
            None => None,
            Some(t) => Some(
                t.trim()
                    .parse::<u64>()
                    .map_err(|_| "Invalid timeout format".to_string())?,
            ),
        };
        let columns = headers
            .get("columns")
            .map(|c| parse_columns(c))
            .transpose()?;
        let jsonpaths = headers
            .get("jsonpaths")
            .map(|p| {
                serde_json::from_str::<Vec<String>>(p)
                    .map_err(|e| format!("Invalid jsonpaths: {e}"))
            })
            .transpose()?;
        let max_filter_ratio = match headers.get("max_filter_ratio") {
            None => 0.0,
            Some(r) => r
                .trim()
                .parse::<f64>()
                .map_err(|_| "Invalid max_filter_ratio format".to_string())?,
        };
        let partial_update = parse_bool(headers, "partial_update", "partial update")?;
        let merge_condition = headers
            .get("merge_condition")
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        if partial_update && merge_condition.is_some() {
            return Err(
                "partial update and condition update cannot be used at the same time".into(),
            );
        }
        let compression = match (headers.get("compression"), headers.get("content-encoding")) {
            (Some(_), Some(_)) => {
                return Err(
                    "Only one of http header content-encoding and compression can be set".into(),
                );
            }
            (Some(c), None) | (None, Some(c)) => match c.trim().to_ascii_lowercase().as_str() {
                "gzip" => Some(BodyCompression::Gzip),
                other => return Err(format!("unsupported compression type: {other}")),
            },
            (None, None) => None,
        };
        let skip_header = match headers.get("skip_header") {
            None => 0,
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| "Invalid skip_header format".to_string())?,
        };
        Ok(LoadOptions {
            label: headers.get("label").cloned().filter(|l| !l.is_empty()),
            format,
            columns,
            column_separator: headers
                .get("column_separator")
                .map(|s| unescape_separator(s))
                .unwrap_or_else(|| "\t".into()),
            row_delimiter: headers
                .get("row_delimiter")
                .map(|s| unescape_separator(s))
                .unwrap_or_else(|| "\n".into()),
            skip_header,
            trim_space: parse_bool(headers, "trim_space", "trim space")?,
            strip_outer_array: parse_bool(headers, "strip_outer_array", "strip outer array")?,
            jsonpaths,
            ignore_json_size: parse_bool(headers, "ignore_json_size", "ignore json size")?,
            max_filter_ratio,
            strict_mode: parse_bool(headers, "strict_mode", "strict mode")?,
            timeout_secs,
            compression,
            mode: ApplyMode {
                merge_condition,
                partial_update,
            },
        })
    }

    /// The plan-phase checks against the table: `columns`, `merge_condition`, partial update.
    pub fn validate_against(&self, schema: &TableSchema) -> Result<(), String> {
        if let Some(items) = &self.columns {
            for item in items {
                if let ColumnItem::Derived(name, _) = item
                    && name != "__op"
                    && schema.index_of(name).is_none()
                {
                    return Err(format!("Unknown column '{name}' in table"));
                }
            }
        }
        if let Some(m) = &self.mode.merge_condition
            && schema.index_of(m).is_none()
        {
            return Err(format!("Merge condition column {m} does not exist"));
        }
        if self.mode.partial_update && self.columns.is_none() {
            return Err("partial update requires the columns header".into());
        }
        Ok(())
    }
}

/// A row rejected for data quality, with the error-log text.
#[derive(Debug, Clone, PartialEq)]
pub struct FilteredRow {
    pub error: String,
    pub row: String,
}

/// The parsed body of one load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedBody {
    pub total: u64,
    pub ops: Vec<RowOp>,
    pub filtered: Vec<FilteredRow>,
    pub unselected: u64,
}

/// A source record: named values (JSON) or positional fields (CSV, `None` = `\N`).
enum Record {
    Named(serde_json::Map<String, Value>),
    Positional(Vec<Option<String>>),
}

fn split_records(body: &[u8], opts: &LoadOptions) -> Result<Vec<(Record, String)>, String> {
    let text = String::from_utf8_lossy(body);
    match opts.format {
        Format::Csv => {
            let mut out = Vec::new();
            for line in text
                .split(opts.row_delimiter.as_str())
                .filter(|l| !l.is_empty())
                .skip(opts.skip_header)
            {
                let fields = line
                    .split(opts.column_separator.as_str())
                    .map(|f| {
                        let f = if opts.trim_space { f.trim() } else { f };
                        (f != "\\N").then(|| f.to_string())
                    })
                    .collect();
                out.push((Record::Positional(fields), line.to_string()));
            }
            Ok(out)
        }
        Format::Json => {
            let mut values = Vec::new();
            let stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
            for v in stream {
                let v = v.map_err(|e| format!("JSON data parse error: {e}"))?;
                if opts.strip_outer_array {
                    match v {
                        Value::Array(items) => values.extend(items),
                        _ => {
                            return Err(
                                "JSON data is not an array-object, strip_outer_array must be FALSE"
                                    .into(),
                            );
                        }
                    }
                } else {
                    match v {
                        Value::Array(_) => {
                            return Err(
                                "JSON data is an array-object, strip_outer_array must be TRUE"
                                    .into(),
                            );
                        }
                        other => values.push(other),
                    }
                }
            }
            values
                .into_iter()
                .map(|v| match v {
                    Value::Object(map) => {
                        let raw = Value::Object(map.clone()).to_string();
                        Ok((Record::Named(map), raw))
                    }
                    other => Err(format!("JSON row is not an object: {other}")),
                })
                .collect()
        }
    }
}

fn json_path_get<'a>(map: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    let path = path.trim().strip_prefix('$').unwrap_or(path);
    let mut parts = path.split('.').filter(|p| !p.is_empty());
    let first = parts.next()?;
    let mut current = map.get(first)?;
    for part in parts {
        current = current.get(part)?;
    }
    Some(current)
}

/// Turns a body into row operations for `schema`. Errors are whole-load failures
/// (e.g. malformed JSON); per-row problems become filtered rows.
pub fn parse_body(
    body: &[u8],
    opts: &LoadOptions,
    schema: &TableSchema,
) -> Result<ParsedBody, String> {
    let records = split_records(body, opts)?;
    let mut parsed = ParsedBody::default();
    for (record, raw) in records {
        parsed.total += 1;
        match map_record(record, opts, schema) {
            Ok(op) => parsed.ops.push(op),
            Err(error) => parsed.filtered.push(FilteredRow { error, row: raw }),
        }
    }
    Ok(parsed)
}

fn map_record(record: Record, opts: &LoadOptions, schema: &TableSchema) -> Result<RowOp, String> {
    // Named source values for this row.
    let mut source: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let items: Vec<ColumnItem> = match &opts.columns {
        Some(items) => items.clone(),
        None => {
            let mut items: Vec<ColumnItem> = schema
                .columns
                .iter()
                .map(|c| ColumnItem::Source(c.name.clone()))
                .collect();
            if matches!(record, Record::Named(ref m) if m.contains_key("__op")) {
                items.push(ColumnItem::Source("__op".into()));
            }
            items
        }
    };
    let source_names: Vec<&String> = items
        .iter()
        .filter_map(|i| match i {
            ColumnItem::Source(n) => Some(n),
            ColumnItem::Derived(..) => None,
        })
        .collect();
    match record {
        Record::Positional(fields) => {
            if fields.len() != source_names.len() {
                return Err(format!(
                    "Value count does not match column count. Expect {}, but got {}.",
                    source_names.len(),
                    fields.len()
                ));
            }
            for (name, field) in source_names.iter().zip(fields) {
                source.insert(name.to_ascii_lowercase(), field.map(Value::String));
            }
        }
        Record::Named(map) => {
            let lower: BTreeMap<String, &Value> = map
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            for (i, name) in source_names.iter().enumerate() {
                let value = match &opts.jsonpaths {
                    Some(paths) => paths.get(i).and_then(|p| json_path_get(&map, p)).cloned(),
                    None => lower.get(&name.to_ascii_lowercase()).map(|v| (*v).clone()),
                };
                source.insert(name.to_ascii_lowercase(), value);
            }
        }
    }
    for item in &items {
        if let ColumnItem::Derived(name, expr) = item {
            let value = match expr {
                Expr::Literal(v) => Some(v.clone()),
                Expr::Column(c) => source.get(&c.to_ascii_lowercase()).cloned().flatten(),
            };
            source.insert(name.to_ascii_lowercase(), value);
        }
    }
    let delete = match source.get("__op") {
        None | Some(None) => false,
        Some(Some(v)) => match v {
            Value::Number(n) => n.as_i64() == Some(1),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "delete" => true,
                "0" | "upsert" | "" => false,
                other => return Err(format!("invalid __op value {other}")),
            },
            Value::Bool(b) => *b,
            Value::Null => false,
            other => return Err(format!("invalid __op value {other}")),
        },
    };
    let mut values = Vec::with_capacity(schema.columns.len());
    for (i, column) in schema.columns.iter().enumerate() {
        let key = column.name.to_ascii_lowercase();
        let provided = source.contains_key(&key);
        let raw = source.get(&key).cloned().flatten();
        let converted = match raw {
            None => Value::Null,
            Some(v) => match convert(&v, column.ty) {
                Ok(v) => v,
                Err(e) if opts.strict_mode => return Err(e),
                Err(_) => Value::Null,
            },
        };
        let not_null = !column.nullable || schema.is_key(i);
        let partial_missing = opts.mode.partial_update && !provided;
        let unchecked = partial_missing || (delete && !schema.is_key(i));
        if converted.is_null() && not_null && !unchecked {
            return Err(format!(
                "NULL value in non-nullable column '{}'",
                column.name
            ));
        }
        values.push(if partial_missing {
            None
        } else {
            Some(converted)
        });
    }
    Ok(if delete {
        RowOp::Delete(values)
    } else {
        RowOp::Upsert(values)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> TableSchema {
        serde_json::from_value(json!({
            "columns": [
                {"name": "id", "type": "bigint", "nullable": false},
                {"name": "name", "type": "varchar"},
                {"name": "ver", "type": "bigint"}
            ],
            "key": ["id"]
        }))
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn auth() {
        let h = headers(&[("authorization", "Basic cm9vdDo=")]);
        assert_eq!(basic_auth(&h), Some(("root".into(), "".into())));
        assert_eq!(basic_auth(&headers(&[])), None);
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            LoadOptions::from_headers(&headers(&[("format", "xml")])).unwrap_err(),
            "unknown data format, format=xml"
        );
        assert_eq!(
            LoadOptions::from_headers(&headers(&[("timeout", "x")])).unwrap_err(),
            "Invalid timeout format"
        );
        assert_eq!(
            LoadOptions::from_headers(&headers(&[("strict_mode", "yes")])).unwrap_err(),
            "Invalid strict mode format. Must be bool type"
        );
    }

    #[test]
    fn json_array_and_ndjson() {
        let s = schema();
        let opts = LoadOptions::from_headers(&headers(&[
            ("format", "json"),
            ("strip_outer_array", "true"),
        ]))
        .unwrap();
        let body = br#"[{"id":1,"name":"a","ver":1},{"id":2,"__op":1}]"#;
        let parsed = parse_body(body, &opts, &s).unwrap();
        assert_eq!(parsed.total, 2);
        assert!(matches!(parsed.ops[1], RowOp::Delete(_)));
        let nd = LoadOptions::from_headers(&headers(&[("format", "json")])).unwrap();
        let parsed = parse_body(b"{\"id\":1}\n{\"id\":2}\n", &nd, &s).unwrap();
        assert_eq!(parsed.ops.len(), 2);
        assert!(parse_body(body, &nd, &s).is_err());
    }

    #[test]
    fn csv_with_columns_and_filtering() {
        let s = schema();
        let opts = LoadOptions::from_headers(&headers(&[
            ("column_separator", ","),
            ("columns", "flag,id,name,ver,__op=flag"),
        ]))
        .unwrap();
        let parsed = parse_body(b"0,1,a,1\n1,2,b,1\n0,3\n0,\\N,c,1\n", &opts, &s).unwrap();
        assert_eq!(parsed.total, 4);
        assert_eq!(parsed.ops.len(), 2);
        assert!(matches!(parsed.ops[1], RowOp::Delete(_)));
        assert_eq!(parsed.filtered.len(), 2);
        assert!(parsed.filtered[0].error.starts_with("Value count"));
        let all_delete =
            LoadOptions::from_headers(&headers(&[("columns", "id,__op='delete'")])).unwrap();
        let parsed = parse_body(b"7\n", &all_delete, &s).unwrap();
        assert!(matches!(parsed.ops[0], RowOp::Delete(_)));
    }

    #[test]
    fn gzip_bodies() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"id\":1}").unwrap();
        let gz = enc.finish().unwrap();
        let opts =
            LoadOptions::from_headers(&headers(&[("format", "json"), ("compression", "GZIP")]))
                .unwrap();
        let body = decode_body(&gz, &opts).unwrap();
        assert_eq!(parse_body(&body, &opts, &schema()).unwrap().ops.len(), 1);
        assert!(
            LoadOptions::from_headers(&headers(&[
                ("compression", "gzip"),
                ("content-encoding", "gzip")
            ]))
            .unwrap_err()
            .starts_with("Only one of")
        );
    }

    #[test]
    fn labels() {
        assert!(valid_label("relay-a_b-1"));
        assert!(!valid_label("a b"));
        assert!(!valid_label(&"x".repeat(129)));
    }
}
