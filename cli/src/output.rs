//! Printing answers: an aligned table for people, JSON, shell-quoted `NAME=value` lines, or a
//! single field's bare value.

use std::io::{self, Write};

use anyhow::{Result, bail};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::cli::Format;

/// What a command prints: titled sections of key/value rows, and the JSON the API returned.
pub struct Output {
    sections: Vec<(String, Vec<(String, Value)>)>,
    json: Value,
    primary: Option<usize>,
    bare: bool,
    raw: Option<Zeroizing<Vec<u8>>>,
}

impl Output {
    /// An output whose JSON form is `json`.
    pub fn new(json: Value) -> Self {
        Output {
            sections: Vec::new(),
            json,
            primary: None,
            bare: false,
            raw: None,
        }
    }

    /// Adds a section; an empty title prints no heading.
    pub fn section(mut self, title: &str, rows: Vec<(String, Value)>) -> Self {
        self.sections.push((title.to_string(), rows));
        self
    }

    /// Makes the last section added the only one `--format env` and `--field` look at (a
    /// secret's data rather than its metadata).
    pub fn primary(mut self) -> Self {
        self.primary = self.sections.len().checked_sub(1);
        self
    }

    /// Prints the values alone in table format, without keys (one-value answers).
    pub fn bare(mut self) -> Self {
        self.bare = true;
        self
    }

    /// Prints `bytes` as they are in table format, instead of the rows: a decrypted plaintext,
    /// which may be binary. `--format json|env` and `--field` still print the rows.
    pub fn raw(mut self, bytes: Zeroizing<Vec<u8>>) -> Self {
        self.raw = Some(bytes);
        self
    }

    /// The rows `--format env` and `--field` use.
    fn script_rows(&self) -> Vec<&(String, Value)> {
        match self.primary.and_then(|i| self.sections.get(i)) {
            Some((_, rows)) => rows.iter().collect(),
            None => self.sections.iter().flat_map(|(_, rows)| rows).collect(),
        }
    }

    /// Adds a section made of every entry of a JSON object, in its order.
    pub fn object(self, title: &str, object: &Value) -> Self {
        let rows = object
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        self.section(title, rows)
    }

    /// Prints in `format`, or only `field` when given.
    pub fn print(&self, format: Format, field: Option<&str>) -> Result<()> {
        let mut out = io::stdout().lock();
        if let Some(field) = field {
            let Some(value) = self
                .script_rows()
                .into_iter()
                .find(|(k, _)| k == field)
                .map(|(_, v)| v)
            else {
                bail!("no field {field:?} in the answer");
            };
            writeln!(out, "{}", text(value))?;
            return Ok(());
        }
        if let (Format::Table, Some(raw)) = (format, &self.raw) {
            out.write_all(raw)?;
            out.flush()?;
            return Ok(());
        }
        match format {
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&self.json)?)?,
            Format::Env => {
                for (key, value) in self.script_rows() {
                    writeln!(out, "{}={}", env_name(key), shell_quote(&text(value)))?;
                }
            }
            Format::Table if self.bare => {
                for (_, value) in self.script_rows() {
                    writeln!(out, "{}", text(value))?;
                }
            }
            Format::Table => {
                let many = self.sections.len() > 1;
                for (index, (title, rows)) in self.sections.iter().enumerate() {
                    if index > 0 {
                        writeln!(out)?;
                    }
                    if many && !title.is_empty() {
                        writeln!(out, "== {title} ==")?;
                    }
                    table(&mut out, rows)?;
                }
            }
        }
        Ok(())
    }
}

fn table(out: &mut impl Write, rows: &[(String, Value)]) -> io::Result<()> {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .max(3);
    writeln!(out, "{:<width$}    Value", "Key")?;
    writeln!(out, "{:<width$}    -----", "---")?;
    for (key, value) in rows {
        writeln!(out, "{key:<width$}    {}", text(value))?;
    }
    Ok(())
}

/// The text of a value: strings bare, null as `n/a`, lists joined, the rest as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".into(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            format!("[{}]", items.iter().map(text).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

/// An environment variable name for `key`: upper case, other characters as `_`.
pub fn env_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Quotes for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        let value = "it's $HOME `x` \"y\"";
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(value)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), value);
    }

    #[test]
    fn env_names_are_identifiers() {
        assert_eq!(env_name("api_key"), "API_KEY");
        assert_eq!(env_name("2fa-code"), "_2FA_CODE");
    }
}
