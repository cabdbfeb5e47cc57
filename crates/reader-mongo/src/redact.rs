//! Keeping passwords out of descriptions, logs and errors.

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &["tlscertificatekeyfilepassword", "authmechanismproperties"];

/// The URL with the password (and secret query values) replaced by `***`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        return url.to_owned();
    }
    reader_core::urltext::redact_url(
        url,
        reader_core::urltext::RedactRules {
            bare_userinfo_is_secret: false,
            secret_params: SECRET_PARAMS,
        },
    )
}

/// Replaces the secrets of one URL wherever they appear in a text (a driver message, say).
/// Secrets shorter than 4 characters are not searched for (they would mangle every
/// message); [`redact_url`] still hides them in URLs.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// The secrets of `url`: the password, raw and percent-decoded, and secret query values.
    #[must_use]
    pub fn for_url(url: &str) -> Self {
        let mut secrets = Vec::new();
        if let Some((_, rest)) = url.split_once("://") {
            let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
            if let Some((userinfo, _)) = rest[..auth_end].rsplit_once('@') {
                if let Some((_, pw)) = userinfo.split_once(':') {
                    secrets.push(pw.to_owned());
                    if let Ok(decoded) = crate::config::percent_decode(pw) {
                        secrets.push(decoded);
                    }
                }
            }
            if let Some((_, query)) = rest.split_once('?') {
                for pair in query.split('&') {
                    if let Some((k, v)) = pair.split_once('=') {
                        if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) {
                            secrets.push(v.to_owned());
                            if let Ok(decoded) = crate::config::percent_decode(v) {
                                secrets.push(decoded);
                            }
                        }
                    }
                }
            }
        }
        secrets.retain(|s| s.chars().count() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Also hide `secret` (a password given apart from the URL), raw and percent-encoded.
    #[must_use]
    pub fn with_secret(mut self, secret: &str) -> Self {
        if secret.chars().count() >= 4 {
            self.secrets.push(secret.to_owned());
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            self.secrets.push(encoded);
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            self.secrets.dedup();
        }
        self
    }

    /// `text` with every secret replaced by `***`.
    #[must_use]
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("mongodb://bob:p%40ss@h1,h2:2/db?tlsCertificateKeyFilePassword=kp&w=1"),
            "mongodb://bob:***@h1,h2:2/db?tlsCertificateKeyFilePassword=***&w=1"
        );
        assert_eq!(redact_url("mongodb://bob@h/"), "mongodb://bob@h/");
        assert_eq!(redact_url("mongodb://h?x=1"), "mongodb://h?x=1");
        let r = Redactor::for_url("mongodb://bob:p%40ssword@h/");
        assert_eq!(
            r.apply("auth failed for p@ssword and p%40ssword"),
            "auth failed for *** and ***"
        );
    }
}
