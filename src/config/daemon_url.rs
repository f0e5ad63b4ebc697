//! `DAEMON_URL` entries: `[http[s]://][user:pass@]host[:port][/]`, as ElectrumX reads them.

/// One daemon RPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonUrl {
    /// `http://host:port/` without credentials, safe to log.
    pub url: String,
    /// `user:password`, unless credentials come from a cookie file.
    pub auth: Option<String>,
}

impl DaemonUrl {
    /// Parses `[http[s]://][user:pass@]host[:port][/]`. A missing port is the coin's RPC port.
    pub fn parse(text: &str, default_port: u16, cookie: bool) -> Result<DaemonUrl, String> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
                (s.to_ascii_lowercase(), r)
            }
            Some((s, _)) => return Err(format!("scheme {s:?} is not http or https")),
            None => ("http".to_string(), text),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) =
            match rest.rsplit_once('@') {
                Some((auth, hp)) => {
                    if !auth.contains(':') {
                        return Err("credentials must be user:password@".into());
                    }
                    (Some(auth.to_string()), hp)
                }
                None if cookie => (None, rest),
                None => return Err(
                    "no credentials: write http://user:password@host:port, or set DAEMON_COOKIE \
                     to the daemon's .cookie file"
                        .into(),
                ),
            };
        if hostport.is_empty() || hostport.contains('/') {
            return Err("expected host[:port] after the credentials".into());
        }
        let with_port = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
            match after.strip_prefix(':') {
                Some(p) => format!("[{host}]:{}", parse_port(p)?),
                None if after.is_empty() => format!("[{host}]:{default_port}"),
                None => return Err(format!("unexpected {after:?} after the IPv6 address")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((host, p)) => format!("{host}:{}", parse_port(p)?),
                None => format!("{hostport}:{default_port}"),
            }
        };
        url::Url::parse(&format!("{scheme}://{with_port}/")).map_err(|e| e.to_string())?;
        Ok(DaemonUrl {
            url: format!("{scheme}://{with_port}/"),
            auth,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))
}

/// Hides the password of a URL that is about to be printed.
pub(crate) fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((auth, rest)) => match auth.split_once(':') {
            Some((user, _)) => format!("{user}:***@{rest}"),
            None => format!("***@{rest}"),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_urls_parse_like_electrumx() {
        let p = |s| DaemonUrl::parse(s, 9332, false);
        assert_eq!(p("u:p@host").unwrap().url, "http://host:9332/");
        assert_eq!(p("https://u:p@host:1/").unwrap().url, "https://host:1/");
        assert_eq!(p("u:p@[::1]:5").unwrap().url, "http://[::1]:5/");
        assert_eq!(p("u:p@[::1]").unwrap().url, "http://[::1]:9332/");
        assert!(p("127.0.0.1:9332").unwrap_err().contains("DAEMON_COOKIE"));
        assert!(p("ftp://u:p@h").is_err());
        assert!(p("u:p@h:99999").is_err());
        assert!(p("u:p@h:x").is_err());
        assert_eq!(DaemonUrl::parse("127.0.0.1:5", 1, true).unwrap().auth, None);
    }
}
