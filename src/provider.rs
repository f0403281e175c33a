//! LLM-provider API keys: the shapes vaultd knows, and fingerprints that identify a key
//! without revealing it.
//!
//! A KV secret is a provider key when its `custom_metadata.provider` names a provider. Its
//! credential is checked against the provider's known shape when written (an unknown shape
//! is a warning, never a refusal: providers change formats), and lists and rotation status
//! show only a fingerprint: the prefix that names the key's kind and the last four characters.

/// Providers vaultd knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI: `sk-…`, `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`.
    OpenAi,
    /// Anthropic: `sk-ant-…` (for example `sk-ant-api03-…`).
    Anthropic,
    /// Google AI: `AIza` and 35 more characters.
    Google,
    /// Azure OpenAI: 32 hexadecimal characters.
    Azure,
    /// Mistral: 32 letters and digits.
    Mistral,
    /// Cohere: 40 letters and digits.
    Cohere,
    /// Anything else: no shape is checked.
    Custom,
}

impl Provider {
    /// The provider a `custom_metadata.provider` value names, if vaultd knows it.
    pub fn parse(name: &str) -> Option<Provider> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "openai" => Provider::OpenAi,
            "anthropic" => Provider::Anthropic,
            "google" | "gemini" => Provider::Google,
            "azure" | "azure-openai" => Provider::Azure,
            "mistral" => Provider::Mistral,
            "cohere" => Provider::Cohere,
            "custom" => Provider::Custom,
            _ => return None,
        })
    }

    /// The name used in status output.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Google => "google",
            Provider::Azure => "azure",
            Provider::Mistral => "mistral",
            Provider::Cohere => "cohere",
            Provider::Custom => "custom",
        }
    }

    /// Whether `key` has this provider's known shape. Custom keys always do.
    pub fn matches(self, key: &str) -> bool {
        let body_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match self {
            Provider::Anthropic => key
                .strip_prefix("sk-ant-")
                .is_some_and(|rest| rest.len() >= 20 && body_ok(rest)),
            Provider::OpenAi => {
                key.strip_prefix("sk-")
                    .is_some_and(|rest| rest.len() >= 20 && body_ok(rest))
                    && !key.starts_with("sk-ant-")
            }
            Provider::Google => key.len() == 39 && key.starts_with("AIza") && body_ok(key),
            Provider::Azure => key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            Provider::Mistral => key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()),
            Provider::Cohere => key.len() == 40 && key.bytes().all(|b| b.is_ascii_alphanumeric()),
            Provider::Custom => true,
        }
    }

    /// A warning for a key that does not have the known shape.
    pub fn check(self, field: &str, key: &str) -> Option<String> {
        (!self.matches(key)).then(|| {
            format!(
                "field {field} does not look like a {} key; it was stored anyway",
                self.name()
            )
        })
    }
}

/// Identifies a key without revealing it: the kind prefix (up to the last `-` in the first
/// 12 characters, if any) and the last 4 characters, at most a sixth of a random key's
/// characters. Values shorter than 24 characters show only `…`.
pub fn fingerprint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 24 {
        return "…".into();
    }
    // Positions in characters, not bytes: a key may hold multi-byte characters.
    let prefix_len = chars[..12]
        .iter()
        .rposition(|&c| c == '-')
        .map_or(0, |i| i + 1);
    let prefix: String = chars[..prefix_len].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_shapes() {
        let openai = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
        let anthropic = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
        assert!(Provider::OpenAi.matches(openai));
        assert!(
            !Provider::OpenAi.matches(anthropic),
            "an Anthropic key is not an OpenAI one"
        );
        assert!(Provider::Anthropic.matches(anthropic));
        assert!(!Provider::Anthropic.matches(openai));
        assert!(Provider::Google.matches("AIzaSyA1234567890abcdefghijklmnopqrstuv"));
        assert!(Provider::Azure.matches("0123456789abcdef0123456789ABCDEF"));
        assert!(Provider::Mistral.matches("abcdefghijklmnopqrstuvwxyz012345"));
        assert!(Provider::Cohere.matches("abcdefghijklmnopqrstuvwxyz0123456789ABCD"));
        assert!(Provider::Custom.matches("anything"));
        assert!(Provider::OpenAi.check("api_key", "hunter2").is_some());
        assert_eq!(Provider::parse("OpenAI"), Some(Provider::OpenAi));
        assert_eq!(Provider::parse("acme"), None);
    }

    #[test]
    fn fingerprints_hide_the_key() {
        assert_eq!(
            fingerprint("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"),
            "sk-proj-…6789"
        );
        assert_eq!(
            fingerprint("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"),
            "sk-ant-…6789"
        );
        assert_eq!(
            fingerprint("AIzaSyA1234567890abcdefghijklmnopqrstuv"),
            "…stuv"
        );
        assert_eq!(fingerprint("short"), "…");
        assert_eq!(fingerprint("0123456789abcdef0123"), "…");
        // Multi-byte characters count as one each: the prefix stops at the `-`.
        assert_eq!(
            fingerprint(&format!("{}-{}", "é".repeat(11), "x".repeat(12))),
            format!("{}-…xxxx", "é".repeat(11))
        );
        assert_eq!(
            fingerprint(&format!("{}{}", "😀".repeat(12), "-abcdefghijkl")),
            "…ijkl"
        );
        let fp = fingerprint("0123456789abcdef0123456789ABCDEF");
        assert_eq!(fp, "…CDEF");
    }
}
