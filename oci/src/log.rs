//! `--log FILE`, `--log-format text|json` and `--debug`, as runc's callers use them.
//!
//! containerd's shim passes `--log <state>/log.json --log-format json` and, when a command
//! fails, reads that file for the last `"level":"error"` line and shows its `msg`; podman
//! does the same through conmon. So with `--log-format json` every event is one JSON object
//! per line with runc's (logrus's) keys, `level`, `msg` and `time`, plus the event's own
//! fields. `text` writes logrus's text format (`time="..." level=info msg="..."`). Without
//! `--log` events go to stderr, warnings and errors only unless `--debug`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::error::{OciError, Result};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// logrus text: `time="..." level=... msg="..."`.
    Text,
    /// One JSON object per line: `{"level":...,"msg":...,"time":...}`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

/// Writes events to one sink in one format, at or above one level.
struct LineLayer {
    sink: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    max_level: Level,
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    msg: String,
    extra: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra
                .insert(field.name().to_string(), Value::from(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra
            .insert(field.name().to_string(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra
                .insert(field.name().to_string(), Value::from(format!("{value:?}")));
        }
    }
}

/// logrus's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// One log line (with its newline) for `level`, `fields` at `time`.
fn format_line(format: LogFormat, level: &Level, fields: Fields, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let mut object = fields.extra;
            object.insert("level".into(), Value::from(level_name(level)));
            object.insert("msg".into(), Value::from(fields.msg));
            object.insert("time".into(), Value::from(time));
            let mut line = Value::Object(object).to_string();
            line.push('\n');
            line
        }
        LogFormat::Text => {
            let quote = |s: &str| Value::from(s).to_string();
            let mut line = format!(
                "time={} level={} msg={}",
                quote(time),
                level_name(level),
                quote(&fields.msg)
            );
            for (k, v) in &fields.extra {
                let v = match v {
                    Value::String(s) => quote(s),
                    other => other.to_string(),
                };
                let _ = write!(line, " {k}={v}");
            }
            line.push('\n');
            line
        }
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = event.metadata().level();
        if *level > self.max_level {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format_line(self.format, level, fields, &crate::state::now_rfc3339());
        if let Ok(mut sink) = self.sink.lock() {
            // One write per line, so lines of concurrent invocations (O_APPEND) never mix.
            let _ = sink.write_all(line.as_bytes());
        }
    }
}

/// Whether log events go to a file (callers read errors there) or to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// `--log FILE`.
    File,
    /// No `--log`: stderr.
    Stderr,
}

/// Installs the global logger. Returns where events go.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> Result<Destination> {
    let (sink, max_level, destination): (Box<dyn Write + Send>, Level, Destination) = match path {
        Some(path) if !path.as_os_str().is_empty() => {
            let file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| OciError::io(format!("open log file {}", path.display()), e))?;
            let level = if debug { Level::DEBUG } else { Level::INFO };
            (Box::new(file), level, Destination::File)
        }
        _ => {
            let level = if debug { Level::DEBUG } else { Level::WARN };
            (Box::new(std::io::stderr()), level, Destination::Stderr)
        }
    };
    let layer = LineLayer {
        sink: Mutex::new(sink),
        format,
        max_level,
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| OciError::Runtime(format!("install logger: {e}")))?;
    Ok(destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(msg: &str) -> Fields {
        let mut f = Fields {
            msg: msg.into(),
            ..Default::default()
        };
        f.extra.insert("id".into(), Value::from("c1"));
        f
    }

    #[test]
    fn json_lines_carry_runc_keys() {
        let line = format_line(
            LogFormat::Json,
            &Level::ERROR,
            fields("container c1 does not exist"),
            "2026-01-01T00:00:00Z",
        );
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container c1 does not exist");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["id"], "c1");
    }

    #[test]
    fn text_lines_look_like_logrus() {
        let line = format_line(
            LogFormat::Text,
            &Level::WARN,
            fields("a \"quoted\" word"),
            "T",
        );
        assert_eq!(
            line,
            "time=\"T\" level=warning msg=\"a \\\"quoted\\\" word\" id=\"c1\"\n"
        );
    }

    #[test]
    fn formats_parse_and_unknown_ones_are_refused() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("xml"));
    }
}
