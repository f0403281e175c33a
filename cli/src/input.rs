//! Reading secret values: from a prompt without echo, standard input (`-`) or a file
//! (`@path`), and only from the command line when the user typed `key=value`. Transit input
//! is read as raw bytes, from standard input or a file only.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Parses `put` fields into the secret's data.
pub fn fields(specs: &[String]) -> Result<Map<String, Value>> {
    let mut data = Map::new();
    let mut stdin_used = false;
    for spec in specs {
        let (key, value) = match spec.split_once('=') {
            None => (spec.as_str(), prompt(&format!("{spec}: "))?),
            Some((key, "-")) => {
                if stdin_used {
                    bail!("only one field can be read from standard input");
                }
                stdin_used = true;
                (key, read_stdin()?)
            }
            Some((key, value)) => match value.strip_prefix('@') {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {path}"))?;
                    (key, Zeroizing::new(trim_newline(text)))
                }
                None => (key, Zeroizing::new(value.to_string())),
            },
        };
        if key.is_empty() {
            bail!("a field needs a name: {spec:?}");
        }
        if data
            .insert(key.to_string(), Value::String(value.to_string()))
            .is_some()
        {
            bail!("field {key:?} is given twice");
        }
    }
    Ok(data)
}

/// Asks for a value on the terminal without echoing it.
pub fn prompt(label: &str) -> Result<Zeroizing<String>> {
    let value = rpassword::prompt_password(label)
        .context("cannot read from the terminal (use - to read standard input)")?;
    Ok(Zeroizing::new(value))
}

/// Reads standard input to its end, without one trailing newline.
pub fn read_stdin() -> Result<Zeroizing<String>> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    Ok(Zeroizing::new(trim_newline(text)))
}

/// A secret given as `-` (standard input), `@path` (a file) or asked for at the terminal.
pub fn secret(stdin: Option<&str>, label: &str) -> Result<Zeroizing<String>> {
    match stdin {
        Some("-") => read_stdin(),
        Some(path) if path.starts_with('@') => {
            let text = std::fs::read_to_string(&path[1..])
                .with_context(|| format!("cannot read {}", &path[1..]))?;
            Ok(Zeroizing::new(trim_newline(text)))
        }
        Some(other) => bail!(
            "expected - (standard input), not a value on the command line: {other:?} would be visible to other users"
        ),
        None => prompt(label),
    }
}

/// Bytes read as they are, a final newline included: from `file`, or from standard input when
/// there is none. `otherwise` says how else to give them, for when standard input is a
/// terminal.
pub fn bytes(file: Option<&Path>, what: &str, otherwise: &str) -> Result<Zeroizing<Vec<u8>>> {
    match file {
        Some(path) => std::fs::read(path)
            .map(Zeroizing::new)
            .with_context(|| format!("cannot read {}", path.display())),
        None => stdin_bytes(what, otherwise),
    }
}

/// Reads standard input to its end, as it is. A terminal is refused: what is typed there is
/// echoed, and nothing marks where it ends.
pub fn stdin_bytes(what: &str, otherwise: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut stdin = std::io::stdin().lock();
    if stdin.is_terminal() {
        bail!("no {what}: standard input is a terminal; pipe the {what} in, or {otherwise}");
    }
    let mut bytes = Zeroizing::new(Vec::new());
    stdin
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    Ok(bytes)
}

fn trim_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_file_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.txt");
        std::fs::write(&file, "from-file\n").unwrap();
        let data = fields(&[
            "user=app".into(),
            format!("password=@{}", file.display()),
            "empty=".into(),
        ])
        .unwrap();
        assert_eq!(data["user"], "app");
        assert_eq!(data["password"], "from-file");
        assert_eq!(data["empty"], "");
        assert!(fields(&["=x".into()]).is_err());
        assert!(fields(&["a=1".into(), "a=2".into()]).is_err());
        assert!(fields(&["a=@/nonexistent/file".into()]).is_err());
    }

    #[test]
    fn bytes_from_a_file_are_kept_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plaintext.bin");
        std::fs::write(&file, b"\x00\xff line\r\n").unwrap();
        let read = bytes(Some(&file), "plaintext", "give --plaintext-file FILE").unwrap();
        assert_eq!(read.as_slice(), b"\x00\xff line\r\n");
        assert!(bytes(Some(&dir.path().join("missing")), "plaintext", "").is_err());
    }
}
