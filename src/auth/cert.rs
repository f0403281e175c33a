//! `auth/cert`: a service logs in with the TLS client certificate of its connection, as with
//! Vault's cert method.
//!
//! A role (`auth/cert/certs/:name`) holds a CA certificate (or a certificate to pin) in PEM,
//! optional allowed common names and DNS names (globs with `*`), and the policies and TTLs
//! of the token a login hands out. `auth/cert/login` takes no secret in its body: the
//! certificate comes from the handshake, where the client proved it holds the key. It logs
//! in when the certificate chains to a role's CA (webpki: signatures, validity period,
//! CA constraints), allows client authentication (no extended key usage, or one that names
//! it), and has a name the role allows. Removing a role stops its logins at once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::json;
use x509_parser::extensions::GeneralName;

use super::userpass::{duration_field, policies_field};
use super::{UNENFORCED_TOKEN_FIELDS, check_entry_name, entry_id, refuse_unenforced};
use crate::api::{ApiError, Fields, Operation, Request, Response};
use crate::barrier::{Barrier, Expect};
use crate::token::{MAX_TTL, NewToken, TokenStore};

/// The TTL of a login token when the role sets none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The longest a login token lives, renewals included, when the role sets none.
pub const DEFAULT_TOKEN_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The answer to every certificate that does not log in, whatever the reason (which goes to
/// the log): Vault's words.
pub const INVALID: &str = "invalid certificate or no client certificate supplied";

/// Role constraints of Vault's cert method that vaultd does not check. A role that sets one
/// is refused: ignoring it would let in certificates the role means to keep out.
const UNENFORCED_CONSTRAINTS: [&str; 8] = [
    "allowed_names",
    "allowed_email_sans",
    "allowed_uri_sans",
    "allowed_organizational_units",
    "required_extensions",
    "allowed_metadata_extensions",
    "ocsp_enabled",
    "ocsp_ca_certificates",
];

/// A stored role.
#[derive(Serialize, Deserialize)]
struct Role {
    /// PEM: one or more certificates, each a trust anchor.
    certificate: String,
    allowed_common_names: Vec<String>,
    allowed_dns_sans: Vec<String>,
    token_policies: Vec<String>,
    token_ttl: u64,
    token_max_ttl: u64,
    display_name: String,
}

/// The cert method: its roles.
pub struct CertEngine {
    barrier: Arc<Barrier>,
}

impl CertEngine {
    /// The method over `barrier`.
    pub fn new(barrier: Arc<Barrier>) -> Self {
        CertEngine { barrier }
    }

    /// The administrative routes under `auth/cert/`: `certs` and `certs/:name`.
    pub fn handle(&self, rest: &str, request: &Request) -> Result<Response, ApiError> {
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match (parts.as_slice(), request.operation) {
            (["certs"], Operation::List) => self.list(),
            (["certs", name], Operation::Read) => self.read(name),
            (["certs", name], Operation::Write) => self.write(name, request),
            (["certs", name], Operation::Delete) => {
                check_entry_name("role", name)?;
                self.barrier.delete(&entry_id("cert", name)?, Expect::Any)?;
                Ok(Response::empty())
            }
            (["certs", ..], _) => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::unsupported_path(&request.path)),
        }
    }

    /// `auth/cert/login`: a token for the connection's client certificate, through the role
    /// named in `name` or the first role (by name) that takes the certificate.
    pub fn login(
        &self,
        request: &Request,
        tokens: &TokenStore,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let address = request.remote.ip();
        let refuse = |why: &str| {
            // A failed login is a security event, not an error of the daemon.
            tracing::warn!(%address, reason = why, "failed cert login");
            ApiError::bad_request(INVALID)
        };
        let chain = request
            .client_certificates
            .as_ref()
            .filter(|chain| !chain.is_empty())
            .ok_or_else(|| refuse("no client certificate"))?;
        let mut fields = Fields::new(request);
        let only = fields.string("name")?.filter(|n| !n.is_empty());
        let names = match &only {
            Some(name) => {
                check_entry_name("role", name).map_err(|_| refuse("malformed role name"))?;
                vec![name.clone()]
            }
            None => self.role_names()?,
        };
        let leaf = &chain[0];
        let presented =
            Presented::parse(leaf).ok_or_else(|| refuse("certificate does not parse"))?;
        let at = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );

        let mut reasons = Vec::new();
        for name in names {
            let Some(role) = self.role(&name)? else {
                reasons.push(format!("{name}: no such role"));
                continue;
            };
            match role.admits(leaf, &chain[1..], &presented, at) {
                Ok(()) => return self.hand_out(&name, &role, &presented, tokens, now),
                Err(why) => reasons.push(format!("{name}: {why}")),
            }
        }
        if reasons.is_empty() {
            reasons.push("no role".into());
        }
        Err(refuse(&reasons.join("; ")))
    }

    fn hand_out(
        &self,
        name: &str,
        role: &Role,
        presented: &Presented,
        tokens: &TokenStore,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let display = if role.display_name.is_empty() {
            name
        } else {
            &role.display_name
        };
        let (token, entry) = tokens.create_login(
            NewToken {
                policies: role.token_policies.clone(),
                ttl: Some(Duration::from_secs(role.token_ttl)),
                explicit_max_ttl: Some(Duration::from_secs(role.token_max_ttl)),
                renewable: Some(true),
                display_name: Some(format!("cert-{display}")),
                meta: [
                    ("cert_name".to_string(), name.to_string()),
                    ("common_name".to_string(), presented.common_name.clone()),
                    ("serial_number".to_string(), presented.serial.clone()),
                ]
                .into(),
                path: "auth/cert/login".into(),
                ..NewToken::default()
            },
            now,
        )?;
        tracing::info!(role = %name, common_name = %presented.common_name, accessor = %entry.accessor, "cert login");
        Ok(Response {
            auth: Some(entry.auth_block(&token)),
            ..Response::default()
        })
    }

    fn role_names(&self) -> Result<Vec<String>, ApiError> {
        super::entry_names(&self.barrier, "cert")
    }

    fn role(&self, name: &str) -> Result<Option<Role>, ApiError> {
        match self.barrier.get(&entry_id("cert", name)?)? {
            Some(record) => serde_json::from_slice(&record.value)
                .map(Some)
                .map_err(|e| ApiError::internal(format!("cert role does not parse: {e}"))),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Response, ApiError> {
        let names = self.role_names()?;
        if names.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({ "keys": names })))
    }

    fn read(&self, name: &str) -> Result<Response, ApiError> {
        check_entry_name("role", name)?;
        let role = self.role(name)?.ok_or_else(ApiError::not_found)?;
        Ok(Response::data(json!({
            "certificate": role.certificate,
            "allowed_common_names": role.allowed_common_names,
            "allowed_dns_sans": role.allowed_dns_sans,
            "allowed_email_sans": [],
            "allowed_uri_sans": [],
            "allowed_organizational_units": [],
            "required_extensions": [],
            "display_name": role.display_name,
            "token_policies": role.token_policies,
            "policies": role.token_policies,
            "token_ttl": role.token_ttl,
            "ttl": role.token_ttl,
            "token_max_ttl": role.token_max_ttl,
            "max_ttl": role.token_max_ttl,
            "token_type": "default",
        })))
    }

    fn write(&self, name: &str, request: &Request) -> Result<Response, ApiError> {
        check_entry_name("role", name)?;
        let mut fields = Fields::new(request);
        let _ = fields.value("name");
        let certificate = fields
            .string("certificate")?
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("missing certificate"))?;
        let anchors = anchors_of(&certificate)?;
        let now = UnixTime::now();
        if anchors.iter().all(|der| {
            !valid_at(der, now)
                && x509_parser::parse_x509_certificate(der.as_ref())
                    .is_ok_and(|(_, c)| c.validity().not_after.timestamp() < now.as_secs() as i64)
        }) {
            return Err(ApiError::bad_request(
                "invalid certificate: every certificate of the role has expired",
            ));
        }
        let allowed_common_names = fields.strings("allowed_common_names")?.unwrap_or_default();
        let allowed_dns_sans = fields.strings("allowed_dns_sans")?.unwrap_or_default();
        let token_policies = policies_field(&mut fields)?.unwrap_or_default();
        let token_ttl = duration_field(&mut fields, "token_ttl", "ttl")?
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_TOKEN_TTL.as_secs());
        let token_max_ttl = duration_field(&mut fields, "token_max_ttl", "max_ttl")?
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_TOKEN_MAX_TTL.as_secs().max(token_ttl));
        let display_name = fields.string("display_name")?.unwrap_or_default();
        refuse_unenforced(&mut fields, &UNENFORCED_CONSTRAINTS)?;
        refuse_unenforced(&mut fields, &UNENFORCED_TOKEN_FIELDS)?;
        if token_max_ttl > MAX_TTL.as_secs() || token_ttl > token_max_ttl {
            return Err(ApiError::bad_request(
                "token_ttl must be at most token_max_ttl, and token_max_ttl at most 768h",
            ));
        }
        let warnings = fields.unknown();
        let role = Role {
            certificate,
            allowed_common_names: allowed_common_names
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
            allowed_dns_sans: allowed_dns_sans
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect(),
            token_policies,
            token_ttl,
            token_max_ttl,
            display_name,
        };
        let body = serde_json::to_vec(&role).map_err(|e| ApiError::internal(e.to_string()))?;
        self.barrier
            .put(&entry_id("cert", name)?, &body, Expect::Any)?;
        Ok(Response::empty().with_warnings(warnings))
    }
}

impl Role {
    /// Whether the role takes `leaf` (with the client's `intermediates`) at `at`; the error
    /// says why not, for the log.
    fn admits(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'static>],
        presented: &Presented,
        at: UnixTime,
    ) -> Result<(), String> {
        let anchors_der = anchors_of(&self.certificate).map_err(|e| e.to_string())?;
        // webpki keeps only an anchor's name and key, not its validity: a role's CA that
        // has expired, or is not valid yet, vouches for no one, as with Go's checks.
        let anchors = anchors_der
            .iter()
            .filter(|der| valid_at(der, at))
            .map(|der| webpki::anchor_from_trusted_cert(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("role certificate: {e}"))?;
        if anchors.is_empty() {
            return Err("the role's certificates are all outside their validity period".into());
        }
        let end_entity =
            webpki::EndEntityCert::try_from(leaf).map_err(|e| format!("certificate: {e}"))?;
        let algorithms = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all;
        end_entity
            .verify_for_usage(
                algorithms,
                &anchors,
                intermediates,
                at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| format!("chain: {e}"))?;
        if !self.allowed_common_names.is_empty()
            && !self
                .allowed_common_names
                .iter()
                .any(|pattern| glob(pattern, &presented.common_name))
        {
            return Err(format!(
                "common name {:?} is not allowed",
                presented.common_name
            ));
        }
        if !self.allowed_dns_sans.is_empty()
            && !presented
                .dns_names
                .iter()
                .any(|dns| self.allowed_dns_sans.iter().any(|p| glob(p, dns)))
        {
            return Err("no DNS name of the certificate is allowed".into());
        }
        Ok(())
    }
}

/// What the role checks and the token records of the presented certificate.
struct Presented {
    common_name: String,
    dns_names: Vec<String>,
    /// Colon-separated hex, as Vault shows a serial.
    serial: String,
}

impl Presented {
    fn parse(der: &CertificateDer<'_>) -> Option<Presented> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        // As Go does, the last common name counts.
        let common_name = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .last()
            .unwrap_or_default()
            .to_string();
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(_) => return None,
        };
        let serial = cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        Some(Presented {
            common_name,
            dns_names,
            serial,
        })
    }
}

/// Whether the certificate `der` is within its validity period at `at`.
fn valid_at(der: &CertificateDer<'_>, at: UnixTime) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let now = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp()
}

/// The certificates of a role's PEM, each usable as a trust anchor.
fn anchors_of(pem: &str) -> Result<Vec<CertificateDer<'static>>, ApiError> {
    let invalid = |why: String| ApiError::bad_request(format!("invalid certificate: {why}"));
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("no CERTIFICATE block in the PEM".into()));
    }
    for der in &certificates {
        webpki::anchor_from_trusted_cert(der).map_err(|e| invalid(e.to_string()))?;
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(certificates)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters; case is
/// ignored, as in DNS.
fn glob(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    if parts.len() == 1 {
        return pattern == name;
    }
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_vaults_do() {
        for (pattern, name, expected) in [
            ("svc.example.com", "svc.example.com", true),
            ("svc.example.com", "SVC.example.com", true),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "example.com", false),
            ("svc-*", "svc-billing", true),
            ("svc-*-prod", "svc-billing-prod", true),
            ("svc-*-prod", "svc-billing-dev", false),
            ("*", "anything", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    proptest::proptest! {
        /// Role certificates, presented certificates and name patterns from a client are
        /// taken or refused; none makes the daemon panic.
        #[test]
        fn client_input_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            pattern in "[a-z*.]{0,12}",
            name in "[a-z.]{0,12}",
        ) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = anchors_of(&text);
            let _ = anchors_of(&format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes)));
            let der = CertificateDer::from(bytes.clone());
            let _ = Presented::parse(&der);
            let _ = valid_at(&der, UnixTime::now());
            let _ = glob(&pattern, &name);
        }
    }

    #[test]
    fn role_certificates_must_be_pem_certificates() {
        assert!(anchors_of("").is_err());
        assert!(
            anchors_of("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        assert_eq!(anchors_of(&ca.cert.pem()).unwrap().len(), 1);
    }
}
