//! One registry over HTTP(S): scheme choice, TLS roots, authentication and the redirect
//! policy. Blocking calls (ureq), one connection pool per registry, usable from many
//! threads at once.
//!
//! Redirects are followed by hand, never by the HTTP library:
//! - to the registry itself (same scheme, host and port): followed, with credentials;
//! - elsewhere: only for blob downloads (the distribution spec lets a registry send them
//!   to its storage, e.g. a CDN or object store), never with credentials, and over HTTPS
//!   unless the target is a loopback or configured-insecure host; any other request
//!   redirected to another host is an error.

use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ureq::http::{self, Method, Response, StatusCode, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Body};

use super::auth::{parse_challenge, query_escape, Challenge, TokenResponse};
use super::config::{is_loopback, RegistriesConfig};
use super::credentials::Credentials;
use super::RegistryError;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest token-server answer or error body read.
const MAX_SMALL_BODY: u64 = 1 << 20;
/// Connection and response deadlines; a body read idle this long fails (and a blob
/// download resumes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a redirect may lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Only to the registry itself.
    SameOrigin,
    /// Also to other hosts, without credentials (blob downloads).
    AnyHostWithoutCredentials,
}

/// A request body.
pub enum Payload<'a> {
    /// None.
    Empty,
    /// Bytes in memory (resent after an authentication challenge).
    Bytes(&'a [u8]),
    /// A stream of known length (sent once: authenticate with an earlier request).
    Stream(&'a mut (dyn Read + Send), u64),
}

/// A registry client.
pub struct Registry {
    /// The name in references (`docker.io`, `localhost:5000`).
    domain: String,
    /// Where requests go (`registry-1.docker.io` for docker.io).
    host: String,
    agent: Agent,
    allows_http: bool,
    credentials: Option<Credentials>,
    /// `https://host` or `http://host`, once a ping decided.
    base: OnceLock<String>,
    state: Mutex<AuthState>,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Tokens by scope string.
    tokens: Vec<(String, String)>,
}

impl Registry {
    /// A client for `domain`, with its TLS roots and credentials.
    pub fn new(
        domain: &str,
        config: &RegistriesConfig,
        credentials: Option<Credentials>,
    ) -> Result<Arc<Registry>, RegistryError> {
        let insecure = config.is_insecure(domain);
        let tls = if insecure {
            TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(crypto_provider())
                .disable_verification(true)
                .build()
        } else {
            let mut roots: Vec<Certificate<'static>> = system_roots().to_vec();
            for pem in config.extra_ca_pem(domain)? {
                let before = roots.len();
                for item in ureq::tls::parse_pem(&pem) {
                    if let Ok(PemItem::Certificate(c)) = item {
                        roots.push(c);
                    }
                }
                if roots.len() == before {
                    return Err(RegistryError::Config {
                        path: config.certs_dir.join(domain).display().to_string(),
                        reason: "a .crt file holds no PEM certificate".into(),
                    });
                }
            }
            TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(crypto_provider())
                .root_certs(RootCerts::Specific(Arc::new(roots)))
                .build()
        };
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls)
            .user_agent(concat!("hull/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_idle_connections_per_host(8)
            .build()
            .into();
        let host = if domain == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            domain.to_string()
        };
        Ok(Arc::new(Registry {
            domain: domain.to_string(),
            host,
            agent,
            allows_http: config.allows_http(domain),
            credentials,
            base: OnceLock::new(),
            state: Mutex::new(AuthState::default()),
        }))
    }

    /// The registry's name in references.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether credentials were found for this registry.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// `GET /v2/`: picks HTTPS or (loopback and insecure registries only) plain HTTP, and
    /// learns the authentication challenge.
    pub fn ping(&self) -> Result<(), RegistryError> {
        if self.base.get().is_some() {
            return Ok(());
        }
        let https = format!("https://{}", self.host);
        let response = match self.raw(Method::GET, &format!("{https}/v2/"), &[], Payload::Empty) {
            Ok(r) => {
                let _ = self.base.set(https);
                r
            }
            // Plain HTTP is tried only where allowed, and not after a certificate was
            // refused: that server speaks TLS, and its certificate is the problem.
            Err(RegistryError::Transport { url, reason })
                if self.allows_http && !reason.contains("invalid peer certificate") =>
            {
                let http = format!("http://{}", self.host);
                match self.raw(Method::GET, &format!("{http}/v2/"), &[], Payload::Empty) {
                    // 400 is a TLS server's answer to plain HTTP.
                    Ok(r) if r.status() != StatusCode::BAD_REQUEST => {
                        tracing::debug!(registry = %self.domain, "using plain HTTP");
                        let _ = self.base.set(http);
                        r
                    }
                    _ => return Err(RegistryError::Transport { url, reason }),
                }
            }
            Err(RegistryError::Transport { url, reason })
                if reason.contains("InvalidContentType") =>
            {
                return Err(RegistryError::Transport {
                    url,
                    reason: format!(
                        "{reason} (is it a plain HTTP registry? hull speaks plain HTTP only to \
                         loopback registries and those listed in \"insecure\" of registries.json)"
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = challenge_of(&response);
            self.lock().challenge = challenge;
        }
        Ok(())
    }

    /// Checks the credentials against the registry (`hull login`): a ping, then for a
    /// token registry a token request, for a basic one an authenticated `/v2/`.
    pub fn check_login(&self) -> Result<(), RegistryError> {
        self.ping()?;
        let challenge = self.lock().challenge.clone();
        match challenge {
            None => Ok(()),
            Some(Challenge::Bearer { .. }) => self.fetch_token("").map(drop),
            Some(Challenge::Basic) => {
                let response = self.send(
                    Method::GET,
                    "/v2/",
                    &[],
                    Payload::Empty,
                    "",
                    Redirects::SameOrigin,
                )?;
                expect_ok(response, "/v2/").map(drop)
            }
        }
    }

    /// Sends a request to the registry (`path` starts with `/v2/`), authenticating for
    /// `scope` (`repository:NAME:pull`) when challenged, following redirects by `policy`.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        mut payload: Payload<'_>,
        scope: &str,
        policy: Redirects,
    ) -> Result<Response<Body>, RegistryError> {
        self.ping()?;
        let base = self.base.get().expect("ping set the base");
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            // A Location the registry gave (uploads): it must be the registry itself,
            // since the request carries credentials.
            let (a, b): (Uri, Uri) = match (path.parse(), base.parse()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return Err(RegistryError::invalid("URL", path)),
            };
            if !same_origin(&a, &b) {
                return Err(RegistryError::Redirect {
                    from: base.clone(),
                    to: path.to_string(),
                    reason: "the registry named another host for this request".into(),
                });
            }
            path.to_string()
        } else {
            format!("{base}{path}")
        };
        let replayable = !matches!(payload, Payload::Stream(..));
        let mut challenged = false;
        loop {
            let mut all: Vec<(&str, String)> = headers.to_vec();
            if let Some(auth) = self.authorization(scope)? {
                all.push(("Authorization", auth));
            }
            let body = match &mut payload {
                Payload::Empty => Payload::Empty,
                Payload::Bytes(b) => Payload::Bytes(b),
                Payload::Stream(r, n) => Payload::Stream(&mut **r, *n),
            };
            let response = self.follow(method.clone(), &url, &all, body, policy)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenge = challenge_of(&response);
            if challenged || !replayable || challenge.is_none() {
                return Err(self.unauthorized(&response, scope));
            }
            challenged = true;
            let was_bearer = matches!(challenge, Some(Challenge::Bearer { .. }));
            self.lock().challenge = challenge;
            if was_bearer {
                let token = self.fetch_token(scope)?;
                let mut state = self.lock();
                state.tokens.retain(|(s, _)| s != scope);
                state.tokens.push((scope.to_string(), token));
            } else if self.credentials.is_none() {
                return Err(self.unauthorized(&response, scope));
            }
        }
    }

    fn unauthorized(&self, response: &Response<Body>, scope: &str) -> RegistryError {
        let reason = if self.credentials.is_some() {
            "the registry refused the credentials (wrong user name or password?)".to_string()
        } else {
            format!("authentication required: run `hull login {}`", self.domain)
        };
        let _ = response;
        RegistryError::Unauthorized {
            registry: self.domain.clone(),
            scope: scope.to_string(),
            reason,
        }
    }

    /// The Authorization header for `scope`: a token if one was fetched, basic
    /// credentials if the registry asked for them.
    fn authorization(&self, scope: &str) -> Result<Option<String>, RegistryError> {
        let state = self.lock();
        if let Some((_, token)) = state.tokens.iter().find(|(s, _)| s == scope) {
            return Ok(Some(format!("Bearer {token}")));
        }
        match (&state.challenge, &self.credentials) {
            (Some(Challenge::Basic), Some(c)) => Ok(Some(c.basic_header())),
            _ => Ok(None),
        }
    }

    /// Asks the token server of the last Bearer challenge for a token for `scope`.
    fn fetch_token(&self, scope: &str) -> Result<String, RegistryError> {
        let Some(Challenge::Bearer { realm, service, .. }) = self.lock().challenge.clone() else {
            return Err(RegistryError::invalid(
                "authentication challenge",
                "not a bearer challenge",
            ));
        };
        let uri: Uri = realm.parse().map_err(|_| {
            RegistryError::invalid("token realm", format!("{realm:?} is not a URL"))
        })?;
        let realm_host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        match uri.scheme_str() {
            Some("https") => {}
            Some("http")
                if is_loopback(&realm_host) || self.allows_http && realm_host == self.host => {}
            _ => {
                return Err(RegistryError::invalid(
                    "token realm",
                    format!("{realm} is not an https URL (plain HTTP only for loopback hosts)"),
                ))
            }
        }
        let mut url = realm.clone();
        let mut sep = if realm.contains('?') { '&' } else { '?' };
        if let Some(service) = &service {
            url.push_str(&format!("{sep}service={}", query_escape(service)));
            sep = '&';
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            url.push_str(&format!("{sep}scope={}", query_escape(s)));
            sep = '&';
        }
        if let (true, Some(c)) = (scope.is_empty(), &self.credentials) {
            url.push_str(&format!("{sep}account={}", query_escape(&c.username)));
        }
        let mut headers = Vec::new();
        if let Some(c) = &self.credentials {
            headers.push(("Authorization", c.basic_header()));
        }
        // No redirects: the token server is the one the registry named.
        let response = self.raw(Method::GET, &url, &headers, Payload::Empty)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.domain.clone(),
                scope: scope.to_string(),
                reason: if self.credentials.is_some() {
                    format!("the token server {realm_host} refused the credentials (wrong user name or password?)")
                } else {
                    format!(
                        "the token server {realm_host} wants credentials: run `hull login {}`",
                        self.domain
                    )
                },
            });
        }
        let bytes = read_small(response, "token response", &url)?;
        let token: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::invalid("token response", e.to_string()))?;
        token
            .into_token()
            .ok_or_else(|| RegistryError::invalid("token response", "no token in it"))
    }

    /// Follows redirects by `policy`, dropping credentials when leaving the registry.
    fn follow(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        mut payload: Payload<'_>,
        policy: Redirects,
    ) -> Result<Response<Body>, RegistryError> {
        let origin: Uri = url
            .parse()
            .map_err(|_| RegistryError::invalid("URL", url))?;
        let mut current = url.to_string();
        let mut method = method;
        for _ in 0..=MAX_REDIRECTS {
            let here: Uri = current
                .parse()
                .map_err(|_| RegistryError::invalid("URL", current.clone()))?;
            let same = same_origin(&here, &origin);
            let sent: Vec<(&str, String)> = headers
                .iter()
                .filter(|(k, _)| same || !k.eq_ignore_ascii_case("authorization"))
                .cloned()
                .collect();
            let body = match &mut payload {
                Payload::Empty => Payload::Empty,
                Payload::Bytes(b) => Payload::Bytes(b),
                Payload::Stream(r, n) => Payload::Stream(&mut **r, *n),
            };
            let response = self.raw(method.clone(), &current, &sent, body)?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let Some(location) = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(response);
            };
            let next = resolve(&here, location)?;
            let next_uri: Uri = next
                .parse()
                .map_err(|_| RegistryError::invalid("redirect", next.clone()))?;
            if !same_origin(&next_uri, &origin) {
                let host = next_uri.authority().map(|a| a.as_str()).unwrap_or("");
                if policy == Redirects::SameOrigin {
                    return Err(RegistryError::Redirect {
                        from: current,
                        to: next,
                        reason: "only blob downloads may be redirected to another host".into(),
                    });
                }
                let plain_ok = is_loopback(host);
                if next_uri.scheme_str() != Some("https") && !plain_ok {
                    return Err(RegistryError::Redirect {
                        from: current,
                        to: next,
                        reason: "a redirect to another host must use https".into(),
                    });
                }
            }
            if response.status() == StatusCode::SEE_OTHER {
                method = Method::GET;
            }
            tracing::debug!(from = %current, to = %next, "following redirect");
            current = next;
        }
        Err(RegistryError::Redirect {
            from: url.to_string(),
            to: current,
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// One HTTP exchange, nothing followed.
    fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        payload: Payload<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v.as_str());
        }
        let transport = |e: ureq::Error| RegistryError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let bad = |e: http::Error| RegistryError::invalid("request", e.to_string());
        match payload {
            Payload::Empty => self.agent.run(builder.body(()).map_err(bad)?),
            Payload::Bytes(b) => self.agent.run(
                builder
                    .header("Content-Length", b.len().to_string())
                    .body(b)
                    .map_err(bad)?,
            ),
            Payload::Stream(r, n) => self.agent.run(
                builder
                    .header("Content-Length", n.to_string())
                    .body(ureq::SendBody::from_reader(r))
                    .map_err(bad)?,
            ),
        }
        .map_err(transport)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The challenge of a 401 response.
fn challenge_of(response: &Response<Body>) -> Option<Challenge> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        .max_by_key(|c| matches!(c, Challenge::Bearer { .. }))
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    let port = |u: &Uri| {
        u.port_u16().unwrap_or(if u.scheme_str() == Some("http") {
            80
        } else {
            443
        })
    };
    a.scheme_str() == b.scheme_str()
        && a.host().map(str::to_ascii_lowercase) == b.host().map(str::to_ascii_lowercase)
        && port(a) == port(b)
}

/// A Location header resolved against the request URL.
fn resolve(base: &Uri, location: &str) -> Result<String, RegistryError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_string());
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    if let Some(rest) = location.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{location}"));
    }
    Err(RegistryError::invalid(
        "redirect",
        format!("relative Location {location:?} is not supported"),
    ))
}

/// Reads a small response body (bounded).
pub fn read_small(
    response: Response<Body>,
    what: &str,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    read_bounded(response, MAX_SMALL_BODY, what, url)
}

/// Reads a response body of at most `limit` bytes (checking Content-Length first).
pub fn read_bounded(
    response: Response<Body>,
    limit: u64,
    what: &str,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    let declared = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// Turns a non-2xx response into an error carrying the registry's own messages.
pub fn expect_ok(response: Response<Body>, what: &str) -> Result<Response<Body>, RegistryError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let bytes = read_small(response, "error response", what).unwrap_or_default();
    Err(RegistryError::Status {
        what: what.to_string(),
        status,
        message: error_message(&bytes),
    })
}

/// The `errors[].message` of a distribution error body, or a bit of the body.
pub fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars().filter(|c| !c.is_control()).collect()
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted roots (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the distribution's
/// bundle), loaded once.
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "could not load some system root certificates");
        }
        found
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_locations() {
        let a: Uri = "https://reg:5000/v2/x".parse().unwrap();
        let b: Uri = "https://REG:5000/other".parse().unwrap();
        let c: Uri = "http://reg:5000/v2/x".parse().unwrap();
        let d: Uri = "https://reg/v2/".parse().unwrap();
        let e: Uri = "https://reg:443/v2/".parse().unwrap();
        assert!(same_origin(&a, &b));
        assert!(!same_origin(&a, &c));
        assert!(!same_origin(&a, &d));
        assert!(same_origin(&d, &e));
        assert_eq!(resolve(&a, "/v2/y").unwrap(), "https://reg:5000/v2/y");
        assert_eq!(resolve(&a, "//cdn/b").unwrap(), "https://cdn/b");
        assert_eq!(resolve(&a, "http://s3/b?x").unwrap(), "http://s3/b?x");
        assert!(resolve(&a, "rel").is_err());
    }

    #[test]
    fn error_messages() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_message(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_message(b"oops\n"), "oops");
    }
}
