//! Text helpers every backend's URL grammar needs, written once: `%XX` decoding and
//! password redaction.

/// Decode `%XX` escapes (a `+` stays a `+`: these are URL parts, not form data).
///
/// # Errors
/// A message saying what is malformed (a bad escape, or bytes that are not UTF-8).
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not form UTF-8".to_owned())
}

/// How [`redact_url`] treats what is not obviously a password.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactRules<'a> {
    /// A user-info part without `:` is a secret too (Redis reads `redis://secret@host` as a
    /// password); otherwise it is a user name and shown.
    pub bare_userinfo_is_secret: bool,
    /// Query parameters (lower-case names) whose values are secrets.
    pub secret_params: &'a [&'a str],
}

/// The URL with its password (and the values of secret query parameters) replaced by `***`.
/// Text that is not a URL comes back as `<not a URL>`, so nothing unparsed is echoed.
#[must_use]
pub fn redact_url(url: &str, rules: RedactRules<'_>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None if rules.bare_userinfo_is_secret => format!("***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) if !rules.secret_params.is_empty() => {
            let q: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if rules
                            .secret_params
                            .contains(&k.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        _ => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_bad_escapes() {
        assert_eq!(percent_decode("a%20b+c").ok().as_deref(), Some("a b+c"));
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%2").is_err());
        assert!(percent_decode("%ff").is_err(), "not UTF-8");
    }

    #[test]
    fn redacts_passwords_and_secret_parameters() {
        let plain = RedactRules::default();
        assert_eq!(
            redact_url("redis://bob:pw@h:1/0?x=1", plain),
            "redis://bob:***@h:1/0?x=1"
        );
        assert_eq!(redact_url("mongodb://bob@h", plain), "mongodb://bob@h");
        let redis = RedactRules {
            bare_userinfo_is_secret: true,
            ..plain
        };
        assert_eq!(redact_url("redis://pw@h", redis), "redis://***@h");
        let mongo = RedactRules {
            secret_params: &["tlscertificatekeyfilepassword"],
            ..plain
        };
        assert_eq!(
            redact_url("mongodb://h/?tlsCertificateKeyFilePassword=pw&a=b", mongo),
            "mongodb://h/?tlsCertificateKeyFilePassword=***&a=b"
        );
        assert_eq!(redact_url("no url here pw", plain), "<not a URL>");
    }
}
