//! ACL policies in Vault's language, and the check of a request against them.
//!
//! A policy is a set of path rules, written in HCL or JSON:
//!
//! ```hcl
//! path "secret/data/app/*" { capabilities = ["create", "read", "update"] }
//! path "secret/+/team"     { capabilities = ["read"] }
//! ```
//!
//! Access is denied unless a rule grants it. A pattern ending in `*` matches any path with
//! that prefix; `+` matches exactly one path segment. When several patterns match, the most
//! specific wins, by Vault's order: the later the first wildcard, the better; no trailing `*`
//! beats a trailing `*`; fewer `+` segments beat more; longer beats shorter; then the
//! lexicographically larger. Rules for the same pattern in several policies are merged, and
//! `deny` in the chosen rule overrides every grant.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::api::{ApiError, Operation};
use crate::barrier::{Barrier, Expect, MountId, RecordId, RecordKind};

/// The capabilities a rule can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities(u16);

impl Capabilities {
    /// Create a path that does not exist.
    pub const CREATE: Capabilities = Capabilities(1);
    /// Read.
    pub const READ: Capabilities = Capabilities(1 << 1);
    /// Update an existing path.
    pub const UPDATE: Capabilities = Capabilities(1 << 2);
    /// Patch.
    pub const PATCH: Capabilities = Capabilities(1 << 3);
    /// Delete.
    pub const DELETE: Capabilities = Capabilities(1 << 4);
    /// List.
    pub const LIST: Capabilities = Capabilities(1 << 5);
    /// Use root-protected routes.
    pub const SUDO: Capabilities = Capabilities(1 << 6);
    /// Run vaultd's rotation routes.
    pub const ROTATE: Capabilities = Capabilities(1 << 7);
    /// Deny everything, overriding grants.
    pub const DENY: Capabilities = Capabilities(1 << 8);

    const NAMES: [(&'static str, Capabilities); 9] = [
        ("create", Capabilities::CREATE),
        ("read", Capabilities::READ),
        ("update", Capabilities::UPDATE),
        ("patch", Capabilities::PATCH),
        ("delete", Capabilities::DELETE),
        ("list", Capabilities::LIST),
        ("sudo", Capabilities::SUDO),
        ("rotate", Capabilities::ROTATE),
        ("deny", Capabilities::DENY),
    ];

    /// Whether every capability of `other` is in `self`.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// Capability names, as `sys/capabilities` lists them.
    pub fn names(self) -> Vec<&'static str> {
        if self.contains(Capabilities::DENY) {
            return vec!["deny"];
        }
        Capabilities::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect()
    }

    fn parse(name: &str) -> Option<Capabilities> {
        Capabilities::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }
}

/// One path rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: String,
    capabilities: Capabilities,
}

impl Rule {
    fn matches(&self, path: &str) -> bool {
        let (pattern, prefix) = match self.pattern.strip_suffix('*') {
            Some(p) => (p, true),
            None => (self.pattern.as_str(), false),
        };
        if !pattern.contains('+') {
            return if prefix {
                path.starts_with(pattern)
            } else {
                path == pattern
            };
        }
        // Compare segment by segment; `+` takes one whole segment.
        let mut rest = path;
        let mut parts = pattern.split('/').peekable();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            if last {
                return match (part, prefix) {
                    ("+", false) => !rest.is_empty() && !rest.contains('/'),
                    ("+", true) => !rest.is_empty(),
                    (literal, true) => rest.starts_with(literal),
                    (literal, false) => rest == literal,
                };
            }
            let Some((segment, tail)) = rest.split_once('/') else {
                return false;
            };
            if part != "+" && part != segment || part == "+" && segment.is_empty() {
                return false;
            }
            rest = tail;
        }
        false
    }

    /// Vault's specificity order as a sortable key: higher is more specific.
    fn priority(&self) -> (usize, bool, std::cmp::Reverse<usize>, usize, &str) {
        let first_wildcard = self.pattern.find(['+', '*']).unwrap_or(usize::MAX);
        let plus_segments = self.pattern.split('/').filter(|s| *s == "+").count();
        (
            first_wildcard,
            !self.pattern.ends_with('*'),
            std::cmp::Reverse(plus_segments),
            self.pattern.len(),
            &self.pattern,
        )
    }
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// The text it was parsed from.
    pub text: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    path: BTreeMap<String, PathBlock>,
}

#[derive(Deserialize)]
struct PathBlock {
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

impl Policy {
    /// Parses a policy in HCL or JSON.
    pub fn parse(name: &str, text: &str) -> Result<Policy, String> {
        let document: Document = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("failed to parse policy: {e}"))?
        } else {
            hcl::from_str(text).map_err(|e| format!("failed to parse policy: {e}"))?
        };
        let mut rules = Vec::new();
        for (pattern, block) in document.path {
            if let Some(key) = block.other.keys().next() {
                return Err(format!(
                    "path {pattern:?}: {key} is not supported by vaultd; a rule can only list capabilities"
                ));
            }
            let mut capabilities = Capabilities::default();
            for name in &block.capabilities {
                let capability = Capabilities::parse(name)
                    .ok_or_else(|| format!("path {pattern:?}: unknown capability {name:?}"))?;
                capabilities = capabilities.union(capability);
            }
            if let Some(legacy) = &block.policy {
                capabilities = capabilities.union(match legacy.as_str() {
                    "deny" => Capabilities::DENY,
                    "read" => Capabilities::READ.union(Capabilities::LIST),
                    "write" => Capabilities(0b11_1111),
                    "sudo" => Capabilities(0b111_1111),
                    other => return Err(format!("path {pattern:?}: unknown policy {other:?}")),
                });
            }
            let pattern = pattern.trim_start_matches('/').to_string();
            if pattern.find('*').is_some_and(|at| at != pattern.len() - 1) {
                return Err(format!("path {pattern:?}: * is only allowed at the end"));
            }
            rules.push(Rule {
                pattern,
                capabilities,
            });
        }
        Ok(Policy {
            name: name.to_string(),
            text: text.to_string(),
            rules,
        })
    }
}

/// The merged rules of a token's policies.
#[derive(Debug, Clone)]
pub struct Acl {
    root: bool,
    rules: Vec<Rule>,
}

impl Acl {
    /// Merges policies; the `root` policy grants everything.
    pub fn new(policies: &[Arc<Policy>], root: bool) -> Acl {
        let mut merged: BTreeMap<&str, Capabilities> = BTreeMap::new();
        for rule in policies.iter().flat_map(|p| &p.rules) {
            let entry = merged.entry(&rule.pattern).or_default();
            *entry = entry.union(rule.capabilities);
        }
        let rules = merged
            .into_iter()
            .map(|(pattern, capabilities)| Rule {
                pattern: pattern.to_string(),
                capabilities,
            })
            .collect();
        Acl { root, rules }
    }

    /// The capabilities granted on `path`.
    pub fn capabilities(&self, path: &str) -> Capabilities {
        if self.root {
            return Capabilities(0b1111_1111);
        }
        let best = self
            .rules
            .iter()
            .filter(|r| r.matches(path))
            .max_by(|a, b| a.priority().cmp(&b.priority()));
        match best {
            Some(rule) if rule.capabilities.contains(Capabilities::DENY) => Capabilities::DENY,
            Some(rule) => rule.capabilities,
            None => Capabilities::default(),
        }
    }

    /// Whether `operation` on `path` is allowed; `exists` decides between `create` and
    /// `update` for writes, and `sudo` adds that requirement.
    pub fn allows(&self, path: &str, operation: Operation, exists: bool, sudo: bool) -> bool {
        let granted = self.capabilities(path);
        if granted.contains(Capabilities::DENY) || sudo && !granted.contains(Capabilities::SUDO) {
            return false;
        }
        let needed = match operation {
            Operation::Read => Capabilities::READ,
            Operation::List => Capabilities::LIST,
            Operation::Delete => Capabilities::DELETE,
            Operation::Patch => Capabilities::PATCH,
            Operation::Write if exists => Capabilities::UPDATE,
            Operation::Write => Capabilities::CREATE,
        };
        granted.contains(needed)
    }

    /// Whether any rule grants anything at or below `prefix` (for mount discovery).
    pub fn any_under(&self, prefix: &str) -> bool {
        self.root
            || self.rules.iter().any(|r| {
                !r.capabilities.contains(Capabilities::DENY)
                    && r.capabilities != Capabilities::default()
                    && (r.pattern.starts_with(prefix)
                        || r.matches(prefix)
                        || prefix.starts_with(r.pattern.trim_end_matches('*')))
            })
    }
}

/// The policy every token gets unless created with `no_default_policy`.
pub const DEFAULT_POLICY: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}
"#;

/// Stored policies, cached after parsing.
pub struct PolicyStore {
    barrier: Arc<Barrier>,
    cache: RwLock<HashMap<String, Arc<Policy>>>,
}

impl PolicyStore {
    /// A store over `barrier`.
    pub fn new(barrier: Arc<Barrier>) -> Self {
        PolicyStore {
            barrier,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Writes the `default` policy if it does not exist (at init).
    pub fn ensure_default(&self) -> Result<(), ApiError> {
        if self.get("default")?.is_none() {
            self.put("default", DEFAULT_POLICY)?;
        }
        Ok(())
    }

    /// Reads a policy by name.
    pub fn get(&self, name: &str) -> Result<Option<Arc<Policy>>, ApiError> {
        let name = normalize(name)?;
        if let Some(policy) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Ok(Some(Arc::clone(policy)));
        }
        let Some(record) = self.barrier.get(&record(&name)?)? else {
            return Ok(None);
        };
        let text = String::from_utf8(record.value.to_vec())
            .map_err(|_| ApiError::internal("policy is not UTF-8"))?;
        let policy = Arc::new(Policy::parse(&name, &text).map_err(ApiError::internal)?);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::clone(&policy));
        Ok(Some(policy))
    }

    /// Parses and stores a policy. `root` cannot be written.
    pub fn put(&self, name: &str, text: &str) -> Result<(), ApiError> {
        let name = normalize(name)?;
        if name == "root" {
            return Err(ApiError::bad_request("cannot update \"root\" policy"));
        }
        let policy = Policy::parse(&name, text).map_err(ApiError::bad_request)?;
        self.barrier
            .put(&record(&name)?, text.as_bytes(), Expect::Any)?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(policy));
        Ok(())
    }

    /// Deletes a policy. `root` and `default` cannot be deleted.
    pub fn delete(&self, name: &str) -> Result<(), ApiError> {
        let name = normalize(name)?;
        if name == "root" || name == "default" {
            return Err(ApiError::bad_request(format!(
                "cannot delete \"{name}\" policy"
            )));
        }
        self.barrier.delete(&record(&name)?, Expect::Any)?;
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        Ok(())
    }

    /// Every policy name, `root` included.
    pub fn list(&self) -> Result<Vec<String>, ApiError> {
        let mut names = vec!["root".to_string()];
        let mut after = None;
        loop {
            let page =
                self.barrier
                    .list(RecordKind::Policy, MountId::SYSTEM, "", after.as_ref(), 256)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            names.extend(page.into_iter().map(|id| id.path));
            after = Some(last);
        }
        names.sort();
        Ok(names)
    }

    /// The ACL of a token with these policy names. Unknown names grant nothing.
    pub fn acl(&self, names: &[String]) -> Result<Acl, ApiError> {
        let root = names.iter().any(|n| n == "root");
        let mut policies = Vec::new();
        for name in names.iter().filter(|n| *n != "root") {
            if let Some(policy) = self.get(name)? {
                policies.push(policy);
            }
        }
        Ok(Acl::new(&policies, root))
    }

    /// Forgets cached policies (at seal).
    pub fn clear_cache(&self) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Checks a policy name. Names are taken as they are, never folded: a rule on
/// `sys/policies/acl/admin` must not be dodged by writing `ADMIN` or `admin%20`.
fn normalize(name: &str) -> Result<String, ApiError> {
    let name = name.to_string();
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request("policy names are lower case"));
    }
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ApiError::bad_request(
            "policy names are 1 to 128 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(name)
}

fn record(name: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(RecordKind::Policy, MountId::SYSTEM, name, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> Acl {
        Acl::new(&[Arc::new(Policy::parse("p", text).unwrap())], false)
    }

    #[test]
    fn hcl_and_json_parse_alike() {
        let hcl = r#"path "secret/data/*" { capabilities = ["read", "list"] }"#;
        let json = r#"{"path": {"secret/data/*": {"capabilities": ["read", "list"]}}}"#;
        let (a, b) = (acl(hcl), acl(json));
        for acl in [a, b] {
            assert_eq!(acl.capabilities("secret/data/x").names(), ["read", "list"]);
            assert!(acl.allows("secret/data/x", Operation::Read, true, false));
            assert!(!acl.allows("secret/data/x", Operation::Write, true, false));
            assert!(!acl.allows("secret/metadata/x", Operation::Read, true, false));
        }
    }

    #[test]
    fn deny_by_default_and_deny_wins() {
        let acl = acl(r#"
            path "secret/*" { capabilities = ["read"] }
            path "secret/data/locked" { capabilities = ["deny"] }
        "#);
        assert!(acl.allows("secret/data/open", Operation::Read, true, false));
        assert!(!acl.allows("secret/data/locked", Operation::Read, true, false));
        assert!(!acl.allows("sys/mounts", Operation::Read, true, false));
    }

    #[test]
    fn plus_matches_one_segment() {
        let acl = acl(r#"path "secret/+/team/*" { capabilities = ["read"] }"#);
        assert!(acl.allows("secret/data/team/x", Operation::Read, true, false));
        assert!(!acl.allows("secret/data/extra/team/x", Operation::Read, true, false));
        assert!(!acl.allows("secret//team/x", Operation::Read, true, false));
        let exact = super::tests::acl(r#"path "a/+" { capabilities = ["read"] }"#);
        assert!(exact.allows("a/b", Operation::Read, true, false));
        assert!(!exact.allows("a/b/c", Operation::Read, true, false));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let acl = acl(r#"
            path "secret/*"            { capabilities = ["read"] }
            path "secret/data/app/*"   { capabilities = ["create", "update"] }
            path "secret/data/app/key" { capabilities = ["list"] }
            path "secret/+/app/other"  { capabilities = ["delete"] }
        "#);
        assert_eq!(acl.capabilities("secret/data/x").names(), ["read"]);
        assert_eq!(
            acl.capabilities("secret/data/app/y").names(),
            ["create", "update"]
        );
        assert_eq!(acl.capabilities("secret/data/app/key").names(), ["list"]);
        // "secret/+/app/other" has its first wildcard earlier than "secret/data/app/*" does.
        assert_eq!(
            acl.capabilities("secret/data/app/other").names(),
            ["create", "update"]
        );
    }

    #[test]
    fn create_and_update_depend_on_existence() {
        let acl = acl(r#"path "k/*" { capabilities = ["create"] }"#);
        assert!(acl.allows("k/new", Operation::Write, false, false));
        assert!(!acl.allows("k/old", Operation::Write, true, false));
    }

    #[test]
    fn sudo_is_required_where_asked() {
        let acl = acl(r#"path "sys/audit/*" { capabilities = ["update"] }"#);
        assert!(!acl.allows("sys/audit/file", Operation::Write, true, true));
        let with_sudo =
            super::tests::acl(r#"path "sys/audit/*" { capabilities = ["update", "sudo"] }"#);
        assert!(with_sudo.allows("sys/audit/file", Operation::Write, true, true));
    }

    #[test]
    fn merged_policies_union() {
        let a = Arc::new(Policy::parse("a", r#"path "x/*" { capabilities = ["read"] }"#).unwrap());
        let b = Arc::new(Policy::parse("b", r#"path "x/*" { capabilities = ["list"] }"#).unwrap());
        assert_eq!(
            Acl::new(&[a, b], false).capabilities("x/1").names(),
            ["read", "list"]
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        for text in [
            r#"path "x" { capabilities = ["fly"] }"#,
            r#"path "x" { capabilities = ["read"] allowed_parameters = { a = [] } }"#,
            r#"path "x*y" { capabilities = ["read"] }"#,
            "path {",
            r#"{"path": 5}"#,
        ] {
            assert!(Policy::parse("p", text).is_err(), "{text} accepted");
        }
        assert!(Policy::parse("default", DEFAULT_POLICY).is_ok());
    }
}
