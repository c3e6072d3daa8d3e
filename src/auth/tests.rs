use super::errors::*;
use super::*;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use std::sync::OnceLock;

const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn req(headers: &[(&str, &str)], query: Option<&str>) -> Request {
    Request {
        method: "GET".into(),
        path: "/ws".into(),
        query: query.map(str::to_owned),
        version: 1,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect(),
        head_len: 0,
    }
}

fn bearer_req(token: &str) -> Request {
    req(&[("Authorization", &format!("Bearer {token}"))], None)
}

fn hs_cfg() -> AuthConfig {
    AuthConfig { jwt_hs256_secret: SECRET.into(), required: true, ..AuthConfig::default() }
}

fn auth(cfg: &AuthConfig) -> Authenticator {
    Authenticator::new(cfg).unwrap()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: serde_json::Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), &claims)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// Test-only key pairs, generated once per test run.
struct Keys {
    rsa_private: String,
    rsa_public: String,
    ec_private: String,
    ec_public: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Keys {
            rsa_private: rsa.serialize_pem(),
            rsa_public: rsa.public_key_pem(),
            ec_private: ec.serialize_pem(),
            ec_public: ec.public_key_pem(),
        }
    })
}

/// Writes `contents` to a fresh file in the temp dir (never one another
/// test may be reading).
fn temp_file(name: &str, contents: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("wsedge-auth-test-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The test public keys as files, written once per run.
fn key_file(ec: bool) -> String {
    static RSA: OnceLock<String> = OnceLock::new();
    static EC: OnceLock<String> = OnceLock::new();
    if ec {
        EC.get_or_init(|| temp_file("ec.pem", &keys().ec_public)).clone()
    } else {
        RSA.get_or_init(|| temp_file("rsa.pem", &keys().rsa_public)).clone()
    }
}

fn rs_cfg() -> AuthConfig {
    AuthConfig {
        jwt_public_key_file: key_file(false),
        jwt_public_key_alg: "RS256".into(),
        required: true,
        ..AuthConfig::default()
    }
}

fn es_cfg() -> AuthConfig {
    AuthConfig {
        jwt_public_key_file: key_file(true),
        jwt_public_key_alg: "ES256".into(),
        required: true,
        ..AuthConfig::default()
    }
}

fn rs(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_rsa_pem(keys().rsa_private.as_bytes()).unwrap();
    sign(Algorithm::RS256, &key, &claims)
}

fn es(claims: serde_json::Value) -> String {
    let key = EncodingKey::from_ec_pem(keys().ec_private.as_bytes()).unwrap();
    sign(Algorithm::ES256, &key, &claims)
}

fn err(a: &Authenticator, r: &Request) -> AuthError {
    a.authenticate(r, "/ws", NOW).unwrap_err()
}

fn kind(a: &Authenticator, token: &str) -> AuthErrorKind {
    err(a, &bearer_req(token)).kind
}

// ---- JWT ----------------------------------------------------------

#[test]
fn hs256_valid() {
    let a = auth(&hs_cfg());
    let id = a
        .authenticate(&bearer_req(&hs(json!({"sub": "alice", "exp": NOW + 60}))), "/ws", NOW)
        .unwrap();
    assert_eq!(id.kind, IdentityKind::Jwt);
    assert_eq!(id.subject.as_deref(), Some("alice"));
    // No channels claim: anything.
    assert!(id.can_subscribe("chat:lobby") && id.can_publish("anything"));
    // Auth required: only API keys may use the publish API.
    assert!(!id.can_use_publish_api());
}

#[test]
fn expired_with_leeway() {
    let a = auth(&hs_cfg()); // leeway 30
    let t = |exp: u64| hs(json!({"sub": "a", "exp": exp}));
    assert!(a.authenticate(&bearer_req(&t(NOW - 29)), "/ws", NOW).is_ok());
    let e = err(&a, &bearer_req(&t(NOW - 30)));
    assert_eq!(e, AuthError { kind: AuthErrorKind::Expired, reason: "token expired" });
    assert_eq!(kind(&a, &t(NOW - 3600)), AuthErrorKind::Expired);
    let strict = auth(&AuthConfig { leeway_s: 0, ..hs_cfg() });
    assert_eq!(kind(&strict, &t(NOW)), AuthErrorKind::Expired);
    assert!(strict.authenticate(&bearer_req(&t(NOW + 1)), "/ws", NOW).is_ok());
    // Fractional NumericDate.
    let frac = hs(json!({"exp": NOW as f64 + 0.5}));
    assert!(strict.authenticate(&bearer_req(&frac), "/ws", NOW).is_ok());
}

#[test]
fn not_yet_valid_nbf() {
    let a = auth(&hs_cfg());
    let t = |nbf: u64| hs(json!({"sub": "a", "exp": NOW + 3600, "nbf": nbf}));
    let e = err(&a, &bearer_req(&t(NOW + 31)));
    assert_eq!(e, AuthError { kind: AuthErrorKind::NotYetValid, reason: "token not yet valid" });
    assert!(a.authenticate(&bearer_req(&t(NOW + 30)), "/ws", NOW).is_ok());
    assert!(a.authenticate(&bearer_req(&t(NOW - 10)), "/ws", NOW).is_ok());
}

#[test]
fn claims_of_the_wrong_type_are_refused_not_skipped() {
    // CVE-2026-25537 shape: a string nbf/exp must not skip the check.
    let a = auth(&hs_cfg());
    for claims in [
        json!({"sub": "a", "exp": NOW + 60, "nbf": "99999999999"}),
        json!({"sub": "a", "exp": "never"}),
        json!({"sub": 42, "exp": NOW + 60}),
        json!({"exp": NOW + 60, "iss": ["x"]}),
        json!({"exp": NOW + 60, "channels": "chat:*"}),
        json!({"exp": NOW + 60, "channels": {"subscribe": "chat:*"}}),
    ] {
        let e = err(&a, &bearer_req(&hs(claims.clone())));
        assert_eq!(e.kind, AuthErrorKind::Invalid, "{claims}");
        assert_eq!(e.reason, "malformed token claims");
    }
    let e = err(&a, &bearer_req(&hs(json!({"sub": "a"}))));
    assert_eq!(e, AuthError { kind: AuthErrorKind::Invalid, reason: "token has no exp claim" });
    // Claims that are not an object.
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let t = sign(Algorithm::HS256, &key, &json!([1, 2]));
    assert_eq!(kind(&a, &t), AuthErrorKind::Invalid);
}

#[test]
fn bad_signature() {
    let a = auth(&hs_cfg());
    let other = EncodingKey::from_secret(b"another-secret-of-enough-length-0123456789");
    let t = sign(Algorithm::HS256, &other, &json!({"sub": "a", "exp": NOW + 60}));
    let e = err(&a, &bearer_req(&t));
    assert_eq!(e, AuthError { kind: AuthErrorKind::BadSignature, reason: "bad token signature" });

    // A valid token whose payload is swapped for another one.
    let good = hs(json!({"sub": "alice", "exp": NOW + 60}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&json!({"sub": "admin", "exp": NOW + 60}).to_string()),
        parts[2]
    );
    assert_eq!(kind(&a, &forged), AuthErrorKind::BadSignature);
    // Signature stripped.
    assert_eq!(kind(&a, &format!("{}.{}.", parts[0], parts[1])), AuthErrorKind::BadSignature);
}

#[test]
fn alg_none_is_refused() {
    let a = auth(&hs_cfg());
    let payload = b64(&json!({"sub": "admin", "exp": NOW + 60}).to_string());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
        r#"{"alg":"nOnE"}"#,
        r#"{"typ":"JWT"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":"hs256"}"#,
    ] {
        for sig in ["", "c2ln"] {
            let t = format!("{}.{payload}.{sig}", b64(header));
            let e = err(&a, &bearer_req(&t));
            assert_eq!(
                e,
                AuthError {
                    kind: AuthErrorKind::BadAlgorithm,
                    reason: "token algorithm not allowed"
                },
                "{header}"
            );
        }
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    let claims = json!({"sub": "admin", "exp": NOW + 60});
    // HS256 signed with the RSA public key's PEM as the HMAC secret.
    let confused =
        sign(Algorithm::HS256, &EncodingKey::from_secret(keys().rsa_public.as_bytes()), &claims);
    let rs_only = auth(&rs_cfg());
    assert_eq!(kind(&rs_only, &confused), AuthErrorKind::BadAlgorithm);
    // With HS256 also on, its own secret is used, never the PEM.
    let both = auth(&AuthConfig { jwt_hs256_secret: SECRET.into(), ..rs_cfg() });
    assert_eq!(kind(&both, &confused), AuthErrorKind::BadSignature);
    assert!(both.authenticate(&bearer_req(&rs(claims.clone())), "/ws", NOW).is_ok());
    assert!(both.authenticate(&bearer_req(&hs(claims.clone())), "/ws", NOW).is_ok());
    // Algorithms that are not configured.
    assert_eq!(kind(&auth(&hs_cfg()), &rs(claims.clone())), AuthErrorKind::BadAlgorithm);
    assert_eq!(kind(&rs_only, &es(claims.clone())), AuthErrorKind::BadAlgorithm);
    assert_eq!(kind(&auth(&es_cfg()), &rs(claims.clone())), AuthErrorKind::BadAlgorithm);
    // An RS256 header over an ES256 signature.
    let e = es(claims.clone());
    let parts: Vec<&str> = e.split('.').collect();
    let relabeled = format!("{}.{}.{}", b64(r#"{"alg":"RS256"}"#), parts[1], parts[2]);
    assert_eq!(kind(&rs_only, &relabeled), AuthErrorKind::BadSignature);
    // Other algorithms the crate knows are never accepted.
    let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET.as_bytes()), &claims);
    assert_eq!(kind(&auth(&hs_cfg()), &hs512), AuthErrorKind::BadAlgorithm);
}

#[test]
fn crit_header_is_refused() {
    let a = auth(&hs_cfg());
    let mut h = Header::new(Algorithm::HS256);
    h.crit = Some(vec!["exp".into()]);
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let t = jsonwebtoken::encode(&h, &json!({"exp": NOW + 60}), &key).unwrap();
    let e = err(&a, &bearer_req(&t));
    assert_eq!(
        e,
        AuthError { kind: AuthErrorKind::Invalid, reason: "unsupported critical header" }
    );
}

#[test]
fn malformed_tokens() {
    let a = auth(&hs_cfg());
    for t in
        ["a.b.c", "..", "!!!.e30.x", "e30.e30.e30", &format!("{}.%%%.x", b64(r#"{"alg":"HS256"}"#))]
    {
        let k = kind(&a, t);
        assert!(
            matches!(
                k,
                AuthErrorKind::Invalid | AuthErrorKind::BadAlgorithm | AuthErrorKind::BadSignature
            ),
            "{t}: {k:?}"
        );
    }
    assert_eq!(kind(&a, "a.b.c"), AuthErrorKind::Invalid);
    assert_eq!(kind(&a, "e30.e30.e30"), AuthErrorKind::BadAlgorithm);
}

#[test]
fn wrong_issuer() {
    let a = auth(&AuthConfig { jwt_issuer: "https://id.example".into(), ..hs_cfg() });
    let ok = hs(json!({"exp": NOW + 60, "iss": "https://id.example"}));
    assert!(a.authenticate(&bearer_req(&ok), "/ws", NOW).is_ok());
    let e = err(&a, &bearer_req(&hs(json!({"exp": NOW + 60, "iss": "https://evil"}))));
    assert_eq!(e, AuthError { kind: AuthErrorKind::WrongIssuer, reason: "wrong token issuer" });
    assert_eq!(kind(&a, &hs(json!({"exp": NOW + 60}))), AuthErrorKind::WrongIssuer);
    // Not configured: not checked.
    let b = auth(&hs_cfg());
    assert!(b
        .authenticate(&bearer_req(&hs(json!({"exp": NOW + 60, "iss": "x"}))), "/", NOW)
        .is_ok());
}

#[test]
fn wrong_audience() {
    let a = auth(&AuthConfig { jwt_audience: "wsedge".into(), ..hs_cfg() });
    for aud in [json!("wsedge"), json!(["other", "wsedge"])] {
        let t = hs(json!({"exp": NOW + 60, "aud": aud}));
        assert!(a.authenticate(&bearer_req(&t), "/ws", NOW).is_ok(), "{aud}");
    }
    for claims in [
        json!({"exp": NOW + 60, "aud": "other"}),
        json!({"exp": NOW + 60, "aud": ["other"]}),
        json!({"exp": NOW + 60, "aud": []}),
        json!({"exp": NOW + 60}),
    ] {
        let e = err(&a, &bearer_req(&hs(claims.clone())));
        assert_eq!(
            e,
            AuthError { kind: AuthErrorKind::WrongAudience, reason: "wrong token audience" },
            "{claims}"
        );
    }
    // Not configured: an aud claim is fine.
    let b = auth(&hs_cfg());
    assert!(b
        .authenticate(&bearer_req(&hs(json!({"exp": NOW + 60, "aud": "x"}))), "/", NOW)
        .is_ok());
}

#[test]
fn rs256_valid() {
    let a = auth(&rs_cfg());
    let id = a
        .authenticate(&bearer_req(&rs(json!({"sub": "bob", "exp": NOW + 60}))), "/ws", NOW)
        .unwrap();
    assert_eq!((id.kind, id.subject.as_deref()), (IdentityKind::Jwt, Some("bob")));
    // Expiry applies to RS256 as well.
    assert_eq!(kind(&a, &rs(json!({"exp": NOW - 100}))), AuthErrorKind::Expired);
}

#[test]
fn es256_valid() {
    let a = auth(&es_cfg());
    let id = a
        .authenticate(&bearer_req(&es(json!({"sub": "carol", "exp": NOW + 60}))), "/ws", NOW)
        .unwrap();
    assert_eq!((id.kind, id.subject.as_deref()), (IdentityKind::Jwt, Some("carol")));
    // A token signed by another EC key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
    let t = sign(Algorithm::ES256, &key, &json!({"exp": NOW + 60}));
    assert_eq!(kind(&a, &t), AuthErrorKind::BadSignature);
}

// ---- credentials and anonymous users ---------------------------------

#[test]
fn missing_token_on_protected_route() {
    let a = auth(&hs_cfg());
    let e = a.authenticate(&req(&[], None), "/ws", NOW).unwrap_err();
    assert_eq!(e, AuthError { kind: AuthErrorKind::Missing, reason: "credentials required" });
    assert_eq!(e.www_authenticate(), r#"Bearer realm="wsedge""#);
    assert_eq!(e.metric_label(), "missing");
    // Empty credentials count as absent.
    for r in [
        req(&[("Authorization", "Bearer ")], Some("token=")),
        req(&[("Cookie", "wsedge_token=")], None),
        req(&[("Authorization", "Basic dXNlcjpwYXNz")], None),
    ] {
        assert_eq!(a.authenticate(&r, "/ws", NOW).unwrap_err().kind, AuthErrorKind::Missing);
    }
}

#[test]
fn anonymous_route_ok() {
    let cfg = AuthConfig {
        anonymous_routes: vec!["/echo".into(), "/public".into()],
        anonymous_subscribe: vec!["news:*".into(), "user:{sub}".into()],
        anonymous_publish: vec!["lobby".into()],
        ..hs_cfg()
    };
    let a = auth(&cfg);
    let id = a.authenticate(&req(&[], None), "/public", NOW).unwrap();
    assert_eq!((id.kind, id.subject.as_deref()), (IdentityKind::Anonymous, None));
    assert!(id.can_subscribe("news:today"));
    assert!(!id.can_subscribe("chat:x"));
    assert!(!id.can_subscribe("user:"), "{{sub}} without a subject matches nothing");
    assert!(id.can_publish("lobby") && !id.can_publish("news:today"));
    assert!(!id.can_use_publish_api());
    assert!(a.authenticate(&req(&[], None), "/echo", NOW).is_ok());
    // Exact path only.
    assert_eq!(err(&a, &req(&[], None)).kind, AuthErrorKind::Missing);
    let e = a.authenticate(&req(&[], None), "/echo/", NOW).unwrap_err();
    assert_eq!(e.kind, AuthErrorKind::Missing);
    // A bad credential on an anonymous route is still refused.
    let e = a.authenticate(&bearer_req("nope"), "/echo", NOW).unwrap_err();
    assert_eq!(e.kind, AuthErrorKind::UnknownKey);
}

#[test]
fn not_required_admits_anonymous_users_to_everything() {
    let a = auth(&AuthConfig { required: false, ..hs_cfg() });
    let id = a.authenticate(&req(&[], None), "/anything", NOW).unwrap();
    assert_eq!(id.kind, IdentityKind::Anonymous);
    assert!(id.can_subscribe("x") && id.can_publish("y") && id.can_use_publish_api());
    // A credential that is present is still checked.
    assert_eq!(kind(&a, &hs(json!({"exp": NOW - 100}))), AuthErrorKind::Expired);
    // A JWT's channels still apply; the publish API is open.
    let t = hs(json!({"exp": NOW + 60, "channels": {"subscribe": ["a"]}}));
    let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
    assert!(id.can_subscribe("a") && !id.can_subscribe("b") && !id.can_publish("a"));
    assert!(id.can_use_publish_api());
}

#[test]
fn default_config_ignores_credentials() {
    // Nothing configured: behaviour is unchanged, a stray header or
    // cookie is not looked at.
    let a = auth(&AuthConfig::default());
    assert!(!a.has_credentials());
    for r in [
        bearer_req("whatever"),
        bearer_req("a.b.c"),
        req(&[("Cookie", "wsedge_token=x")], Some("token=y")),
    ] {
        let id = a.authenticate(&r, "/ws", NOW).unwrap();
        assert!(id.kind == IdentityKind::Anonymous && id.can_publish("any"));
    }
    // Required with nothing configured: anonymous routes only.
    let b = auth(&AuthConfig { required: true, ..AuthConfig::default() });
    assert!(b.authenticate(&req(&[], None), "/echo", NOW).is_ok());
    assert_eq!(
        b.authenticate(&bearer_req("x"), "/ws", NOW).unwrap_err().kind,
        AuthErrorKind::Missing
    );
}

fn key_cfg() -> AuthConfig {
    AuthConfig {
        api_keys: vec![
            ApiKeyConfig {
                name: "backend".into(),
                key: "k-backend-0123456789".into(),
                subscribe: vec![],
                publish: vec!["*".into()],
                publish_api: true,
                admin: false,
            },
            ApiKeyConfig {
                name: "thermo".into(),
                key: "k+thermo/0123456789==".into(),
                subscribe: vec!["cmd:{sub}".into()],
                publish: vec!["sensors:*".into()],
                publish_api: false,
                admin: false,
            },
        ],
        required: true,
        ..AuthConfig::default()
    }
}

fn subject(a: &Authenticator, r: &Request) -> String {
    a.authenticate(r, "/ws", NOW).unwrap().subject.unwrap().into()
}

#[test]
fn api_key_from_header_query_and_cookie() {
    let a = auth(&key_cfg());
    assert_eq!(subject(&a, &bearer_req("k-backend-0123456789")), "apikey:backend");
    assert_eq!(
        subject(&a, &req(&[("authorization", "bearer   k-backend-0123456789  ")], None)),
        "apikey:backend"
    );
    assert_eq!(subject(&a, &req(&[], Some("token=k-backend-0123456789"))), "apikey:backend");
    assert_eq!(
        subject(&a, &req(&[], Some("a=1&token=k%2Bthermo%2F0123456789%3D%3D&b"))),
        "apikey:thermo"
    );
    // '+' is not a space.
    assert_eq!(subject(&a, &req(&[], Some("token=k+thermo/0123456789=="))), "apikey:thermo");
    assert_eq!(
        subject(&a, &req(&[("Cookie", "a=b; wsedge_token=k-backend-0123456789; c=d")], None)),
        "apikey:backend"
    );
    assert_eq!(
        subject(
            &a,
            &req(&[("Cookie", "x=1"), ("Cookie", "wsedge_token=\"k-backend-0123456789\"")], None)
        ),
        "apikey:backend"
    );
    // Names are matched exactly.
    let r = req(
        &[("Cookie", "xwsedge_token=k-backend-0123456789")],
        Some("tokens=k-backend-0123456789"),
    );
    assert_eq!(a.authenticate(&r, "/ws", NOW).unwrap_err().kind, AuthErrorKind::Missing);
    let id = a.authenticate(&bearer_req("k-backend-0123456789"), "/ws", NOW).unwrap();
    assert_eq!(id.kind, IdentityKind::ApiKey);
    assert!(id.can_use_publish_api());
    assert!(id.can_publish("anything") && !id.can_subscribe("anything"));
    // Configurable names.
    let b = auth(&AuthConfig {
        query_param: "access_token".into(),
        cookie: "sess".into(),
        ..key_cfg()
    });
    assert_eq!(subject(&b, &req(&[], Some("access_token=k-backend-0123456789"))), "apikey:backend");
    assert_eq!(
        subject(&b, &req(&[("Cookie", "sess=k-backend-0123456789")], None)),
        "apikey:backend"
    );
    // "" disables a source.
    let c = auth(&AuthConfig { query_param: "".into(), cookie: "".into(), ..key_cfg() });
    let r =
        req(&[("Cookie", "wsedge_token=k-backend-0123456789")], Some("token=k-backend-0123456789"));
    assert_eq!(c.authenticate(&r, "/ws", NOW).unwrap_err().kind, AuthErrorKind::Missing);
}

#[test]
fn precedence_header_then_query_then_cookie() {
    let a = auth(&key_cfg());
    let backend = "k-backend-0123456789";
    let thermo = "k+thermo/0123456789==";
    let all = req(
        &[
            ("Authorization", &format!("Bearer {backend}")),
            ("Cookie", &format!("wsedge_token={thermo}")),
        ],
        Some(&format!("token={thermo}")),
    );
    assert_eq!(subject(&a, &all), "apikey:backend");
    let query_cookie = req(
        &[("Cookie", &format!("wsedge_token={backend}"))],
        Some("token=k%2Bthermo/0123456789=="),
    );
    assert_eq!(subject(&a, &query_cookie), "apikey:thermo");
    // The first present is used even when it fails: no fallback.
    let bad_header = req(&[("Authorization", "Bearer wrong")], Some(&format!("token={backend}")));
    assert_eq!(
        a.authenticate(&bad_header, "/ws", NOW).unwrap_err().kind,
        AuthErrorKind::UnknownKey
    );
    // A non-Bearer Authorization header is skipped.
    let basic = req(&[("Authorization", "Basic Zm9vOmJhcg==")], Some(&format!("token={backend}")));
    assert_eq!(subject(&a, &basic), "apikey:backend");
}

#[test]
fn unknown_api_key() {
    let a = auth(&key_cfg());
    for k in ["k-backend-012345678", "k-backend-01234567890", "K-BACKEND-0123456789", "x"] {
        let e = err(&a, &bearer_req(k));
        assert_eq!(e, AuthError { kind: AuthErrorKind::UnknownKey, reason: "unknown API key" });
        assert_eq!(
            e.www_authenticate(),
            r#"Bearer realm="wsedge", error="invalid_token", error_description="unknown API key""#
        );
        assert!(!format!("{e:?} {e}").contains(k));
    }
    // A credential with two dots is a JWT, never an API key.
    assert_eq!(kind(&a, "k.backend.0"), AuthErrorKind::Invalid);
}

// ---- permissions -----------------------------------------------------

#[test]
fn channel_permissions_exact_prefix_and_sub() {
    let a = auth(&hs_cfg());
    let t = hs(json!({
        "sub": "alice",
        "exp": NOW + 60,
        "channels": {
            "subscribe": ["chat:*", "user:{sub}", "room:{sub}:*", "exact"],
            "publish": ["chat:lobby"]
        }
    }));
    let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
    assert!(id.can_subscribe("chat:lobby") && id.can_subscribe("chat:"));
    assert!(!id.can_subscribe("chat") && !id.can_subscribe("xchat:lobby"));
    assert!(id.can_subscribe("user:alice"));
    assert!(!id.can_subscribe("user:bob") && !id.can_subscribe("user:alice2"));
    assert!(id.can_subscribe("room:alice:1") && !id.can_subscribe("room:bob:1"));
    assert!(id.can_subscribe("exact") && !id.can_subscribe("exact2"));
    assert!(id.can_publish("chat:lobby") && !id.can_publish("chat:other"));
    assert!(!id.can_publish("user:alice"));

    // A subject with '*' never widens a grant.
    let t = hs(json!({"sub": "*", "exp": NOW + 60, "channels": {"subscribe": ["user:{sub}"]}}));
    let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
    assert!(id.can_subscribe("user:*") && !id.can_subscribe("user:bob"));

    // No sub (or an empty one): {sub} patterns match nothing.
    for sub in [json!(null), json!("")] {
        let t = hs(
            json!({"sub": sub, "exp": NOW + 60, "channels": {"subscribe": ["user:{sub}", "pub"]}}),
        );
        let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
        assert!(id.subject.is_none());
        assert!(!id.can_subscribe("user:") && !id.can_subscribe("user:{sub}"));
        assert!(id.can_subscribe("pub"));
    }

    // "*" alone: everything; an empty grant: nothing.
    let t = hs(json!({"exp": NOW + 60, "channels": {"subscribe": ["*"], "publish": []}}));
    let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
    assert!(id.can_subscribe("any:thing") && !id.can_publish("any:thing"));
    let t = hs(json!({"exp": NOW + 60, "channels": {}}));
    let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
    assert!(!id.can_subscribe("a") && !id.can_publish("a"));
    // channels: null is the same as absent.
    let t = hs(json!({"exp": NOW + 60, "channels": null}));
    let id = a.authenticate(&bearer_req(&t), "/ws", NOW).unwrap();
    assert!(id.can_subscribe("a") && id.can_publish("a"));

    // API keys: {sub} is apikey:NAME.
    let k = auth(&key_cfg());
    let id = k.authenticate(&bearer_req("k+thermo/0123456789=="), "/ws", NOW).unwrap();
    assert!(id.can_subscribe("cmd:apikey:thermo") && !id.can_subscribe("cmd:thermo"));
    assert!(id.can_publish("sensors:t1") && !id.can_publish("cmd:apikey:thermo"));
    assert!(!id.can_use_publish_api());
}

#[test]
fn publish_api_rights() {
    let a = auth(&key_cfg());
    let backend = a.authenticate(&bearer_req("k-backend-0123456789"), "/api/publish", NOW).unwrap();
    let thermo = a.authenticate(&bearer_req("k+thermo/0123456789=="), "/api/publish", NOW).unwrap();
    assert!(backend.can_use_publish_api() && !thermo.can_use_publish_api());
    let open = auth(&AuthConfig { required: false, ..key_cfg() });
    let thermo =
        open.authenticate(&bearer_req("k+thermo/0123456789=="), "/api/publish", NOW).unwrap();
    assert!(thermo.can_use_publish_api());
    assert!(Identity::anonymous_all().can_use_publish_api());
}

// ---- config errors ---------------------------------------------------

#[test]
fn config_errors_name_the_field_and_file() {
    use AuthConfigError as E;
    let e = |cfg: AuthConfig| Authenticator::new(&cfg).unwrap_err();
    let short = e(AuthConfig { jwt_hs256_secret: "short".into(), ..AuthConfig::default() });
    assert!(matches!(short, E::Hs256SecretTooShort { len: 5 }), "{short:?}");
    assert!(short.to_string().starts_with("auth.jwt_hs256_secret: must be at least 32 bytes"));
    let alg = e(AuthConfig { jwt_public_key_alg: "HS256".into(), ..AuthConfig::default() });
    assert!(matches!(&alg, E::UnsupportedPublicKeyAlg { alg } if alg == "HS256"), "{alg:?}");
    assert_eq!(alg.field(), "auth.jwt_public_key_alg");
    let missing = "/nonexistent/wsedge/key.pem";
    let err = e(AuthConfig { jwt_public_key_file: missing.into(), ..AuthConfig::default() });
    assert!(
        matches!(&err, E::PublicKeyUnreadable { file, source }
        if file == missing && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("auth.jwt_public_key_file: {missing}: cannot read")), "{msg}");
    let garbage = temp_file("garbage.pem", "not a key");
    let err = e(AuthConfig { jwt_public_key_file: garbage.clone(), ..AuthConfig::default() });
    assert!(matches!(&err, E::PublicKeyInvalid { file, kind: "RSA", .. } if *file == garbage));
    let msg = err.to_string();
    assert!(msg.contains(&garbage) && msg.contains("not a PEM RSA public key"), "{msg}");
    // An EC key where RSA is configured, and the reverse.
    let ec = temp_file("ec-as-rsa.pem", &keys().ec_public);
    let err = e(AuthConfig { jwt_public_key_file: ec.clone(), ..AuthConfig::default() });
    assert!(matches!(&err, E::PublicKeyInvalid { file, .. } if *file == ec), "{err:?}");
    let rsa = temp_file("rsa-as-ec.pem", &keys().rsa_public);
    let err = e(AuthConfig {
        jwt_public_key_file: rsa.clone(),
        jwt_public_key_alg: "ES256".into(),
        ..AuthConfig::default()
    });
    assert!(matches!(&err, E::PublicKeyInvalid { kind: "P-256 EC", alg: "ES256", .. }));
    let msg = err.to_string();
    assert!(msg.contains(&rsa) && msg.contains("P-256"), "{msg}");
    for f in [garbage, ec, rsa] {
        let _ = std::fs::remove_file(f);
    }

    let with_key = |k: ApiKeyConfig| AuthConfig { api_keys: vec![k], ..AuthConfig::default() };
    let k = || ApiKeyConfig { name: "n".into(), key: "secret-key-1".into(), ..Default::default() };
    let err = e(with_key(ApiKeyConfig { name: "".into(), ..k() }));
    assert!(matches!(err, E::ApiKeyNameEmpty { index: 0 }), "{err:?}");
    assert_eq!(err.field(), "auth.api_keys[0].name");
    let err = e(with_key(ApiKeyConfig { key: "".into(), ..k() }));
    assert!(matches!(err, E::ApiKeyEmpty { index: 0, .. }), "{err:?}");
    assert!(err.to_string().starts_with("auth.api_keys[0].key: must not be empty"), "{err}");
    let err = e(with_key(ApiKeyConfig { key: "a.b.c".into(), ..k() }));
    assert!(matches!(err, E::ApiKeyLooksLikeJwt { .. }) && err.to_string().contains("two dots"));
    let err = e(with_key(ApiKeyConfig { key: "has space".into(), ..k() }));
    assert!(matches!(err, E::ApiKeyNotVisibleAscii { .. }), "{err:?}");
    assert!(!err.to_string().contains("has space"), "never the key: {err}");
    let err = e(with_key(ApiKeyConfig { subscribe: vec!["a*b".into()], ..k() }));
    assert!(
        matches!(&err, E::MisplacedWildcard { field, pattern }
        if field == "auth.api_keys[0].subscribe" && pattern == "a*b"),
        "{err:?}"
    );
    let err = e(with_key(ApiKeyConfig { publish: vec!["".into()], ..k() }));
    assert!(matches!(&err, E::EmptyPattern { field } if field == "auth.api_keys[0].publish"));
    assert!(err.to_string().contains("empty pattern"));
    let two = |a: ApiKeyConfig, b: ApiKeyConfig| AuthConfig {
        api_keys: vec![a, b],
        ..AuthConfig::default()
    };
    let err = e(two(k(), ApiKeyConfig { key: "other-key".into(), ..k() }));
    assert!(
        matches!(err, E::ApiKeyNameReused { index: 1, .. })
            && err.to_string().contains("used twice")
    );
    let err = e(two(k(), ApiKeyConfig { name: "m".into(), ..k() }));
    assert!(
        matches!(err, E::ApiKeyReused { index: 1, .. }) && err.to_string().contains("same key")
    );
    assert!(!err.to_string().contains("secret-key-1"), "never the key: {err}");
    let err = e(AuthConfig { anonymous_publish: vec!["**".into()], ..AuthConfig::default() });
    assert!(matches!(err, E::MisplacedWildcard { .. }), "{err:?}");
    assert!(err.to_string().starts_with("auth.anonymous_publish"));
    let err = e(AuthConfig { anonymous_routes: vec!["echo".into()], ..AuthConfig::default() });
    assert!(matches!(&err, E::RelativeAnonymousRoute { route } if route == "echo"));
    assert!(err.to_string().starts_with("auth.anonymous_routes"));
    // Never the secret in an error.
    let err = e(AuthConfig { jwt_hs256_secret: "hunter2".into(), ..AuthConfig::default() });
    assert!(!err.to_string().contains("hunter2") && !format!("{err:?}").contains("hunter2"));
}

#[test]
fn config_deserializes_with_defaults_and_redacted_debug() {
    let cfg: AuthConfig = serde_json::from_value(json!({
        "required": true,
        "api_keys": [{"name": "b", "key": "the-secret-key", "publish": ["x"]}]
    }))
    .unwrap();
    assert_eq!(cfg.leeway_s, 30);
    assert_eq!(cfg.query_param, "token");
    assert_eq!(cfg.cookie, "wsedge_token");
    assert_eq!(cfg.jwt_public_key_alg, "RS256");
    assert_eq!(cfg.anonymous_routes, vec!["/echo".to_owned()]);
    assert!(!cfg.api_keys[0].publish_api && cfg.api_keys[0].subscribe.is_empty());
    assert!(serde_json::from_value::<AuthConfig>(json!({"requird": true})).is_err());
    assert!(serde_json::from_value::<AuthConfig>(json!({"api_keys": [{"name": "b"}]})).is_err());
    assert!(serde_json::from_value::<AuthConfig>(
        json!({"api_keys": [{"name": "b", "key": "k", "x": 1}]})
    )
    .is_err());
    let cfg = AuthConfig { jwt_hs256_secret: SECRET.into(), ..cfg };
    let dbg = format!("{cfg:?} {:?}", auth(&cfg));
    assert!(!dbg.contains("the-secret-key") && !dbg.contains(SECRET), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn authenticator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Authenticator>();
    check::<Identity>();
}

proptest::proptest! {
    #[test]
    fn never_panics(
        auth_header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        query in ".{0,60}",
        cookie in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
    ) {
        static A: OnceLock<Authenticator> = OnceLock::new();
        let a = A.get_or_init(|| auth(&AuthConfig { jwt_hs256_secret: SECRET.into(), ..key_cfg() }));
        let mut r = req(&[], Some(&query));
        r.headers.push(("authorization".into(), auth_header.clone()));
        r.headers.push(("cookie".into(), cookie));
        let _ = a.authenticate(&r, "/ws", NOW);
        let mut bearer = b"Bearer ".to_vec();
        bearer.extend_from_slice(&auth_header);
        r.headers[0].1 = bearer;
        let _ = a.authenticate(&r, "/ws", NOW);
    }
}
