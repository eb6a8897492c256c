//! Log lines as text for people or JSON for a collector (`log.format`), written by
//! env_logger (`RUST_LOG` still filters, default `info`) to stderr.
//!
//! Every line a request causes names its id: from the record's own `request_id` (the access
//! line) or else from the thread's current request ([`request_context`]), which follows the
//! request's work onto blocking and hashing threads.
//!
//! JSON: one object per line, keys `ts` (RFC 3339, UTC, milliseconds), `level`, `target`,
//! `msg`, then `request_id` when a request caused the line and the record's own key-values
//! (the access line's `method`, `route`, `status`, `duration_ms`, `client_ip`).

use std::io::Write;

use env_logger::fmt::Formatter;
use log::Record;
use log::kv::{Key, Value, VisitSource};
use myapi_services::config::ConfigError;
use myapi_services::{SettingsSource, request_context};
use serde::Deserialize;

/// The `log` section of the settings.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
}

impl LogSettings {
    pub fn from_source(source: &SettingsSource) -> Result<Self, ConfigError> {
        #[derive(Deserialize)]
        struct Sections {
            log: LogSettings,
        }
        Ok(source.read::<Sections>()?.log)
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[ts LEVEL target] msg request_id=…`, as env_logger writes it plus the request id.
    Text,
    /// One JSON object per line.
    Json,
}

/// The key carrying the request id, on the access line and in JSON lines.
pub const REQUEST_ID_KEY: &str = "request_id";

/// Installs the process-wide logger. `RUST_LOG` filters as env_logger documents.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    match format {
        LogFormat::Text => builder.format(write_text),
        LogFormat::Json => builder.format(write_json),
    };
    builder.init();
}

fn write_text(buf: &mut Formatter, record: &Record<'_>) -> std::io::Result<()> {
    write!(
        buf,
        "[{} {:<5} {}] {}",
        buf.timestamp(),
        record.level(),
        record.target(),
        record.args()
    )?;
    // The access line names its id in its message already.
    if record.key_values().get(Key::from(REQUEST_ID_KEY)).is_none()
        && let Some(id) = request_context::current()
    {
        write!(buf, " {REQUEST_ID_KEY}={id}")?;
    }
    writeln!(buf)
}

fn write_json(buf: &mut Formatter, record: &Record<'_>) -> std::io::Result<()> {
    let line = json_line(&buf.timestamp_millis().to_string(), record);
    writeln!(buf, "{line}")
}

/// The JSON object for `record`, logged at `ts`. Built as a string in key order, each key and
/// value escaped by serde_json.
fn json_line(ts: &str, record: &Record<'_>) -> String {
    let mut line = String::with_capacity(256);
    let mut field = |key: &str, value: serde_json::Value| {
        line.push(if line.is_empty() { '{' } else { ',' });
        line.push_str(&json_string(key));
        line.push(':');
        line.push_str(&value.to_string());
    };
    field("ts", ts.into());
    field("level", record.level().as_str().into());
    field("target", record.target().into());
    field("msg", record.args().to_string().into());
    let mut fields = Fields(Vec::new());
    let _ = record.key_values().visit(&mut fields);
    if !fields.0.iter().any(|(key, _)| key == REQUEST_ID_KEY)
        && let Some(id) = request_context::current()
    {
        field(REQUEST_ID_KEY, (*id).into());
    }
    for (key, value) in fields.0 {
        // The four keys above are the record's own; a key-value cannot replace them.
        if !matches!(key.as_str(), "ts" | "level" | "target" | "msg") {
            field(&key, value);
        }
    }
    line.push('}');
    line
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A record's key-values as JSON: numbers and booleans as such, anything else as its text.
struct Fields(Vec<(String, serde_json::Value)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(number) = value.to_u64() {
            number.into()
        } else if let Some(number) = value.to_i64() {
            number.into()
        } else if let Some(number) = value.to_f64() {
            serde_json::Number::from_f64(number).map_or(serde_json::Value::Null, Into::into)
        } else if let Some(flag) = value.to_bool() {
            flag.into()
        } else {
            value.to_string().into()
        };
        self.0.push((key.as_str().to_owned(), json));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use log::Level;

    use super::*;

    fn parse(line: &str) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::from_str(line).unwrap() {
            serde_json::Value::Object(map) => map,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn json_lines_escape_and_carry_the_current_request() {
        let message = "quote \" backslash \\ newline \n tab \t control \u{1}";
        let line = request_context::scope(Some("r-7".into()), || {
            json_line(
                "2025-01-02T03:04:05.678Z",
                &Record::builder()
                    .args(format_args!("{message}"))
                    .level(Level::Warn)
                    .target("myapi_services::auth")
                    .build(),
            )
        });
        assert!(!line.contains('\n'), "{line}");
        let map = parse(&line);
        assert_eq!(map["ts"], "2025-01-02T03:04:05.678Z");
        assert_eq!(map["level"], "WARN");
        assert_eq!(map["target"], "myapi_services::auth");
        assert_eq!(map["msg"], message);
        assert_eq!(map["request_id"], "r-7");
        assert!(line.starts_with(r#"{"ts":"#), "{line}");
    }

    #[test]
    fn key_values_become_typed_fields_and_cannot_replace_the_core_keys() {
        let kvs: [(&str, Value<'_>); 5] = [
            ("request_id", "own".into()),
            ("status", 404u16.into()),
            ("duration_ms", 1.5f64.into()),
            ("client_ip", "203.0.113.7".into()),
            ("msg", "spoofed".into()),
        ];
        let line = request_context::scope(Some("ambient".into()), || {
            json_line(
                "t",
                &Record::builder()
                    .args(format_args!("GET /"))
                    .level(Level::Info)
                    .target("myapi_web::access")
                    .key_values(&kvs)
                    .build(),
            )
        });
        let map = parse(&line);
        assert_eq!(map["request_id"], "own");
        assert_eq!(map["status"], 404);
        assert_eq!(map["duration_ms"], 1.5);
        assert_eq!(map["client_ip"], "203.0.113.7");
        assert_eq!(map["msg"], "GET /");
        assert_eq!(map.len(), 8, "{line}");
    }

    #[test]
    fn outside_a_request_there_is_no_request_id() {
        let line = json_line(
            "t",
            &Record::builder()
                .args(format_args!("listening"))
                .level(Level::Info)
                .target("myapi_web::startup")
                .build(),
        );
        assert!(!parse(&line).contains_key("request_id"), "{line}");
    }
}
